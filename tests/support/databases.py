"""One fixture, every backend: SQLite files and a real PostgreSQL schema per test worker.

PostgreSQL comes from LITEMX_TEST_PG_URL (set by scripts/with-test-services.sh) or the
machine's server on 127.0.0.1:5432. When neither answers, the PostgreSQL half FAILS: it never
skips silently.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from litemx.storage.db import Database
from litemx.storage.schema import metadata

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_base_url() -> str:
    return os.environ.get("LITEMX_TEST_PG_URL") or DEFAULT_PG


def with_search_path(url: str, schema: str) -> str:
    """A URL whose connections see only `schema` (psycopg passes `options` to the server)."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


class PgSchema:
    """A schema private to one test worker, migrated once, truncated between tests."""

    def __init__(self, worker: str):
        self.name = f"litemx_test_{worker}_{os.getpid()}"
        self.admin = create_engine(pg_base_url())
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.url = with_search_path(pg_base_url(), self.name)
        db = Database(self.url)
        db.migrate()
        db.dispose()

    def truncate(self) -> None:
        # routing_version is a counter, not data: it only ever goes up (the route cache relies on it).
        names = ", ".join(f'"{self.name}"."{t.name}"' for t in metadata.sorted_tables if t.name != "routing_version")
        with self.admin.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.admin.dispose()


class SqliteTemplate:
    """Migrate once, copy the file per test: a fresh database in a millisecond."""

    def __init__(self, directory: Path):
        self.path = directory / "template.db"
        db = Database(f"sqlite:///{self.path}")
        db.migrate()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db.dispose()

    def fresh(self, directory: Path) -> str:
        target = directory / "litemx.db"
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"
