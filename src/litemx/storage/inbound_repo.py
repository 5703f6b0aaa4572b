"""The inbound queue: durable acceptance, leasing for processing, completion."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from litemx.storage.repo import many
from litemx.storage.schema import inbound_queue as q
from litemx.storage.schema import messages


# One statement for a whole batch; the ids come back in the rows' order.
_ENQUEUE = insert(q).returning(q.c.id, sort_by_parameter_order=True)


def enqueue(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Queue accepted messages; returns their ids in order (InboundService group-commits these)."""
    return [int(i) for i in conn.execute(_ENQUEUE, rows).scalars().all()]


def lease_due(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[dict[str, Any]]:
    """Claim up to `limit` due rows, the earliest due first, by pushing their next attempt past
    the lease.

    Ordered as the `(status, next_attempt_at)` index is, so the walk stops after `limit` rows
    however long the backlog: ordered by id, SQLite sorted every due row to keep the first few
    (20 ms a lease with 100,000 queued, inside the storing transaction every worker waits for),
    and an index in id order would walk past every backed-off row instead. New mail is due
    when accepted, so within a burst this is still arrival order.

    PostgreSQL: FOR UPDATE SKIP LOCKED so concurrent workers (or nodes) never claim the same
    row; SQLite: the write transaction (BEGIN IMMEDIATE) already serialises workers.
    """
    stmt = (select(q).where(q.c.status == "pending", q.c.next_attempt_at <= now)
            .order_by(q.c.next_attempt_at, q.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = many(conn, stmt)
    if rows:
        conn.execute(update(q).where(q.c.id.in_([r["id"] for r in rows]))
                     .values(next_attempt_at=now + lease, attempts=q.c.attempts + 1))
    return rows


# The inbound worker's one read per storing transaction (InboundService._store_in), for its batch.
_UNFINISHED = (select(q.c.id, messages.c.mailbox_id)
               .select_from(q.outerjoin(messages, messages.c.queue_id == q.c.id))
               .where(q.c.id.in_(bindparam("b_ids", expanding=True)), q.c.status == "pending")
               .order_by(q.c.id))
_UNFINISHED_LOCKED = _UNFINISHED.with_for_update(of=q)


def unfinished(conn: Connection, queue_ids: list[int]) -> dict[int, set[str]]:
    """Which of these rows are still pending, each with the mailboxes it has a message in
    already (re-driving never duplicates). PostgreSQL: the rows stay locked (taken in id
    order, so two workers never deadlock) until the transaction ends."""
    stmt = _UNFINISHED_LOCKED if conn.dialect.name == "postgresql" else _UNFINISHED
    found: dict[int, set[str]] = {}
    for queue_id, mailbox_id in conn.execute(stmt, {"b_ids": queue_ids}):
        delivered = found.setdefault(int(queue_id), set())
        if mailbox_id is not None:
            delivered.add(mailbox_id)
    return found


_FINISH = (update(q).where(q.c.id == bindparam("b_id"))
           .values(status=bindparam("b_status"), processed_at=bindparam("b_at"), last_error=bindparam("b_error")))
_RETRY_LATER = (update(q).where(q.c.id == bindparam("b_id"))
                .values(next_attempt_at=bindparam("b_at"), last_error=bindparam("b_error")))


_FINISH_DONE = _FINISH.values(raw=None)  # the worker wrote the blob before this transaction


def finish(conn: Connection, queue_id: int, status: str, at: datetime, error: str | None = None) -> None:
    """Mark a row done or failed. A done row drops its inline `raw` (its blob is durable by
    now); a failed one keeps it, so an operator can still re-queue the message."""
    stmt = _FINISH_DONE if status == "done" else _FINISH
    conn.execute(stmt, {"b_id": queue_id, "b_status": status, "b_at": at, "b_error": error})


def finish_done(conn: Connection, queue_ids: list[int], at: datetime) -> None:
    """finish(..., "done") for many rows in one executemany."""
    if queue_ids:
        conn.execute(_FINISH_DONE, [{"b_id": i, "b_status": "done", "b_at": at, "b_error": None} for i in queue_ids])


def retry_later(conn: Connection, queue_id: int, at: datetime, error: str) -> None:
    conn.execute(_RETRY_LATER, {"b_id": queue_id, "b_at": at, "b_error": error[:500]})


def unlease(conn: Connection, ids: list[int], now: datetime) -> None:
    """Give back rows leased for a pass that will not run: due now, their lease's attempt undone."""
    conn.execute(update(q).where(q.c.id.in_(ids), q.c.status == "pending")
                 .values(next_attempt_at=now, attempts=q.c.attempts - 1))


def release_leases(conn: Connection, now: datetime) -> int:
    """At start-up: whatever a dead process had leased is due again now (processing is idempotent)."""
    result = conn.execute(update(q).where(q.c.status == "pending", q.c.next_attempt_at > now)
                          .values(next_attempt_at=now))
    return int(result.rowcount or 0)


def pending_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(q).where(q.c.status == "pending")).scalar_one())
