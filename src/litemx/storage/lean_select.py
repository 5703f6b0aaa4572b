"""SELECTs on the hottest read paths without SQLAlchemy's per-call work, on SQLite.

The reads every list and search request makes (storage/search_repo.py, messages_repo's
list) return up to a page of wide rows. Through `Connection.execute` each call built an
execution context and a cursor result, and each row a `Row` and then a dict: about a tenth
of a millisecond per page in Python beside SQLite's own work, on a request whose whole
budget is about a millisecond (bench/PROFILE.md, session 6).

`rows(conn, stmt, params)` keeps what SQLAlchemy decides and skips only the machinery, as
storage/lean_insert.py does for INSERTs: the statement is compiled once by SQLAlchemy for the
connection's dialect; parameters go through their types' bind processors and each column of
a row through its type's result processor (UTC datetimes, JSON, booleans), so the dicts are
the ones `dict(row._mapping)` gives (tests/test_lean_select.py compares them). A statement
with an expanding parameter (`IN` over a token's mailbox grants) takes SQLAlchemy's own
expansion for its values. A DBAPI error is raised as SQLAlchemy's. PostgreSQL keeps
`conn.execute`: a network round trip dwarfs that cost there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Select, Update
from sqlalchemy.engine import Dialect

from litemx.storage.lean_insert import on_cursor
from litemx.storage.repo import row_dict

Processor = Callable[[Any], Any]
_REQUIRED = object()  # a parameter the caller must give (bindparam without a value)


def rows(conn: Connection, stmt: Select[Any], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every row of `stmt` run with `params`, each as a dict keyed by column name."""
    if conn.dialect.name != "sqlite":
        return [row_dict(row) for row in conn.execute(stmt, dict(params))]
    compiled = _compile(stmt, conn.dialect)
    sql, values = compiled.bind(params)
    fetched = on_cursor(conn, sql, values, lambda cursor: cursor.execute(sql, values).fetchall())
    return [compiled.row(raw) for raw in fetched]


def scalar(conn: Connection, stmt: Select[Any], params: Mapping[str, Any]) -> Any:
    """The first column of the first row, or None when there is no row."""
    if conn.dialect.name != "sqlite":
        return conn.execute(stmt, dict(params)).scalar()
    compiled = _compile(stmt, conn.dialect)
    sql, values = compiled.bind(params)
    raw = on_cursor(conn, sql, values, lambda cursor: cursor.execute(sql, values).fetchone())
    return None if raw is None else compiled.row(raw)[compiled.keys[0]]


def update(conn: Connection, stmt: Update, params: Mapping[str, Any]) -> int:
    """Run an UPDATE (no RETURNING); returns how many rows it matched. The inbound worker bumps
    a thread once per stored message, inside the writer lock every worker waits for."""
    compiled = _compile(stmt, conn.dialect)
    unknown = set(params) - compiled.fixed.keys()
    if unknown:  # SQLAlchemy would SET such a key's column; refused on both backends alike
        raise KeyError(f"lean_select.update: {sorted(unknown)} name no parameter of the statement")
    if conn.dialect.name != "sqlite":
        return int(conn.execute(stmt, dict(params)).rowcount)
    sql, values = compiled.bind(params)
    return int(on_cursor(conn, sql, values, lambda cursor: cursor.execute(sql, values).rowcount))


@functools.lru_cache(maxsize=256)  # statements are built once per shape; bounded all the same
def _compile(stmt: Select[Any] | Update, dialect: Dialect) -> _Compiled:
    return _Compiled(stmt, dialect)


class _Compiled:
    """One statement: its SQL, how to bind its parameters, how to read its rows."""

    def __init__(self, stmt: Select[Any] | Update, dialect: Dialect) -> None:
        self.compiled = compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        # Expanding (`IN :list`) or literal-execute parameters change the SQL per call.
        self.expands = bool(compiled.post_compile_params or compiled.literal_execute_params)
        self.fixed = {name: _REQUIRED if bind.required else bind.effective_value
                      for name, bind in compiled.binds.items()}
        self.bind_processors: dict[str, Processor] = {
            name: proc for name, bind in compiled.binds.items()
            if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        columns = list(stmt.selected_columns) if isinstance(stmt, Select) else []
        self.keys = tuple(column.key for column in columns)
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"lean_select: duplicate column names in {self.keys}")
        self.result_processors: tuple[tuple[int, Processor], ...] = tuple(
            (i, proc) for i, column in enumerate(columns)
            if (proc := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)

    def bind(self, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its positional values for `params`."""
        if self.expands:
            state = self.compiled.construct_expanded_state(dict(params), escape_names=False)
            names, sql, given = state.positiontup or (), state.statement, state.parameters
            # The expanded names' processors only: every other parameter keeps its own (as
            # SQLAlchemy merges them), or a datetime would reach SQLite in another format.
            procs = {**self.bind_processors, **state.processors}
        else:
            names, sql, given, procs = self.names, self.sql, params, self.bind_processors
        values = []
        for name in names:
            value = given[name] if name in given else self.fixed.get(name, _REQUIRED)
            if value is _REQUIRED:
                raise KeyError(f"lean_select: no value for the parameter {name!r}")
            proc = procs.get(name)
            values.append(value if proc is None else proc(value))
        return sql, tuple(values)

    def row(self, raw: tuple[Any, ...]) -> dict[str, Any]:
        values = list(raw)
        for i, proc in self.result_processors:
            values[i] = proc(values[i])
        return dict(zip(self.keys, values, strict=True))
