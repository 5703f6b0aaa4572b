"""Alembic environment: runs on the connection Database.migrate() hands over, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from litemx.storage.schema import metadata
from litemx.storage.search_objects import include_object

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables.
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)


run_migrations_online()
