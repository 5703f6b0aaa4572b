"""Small query helpers shared by the repositories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, insert, select


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def one(conn: Connection, stmt: Select[Any]) -> dict[str, Any] | None:
    row = conn.execute(stmt).first()
    return row_dict(row) if row is not None else None


def many(conn: Connection, stmt: Select[Any]) -> list[dict[str, Any]]:
    return [row_dict(r) for r in conn.execute(stmt)]


def add(conn: Connection, table: Table, values: dict[str, Any]) -> dict[str, Any]:
    conn.execute(insert(table).values(**values))
    return values


def by_column(conn: Connection, table: Table, column: str, value: Any) -> dict[str, Any] | None:
    return one(conn, select(table).where(table.c[column] == value))
