"""Persistence: SQLAlchemy Core repositories (SQLite and PostgreSQL), blob stores, migrations."""
