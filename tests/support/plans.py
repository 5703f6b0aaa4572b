"""SQLite's EXPLAIN QUERY PLAN for the statements a piece of code runs, as the tests of the
planner choices that keep a hot path one index range (migrations 0010, 0011, 0012) read them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event


def plans(services: Any, run: Callable[[], object], wanted: Callable[[str], bool]) -> list[str]:
    """The plan of every statement `run` executes through SQLAlchemy's `Connection.execute` for
    which `wanted(sql)` holds, in order: each plan's rows' details joined by ' | '. Statements
    that storage/lean_select.py or lean_insert.py run on the DBAPI cursor are not seen."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if wanted(statement):
            seen.append((statement, parameters))

    engine = services.infra.db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        return [" | ".join(str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
                for sql, params in seen]
