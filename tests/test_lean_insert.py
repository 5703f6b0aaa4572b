"""storage/lean_insert.py stores exactly what SQLAlchemy's own insert stores (the same SQL and
bind processors, without Connection.execute's per-call work), on both backends; it runs
inside the caller's transaction and savepoint, and a refused row raises SQLAlchemy's error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError

from litemx.storage.db import Database
from litemx.storage.lean_insert import LeanInsert
from litemx.storage.schema import audit_events


def _event(n: int, **changes: Any) -> dict[str, Any]:
    row = {"at": datetime(2026, 11, 24, 9, 30, n, 123456, tzinfo=UTC), "account_id": f"acc_{n}",
           "actor_type": "token", "actor_id": None, "actor_name": "Søren «bot»", "interface": "api",
           "action": "message.search", "resource_type": "message", "resource_id": None, "mailbox": None,
           "outcome": "ok", "ip": "2001:db8::1", "user_agent": None,
           "details": {"query": "naïve \"quoted\" ✓", "count": n, "nested": {"list": [1, None, True]}}}
    row.update(changes)
    return row


def _stored(conn: Any, marker: str) -> list[tuple[Any, ...]]:
    """The rows inserted with `marker`, oldest first: every column but the id and the marker, as
    SQLAlchemy reads them, and `at` and `details` as the database holds them (text on SQLite)."""
    raw = "at, details" if conn.dialect.name == "sqlite" else "at::text, details::text"
    rows = conn.execute(text(f"SELECT id, {raw} FROM audit_events WHERE resource_id = :m ORDER BY id"), {"m": marker})
    texts = [tuple(r)[1:] for r in rows]
    read = conn.execute(select(audit_events).where(audit_events.c.resource_id == marker).order_by(audit_events.c.id))
    return [tuple(v for k, v in r._mapping.items() if k not in ("id", "resource_id")) + t
            for r, t in zip(read, texts, strict=True)]


def test_a_lean_row_is_stored_exactly_as_sqlalchemy_stores_it(services):
    lean = LeanInsert(audit_events)
    other_zone = datetime(2026, 11, 24, 11, 30, 7, tzinfo=timezone(timedelta(hours=2)))
    rows = [_event(1), _event(2, at=other_zone), _event(3, details={})]
    with services.infra.db.write() as conn:
        lean.many(conn, [{**r, "resource_id": "lean"} for r in rows[:2]])
        lean.one(conn, {**rows[2], "resource_id": "lean"})
        conn.execute(insert(audit_events), [{**r, "resource_id": "sqlalchemy"} for r in rows])
    with services.infra.db.read() as conn:
        by_lean, by_sqlalchemy = _stored(conn, "lean"), _stored(conn, "sqlalchemy")
    assert len(by_lean) == 3 and by_lean == by_sqlalchemy
    assert by_lean[1][0] == other_zone.astimezone(UTC)  # read back aware, in UTC


def test_one_returns_the_new_rows_key(services):
    lean = LeanInsert(audit_events)
    with services.infra.db.write() as conn:
        first, second = lean.one(conn, _event(1)), lean.one(conn, _event(2))
        keys = dict(conn.execute(select(audit_events.c.account_id, audit_events.c.id)).all())
    assert (keys["acc_1"], keys["acc_2"]) == (first, second) and second > first


def test_a_refused_row_raises_sqlalchemys_error_and_its_savepoint_undoes_it(services):
    lean = LeanInsert(audit_events)
    with services.infra.db.write() as conn:
        lean.one(conn, _event(1))
        with pytest.raises(IntegrityError):
            with conn.begin_nested():
                lean.one(conn, _event(2))
                lean.one(conn, _event(3, action=None))  # NOT NULL
        count = conn.execute(text("SELECT count(*) FROM audit_events WHERE account_id LIKE 'acc_%'")).scalar()
    assert count == 1  # the first row stays; the savepoint took the second with it


def test_the_lean_rows_commit_and_roll_back_with_their_transaction(services):
    lean = LeanInsert(audit_events)
    with pytest.raises(RuntimeError):
        with services.infra.db.write() as conn:
            lean.many(conn, [_event(1, resource_id="rolled back")])
            raise RuntimeError("the caller fails after inserting")
    with services.infra.db.read() as conn:
        assert _stored(conn, "rolled back") == []


def test_a_row_leaving_out_a_python_side_default_or_naming_no_column_is_refused(tmp_path):
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String, default="x"))
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as conn:
        table.create(conn)
        assert LeanInsert(table).one(conn, {"name": "given"}) == 1
        with pytest.raises(ValueError):
            LeanInsert(table).one(conn, {})  # SQLAlchemy would have filled in "x"
        with pytest.raises(ValueError):
            LeanInsert(audit_events).one(conn, {**_event(1), "no_such_column": 1})
    db.dispose()
