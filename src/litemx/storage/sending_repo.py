"""Drafts, send counters, idempotency keys, deliveries (with attempts and events) and the
suppression list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from litemx.storage.pagination import Page, PageResult, finish
from litemx.storage.repo import add, by_column, many, one
from litemx.storage.schema import (
    deliveries,
    delivery_attempts,
    delivery_events,
    domains,
    draft_attachments,
    drafts,
    idempotency_keys,
    messages,
    send_counters,
    suppressions,
    threads,
)

DUE = ("queued", "deferred")
FINAL = ("delivered", "failed", "held")


def _insert_ignore(conn: Connection, table: Any, values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (PostgreSQL) / INSERT OR IGNORE (SQLite)."""
    maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(maker(table).values(**values).on_conflict_do_nothing())


def _locked(conn: Connection, stmt: Any) -> Any:
    # SQLite's write transaction (BEGIN IMMEDIATE) already serialises writers.
    return stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt


# -- drafts ------------------------------------------------------------------------------------

def add_draft(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, drafts, values)


def draft_by_id(conn: Connection, draft_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    stmt = select(drafts).where(drafts.c.id == draft_id)
    return one(conn, _locked(conn, stmt) if lock else stmt)


def update_draft(conn: Connection, draft_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(drafts).where(drafts.c.id == draft_id).values(**values))


def delete_draft(conn: Connection, draft_id: str) -> None:
    conn.execute(delete(drafts).where(drafts.c.id == draft_id))


def list_drafts(conn: Connection, account_id: str, p: Page, only: frozenset[str] | None,
                mailbox: str | None) -> PageResult:
    """Unsent drafts, newest first (ids are time-ordered)."""
    conds = [drafts.c.account_id == account_id, drafts.c.status == "draft"]
    if only is not None:
        conds.append(drafts.c.mailbox.in_(sorted(only)))
    if mailbox is not None:
        conds.append(drafts.c.mailbox == mailbox)
    if p.after is not None:
        conds.append(drafts.c.id < str(p.after))
    stmt = select(drafts).where(*conds).order_by(drafts.c.id.desc()).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "id")


# -- draft attachments ------------------------------------------------------------------------

def add_draft_attachments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(draft_attachments), rows)


def draft_attachments_of(conn: Connection, draft_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each draft's attachment rows in position order (one query for a whole page of drafts)."""
    wanted = sorted(set(draft_ids))
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in wanted}
    if not wanted:
        return out
    a = draft_attachments.c
    for row in many(conn, select(draft_attachments).where(a.draft_id.in_(wanted)).order_by(a.draft_id, a.position)):
        out[row["draft_id"]].append(row)
    return out


def delete_draft_attachments(conn: Connection, draft_id: str) -> set[str]:
    """Remove a draft's attachment rows; returns the blob keys they referenced."""
    a = draft_attachments.c
    keys = {r[0] for r in conn.execute(select(a.blob_key).where(a.draft_id == draft_id)) if r[0]}
    conn.execute(delete(draft_attachments).where(a.draft_id == draft_id))
    return keys


def release_draft_blobs(conn: Connection, draft_id: str) -> None:
    """A sent draft keeps its attachment metadata; the blob references moved to the message."""
    conn.execute(update(draft_attachments).where(draft_attachments.c.draft_id == draft_id).values(blob_key=None))


# -- messages and threads a reply starts from -------------------------------------------------

def thread_by_id(conn: Connection, thread_id: str) -> dict[str, Any] | None:
    return by_column(conn, threads, "id", thread_id)


def latest_in_thread(conn: Connection, thread_id: str) -> dict[str, Any] | None:
    """The thread's newest inbound message, else its newest message of any direction."""
    base = select(messages).where(messages.c.thread_id == thread_id).order_by(messages.c.seq.desc()).limit(1)
    return one(conn, base.where(messages.c.direction == "inbound")) or one(conn, base)


def set_message_status(conn: Connection, message_id: str, status: str) -> None:
    conn.execute(update(messages).where(messages.c.id == message_id).values(status=status))


def domain_by_mail_from(conn: Connection, name: str) -> dict[str, Any] | None:
    return by_column(conn, domains, "mail_from", name)


def domain_by_id(conn: Connection, domain_id: str) -> dict[str, Any] | None:
    return by_column(conn, domains, "id", domain_id)


def refresh_message_status(conn: Connection, message_id: str) -> str:
    """An outbound message is `sent` once every delivery is final and one was delivered,
    `failed` once every delivery is final and none was, else still `queued`."""
    statuses = [r["status"] for r in deliveries_of(conn, message_id)]
    status = "queued"
    if statuses and all(s in FINAL for s in statuses):
        status = "sent" if "delivered" in statuses else "failed"
    set_message_status(conn, message_id, status)
    return status


# -- plan limits -------------------------------------------------------------------------------

def reserve(conn: Connection, scope: str, key: str, period: str, limit: int) -> bool:
    """Count one send against (scope, key, period) unless that reaches past `limit`.

    The conditional UPDATE is the whole guarantee: concurrent transactions serialise on the
    counter row (PostgreSQL re-checks `count < limit` after the row lock; SQLite has one writer),
    so the count never passes the limit. Returns False, changing nothing, when it would.
    """
    _insert_ignore(conn, send_counters, {"scope": scope, "key": key, "period": period, "count": 0})
    c = send_counters.c
    result = conn.execute(update(send_counters)
                          .where(c.scope == scope, c.key == key, c.period == period, c.count < limit)
                          .values(count=c.count + 1))
    return bool(result.rowcount)


def counter(conn: Connection, scope: str, key: str, period: str) -> int:
    c = send_counters.c
    stmt = select(c.count).where(c.scope == scope, c.key == key, c.period == period)
    return int(conn.execute(stmt).scalar_one_or_none() or 0)


def set_counter(conn: Connection, scope: str, key: str, period: str, count: int) -> None:
    _insert_ignore(conn, send_counters, {"scope": scope, "key": key, "period": period, "count": 0})
    c = send_counters.c
    conn.execute(update(send_counters).where(c.scope == scope, c.key == key, c.period == period)
                 .values(count=count))


# -- idempotency keys --------------------------------------------------------------------------

def idempotency_key(conn: Connection, account_id: str, key: str) -> dict[str, Any] | None:
    k = idempotency_keys.c
    return one(conn, select(idempotency_keys).where(k.account_id == account_id, k.key == key))


def add_idempotency_key(conn: Connection, values: dict[str, Any]) -> None:
    """Raises: IntegrityError when a concurrent request holds the same key (PostgreSQL waits
    for that transaction first, so the caller can then read its stored response)."""
    conn.execute(insert(idempotency_keys).values(**values))


def store_response(conn: Connection, account_id: str, key: str, response: dict[str, Any]) -> None:
    k = idempotency_keys.c
    conn.execute(update(idempotency_keys).where(k.account_id == account_id, k.key == key)
                 .values(response=response))


def delete_idempotency_key(conn: Connection, account_id: str, key: str) -> None:
    k = idempotency_keys.c
    conn.execute(delete(idempotency_keys).where(k.account_id == account_id, k.key == key))


def prune_idempotency_keys(conn: Connection, now: datetime) -> int:
    result = conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now))
    return int(result.rowcount or 0)


# -- deliveries --------------------------------------------------------------------------------

def add_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(deliveries), rows)


def delivery_by_id(conn: Connection, delivery_id: str) -> dict[str, Any] | None:
    return by_column(conn, deliveries, "id", delivery_id)


def deliveries_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    stmt = select(deliveries).where(deliveries.c.message_id == message_id).order_by(deliveries.c.recipient)
    return many(conn, stmt)


def delivery_for(conn: Connection, account_id: str, message_id_header: str, recipient: str) -> dict[str, Any] | None:
    """The delivery of the account's outbound message with this Message-ID to `recipient`."""
    stmt = (select(deliveries).join(messages, messages.c.id == deliveries.c.message_id)
            .where(messages.c.account_id == account_id, messages.c.message_id_header == message_id_header,
                   deliveries.c.recipient == recipient))
    return one(conn, stmt)


def delivery_by_provider(conn: Connection, provider_id: str, recipient: str) -> dict[str, Any] | None:
    d = deliveries.c
    return one(conn, select(deliveries).where(d.provider_id == provider_id, func.lower(d.recipient) == recipient))


def lease_due(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[dict[str, Any]]:
    """Claim up to `limit` due deliveries by pushing their next attempt past the lease.

    PostgreSQL: FOR UPDATE SKIP LOCKED so workers on several nodes never claim one row twice;
    SQLite: the write transaction serialises workers. A crashed worker's claims come due again
    when the lease ends.
    """
    d = deliveries.c
    stmt = select(deliveries).where(d.status.in_(DUE), d.next_attempt_at <= now).order_by(d.next_attempt_at, d.id)
    stmt = stmt.limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = many(conn, stmt)
    if rows:
        conn.execute(update(deliveries).where(d.id.in_([r["id"] for r in rows])).values(next_attempt_at=now + lease))
    return rows


def update_delivery(conn: Connection, delivery_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


def add_attempt(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(delivery_attempts).values(**values))


def attempts_of(conn: Connection, delivery_id: str) -> list[dict[str, Any]]:
    stmt = select(delivery_attempts).where(delivery_attempts.c.delivery_id == delivery_id)
    return many(conn, stmt.order_by(delivery_attempts.c.id))


def add_event(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(delivery_events).values(**values))


def events_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    stmt = select(delivery_events).where(delivery_events.c.message_id == message_id)
    return many(conn, stmt.order_by(delivery_events.c.id))


# -- suppressions ------------------------------------------------------------------------------

def suppressed_among(conn: Connection, account_id: str, addresses: Iterable[str]) -> list[str]:
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return []
    s = suppressions.c
    stmt = select(s.address).where(s.account_id == account_id, s.address.in_(wanted)).order_by(s.address)
    return [r["address"] for r in many(conn, stmt)]


def add_suppression(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert unless the address is already suppressed; True when a row was added."""
    s = suppressions.c
    exists = one(conn, select(s.address).where(s.account_id == values["account_id"], s.address == values["address"]))
    if exists is not None:
        return False
    _insert_ignore(conn, suppressions, values)
    return True


def suppression(conn: Connection, account_id: str, address: str) -> dict[str, Any] | None:
    s = suppressions.c
    return one(conn, select(suppressions).where(s.account_id == account_id, s.address == address))


def remove_suppression(conn: Connection, account_id: str, address: str) -> None:
    s = suppressions.c
    conn.execute(delete(suppressions).where(and_(s.account_id == account_id, s.address == address)))


def list_suppressions(conn: Connection, account_id: str, p: Page, only: frozenset[str] | None) -> PageResult:
    s = suppressions.c
    conds = [s.account_id == account_id]
    if only is not None:
        conds.append(s.mailbox.in_(sorted(only)))
    if p.after is not None:
        conds.append(s.address > str(p.after))
    stmt = select(suppressions).where(*conds).order_by(s.address).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "address")
