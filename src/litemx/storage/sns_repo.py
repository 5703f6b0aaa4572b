"""SNS messages the SES webhook took: at-least-once delivery made idempotent by MessageId."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from litemx.storage.repo import one
from litemx.storage.schema import inbound_queue as q
from litemx.storage.schema import sns_messages as s


def claim(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert the row unless its MessageId is known; True when this call inserted it.

    INSERT ... ON CONFLICT DO NOTHING, so two concurrent deliveries of one message cannot
    both claim it (the primary key decides, on SQLite and PostgreSQL alike).
    """
    maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 rows for an INSERT ... ON CONFLICT DO NOTHING.
    stmt = maker(s).values(**values).on_conflict_do_nothing().returning(s.c.message_id)
    return conn.execute(stmt).scalar_one_or_none() is not None


def locked(conn: Connection, message_id: str) -> dict[str, Any] | None:
    """The row, locked for this transaction on PostgreSQL (SQLite's write transaction serialises)."""
    stmt = select(s).where(s.c.message_id == message_id)
    return one(conn, stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt)


def take_over(conn: Connection, message_id: str, now: datetime) -> None:
    conn.execute(update(s).where(s.c.message_id == message_id).values(claimed_at=now))


def finish(conn: Connection, message_id: str, queue_id: int | None, details: dict[str, Any]) -> None:
    conn.execute(update(s).where(s.c.message_id == message_id)
                 .values(status="done", queue_id=queue_id, details=details))


def release(conn: Connection, message_id: str) -> None:
    """Forget an unfinished claim so SNS's retry is processed afresh."""
    conn.execute(delete(s).where(s.c.message_id == message_id, s.c.status == "processing"))


def prune(conn: Connection, before: datetime) -> int:
    """Drop notification rows older than `before` (older deliveries are refused as stale anyway);
    subscription confirmations stay."""
    result = conn.execute(delete(s).where(s.c.type == "Notification", s.c.claimed_at < before))
    return int(result.rowcount or 0)


def ses_queue_row(conn: Connection, raw_key: str, since: datetime) -> int | None:
    """An inbound queue row an earlier, interrupted attempt created for these bytes, if any."""
    stmt = (select(q.c.id).where(q.c.raw_key == raw_key, q.c.source == "ses", q.c.received_at >= since)
            .order_by(q.c.id).limit(1))
    found = conn.execute(stmt).scalar_one_or_none()
    return int(found) if found is not None else None
