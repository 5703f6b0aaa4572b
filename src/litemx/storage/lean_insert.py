"""INSERTs on the hottest write paths without SQLAlchemy's per-call work, on SQLite.

`Connection.execute` spends about a tenth of a millisecond in Python on a wide row before
SQLite sees it (an execution context, parameter processing, a result object), several times
what SQLite itself takes. On the paths that run once per request or per message (the audit
event of every read, the inbound message row) that was a large share of the whole: an audited
search at 1M messages spent more on its audit event than on searching.

`LeanInsert` keeps what SQLAlchemy decides and skips only the machinery: the statement is
compiled once by SQLAlchemy for the connection's dialect, and each value goes through its
column type's own bind processor (UTC datetimes, JSON), so what is stored is what
`conn.execute(insert(table), rows)` stores (tests/test_lean_insert.py compares the two). It
runs on the connection's DBAPI cursor inside the caller's transaction (and savepoint), and a
DBAPI error is raised as SQLAlchemy's (IntegrityError stays IntegrityError). PostgreSQL keeps
`conn.execute`: a network round trip dwarfs that cost there.

Only plain column values: a column left out gets its server-side default, never a Python-side
one (rows that leave out a column with one are refused).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any] | None
T = TypeVar("T")


class LeanInsert:
    """`INSERT INTO table (...)` for rows that all have the same keys."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}  # by (dialect, the rows' keys)

    def many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert every row (one executemany)."""
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            conn.execute(insert(self.table), list(rows))
            return
        compiled = self._compile(conn.dialect, tuple(rows[0]))
        _run(conn, compiled.sql, [compiled.values(row) for row in rows], many=True)

    def one(self, conn: Connection, row: dict[str, Any]) -> int:
        """Insert one row; returns its integer primary key (on SQLite its rowid)."""
        if conn.dialect.name != "sqlite":
            key = next(iter(self.table.primary_key.columns))
            return int(conn.execute(insert(self.table).returning(key), row).scalar_one())
        compiled = self._compile(conn.dialect, tuple(row))
        return _run(conn, compiled.sql, compiled.values(row), many=False)

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            found = self._compiled[(dialect.name, keys)] = _Compiled(self.table, dialect, keys)
        return found


class _Compiled:
    """One statement: its SQL, and for each placeholder in order the row key and bind processor."""

    def __init__(self, table: Table, dialect: Dialect, keys: tuple[str, ...]) -> None:
        defaulted = [c.key for c in table.columns if c.default is not None and c.key not in keys]
        if defaulted:
            raise ValueError(f"{table.name}: rows must give {defaulted} (Python-side defaults are not applied)")
        compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
        self.names = list(compiled.positiontup or ())
        if sorted(self.names) != sorted(keys):  # e.g. a key that names no column
            raise ValueError(f"{table.name}: placeholders {self.names} do not match the row's keys {keys}")
        self.sql = str(compiled)
        self.processors: list[Processor] = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                                            for name in self.names]

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] if proc is None else proc(row[name])
                     for name, proc in zip(self.names, self.processors, strict=True))


def _run(conn: Connection, sql: str, params: Any, *, many: bool) -> int:
    """Execute (many) on the transaction's DBAPI cursor; returns the last rowid."""
    execute = (lambda cursor: cursor.executemany(sql, params)) if many else (lambda cursor: cursor.execute(sql, params))
    return int(on_cursor(conn, sql, params, execute).lastrowid or 0)


def on_cursor(conn: Connection, sql: str, params: Any, use: Callable[[Any], T]) -> T:
    """`use(cursor)` on a cursor of the transaction's own DBAPI connection (storage/lean_select.py
    reads the same way); a DBAPI error is raised as SQLAlchemy's, as `conn.execute` would."""
    dbapi_error = conn.dialect.dbapi.Error  # type: ignore[union-attr]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return use(cursor)
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi_error) from exc
    finally:
        cursor.close()
