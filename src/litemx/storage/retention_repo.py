"""Storage side of retention, purge, export and the periodic-job lock (SPEC §10, §11).

Every function here works on one bounded batch inside the caller's transaction, so a sweep
over a million rows is many short transactions, never one long lock. Batches of expired
messages are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (two nodes never fight over
the same rows); SQLite's BEGIN IMMEDIATE already serialises writers.

Search-index rule (see messages_repo): on SQLite the FTS5 index is external-content, so a row
must be un-indexed while its indexed columns still hold the old values, and exactly once — a
'delete' of values the index does not hold corrupts it. Every message row is always indexed:
cleanup un-indexes, clears the content, and re-indexes what is left (subject and addresses,
no body), all in one transaction, so the index always mirrors its content view (FTS5's
`integrity-check` holds) and every delete path simply un-indexes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, delete, func, or_, select, text, union, update

from litemx.storage import messages_repo
from litemx.storage.jobs_repo import claim_job, finish_job, renew_job  # noqa: F401 - the retention job's lease
from litemx.storage.repo import many
from litemx.storage.schema import (
    accounts,
    attachments,
    audit_events,
    draft_attachments,
    drafts,
    inbound_queue,
    mailboxes,
    messages,
    metadata,
    threads,
)

# Queue rows still needing their raw message: pending (to be processed) and failed (kept so
# the operator can re-queue them). Done rows handed their reference over to the messages.
_QUEUE_HOLDING = ("pending", "failed")
# Columns that hold a content-addressed blob key. Any table a later migration adds with a
# column of one of these names (drafts, outbound copies) counts as a reference automatically.
BLOB_KEY_COLUMNS = frozenset({"raw_key", "blob_key"})
# Per-message metadata columns an export writes (no bodies: the .eml carries the content).
EXPORT_COLUMNS = tuple(c for c in messages.c if c.name not in ("text_body", "html_body", "snippet", "headers"))


# --------------------------------------------------------------------------- mailboxes


def account_mailboxes(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    stmt = (select(mailboxes.c.id, mailboxes.c.address, mailboxes.c.retention_days, mailboxes.c.legal_hold)
            .where(mailboxes.c.account_id == account_id).order_by(mailboxes.c.address))
    return many(conn, stmt)


def account_ids(conn: Connection) -> list[str]:
    return [r["id"] for r in many(conn, select(accounts.c.id).order_by(accounts.c.id))]


# --------------------------------------------------------------------------- content cleanup


def expired_batch(conn: Connection, mailbox_id: str, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
    """Messages of one mailbox received before `cutoff` whose content is still stored."""
    stmt = (select(messages.c.seq, messages.c.id, messages.c.raw_key)
            .where(messages.c.mailbox_id == mailbox_id, messages.c.deleted_content_at.is_(None),
                   messages.c.received_at < cutoff,
                   # An outbound message still being delivered needs its raw MIME for retries.
                   messages.c.status != "queued")
            .order_by(messages.c.received_at, messages.c.seq).limit(limit))
    return many(conn, _skip_locked(conn, stmt))


def remove_content(conn: Connection, batch: Sequence[dict[str, Any]], at: datetime) -> tuple[int, set[str]]:
    """Un-index, then drop raw key, bodies, snippet and headers; tombstone attachments.

    Metadata stays (sender, recipients, subject, thread, mailbox, timestamps, verdicts).
    Returns (attachments tombstoned, blob keys the batch no longer references).
    """
    for row in batch:
        messages_repo.unindex_message(conn, row["seq"])  # before the indexed columns change
    seqs = [r["seq"] for r in batch]
    ids = [r["id"] for r in batch]
    conn.execute(update(messages).where(messages.c.seq.in_(seqs)).values(
        raw_key=None, text_body=None, html_body=None, snippet="", headers=[], deleted_content_at=at))
    for seq in seqs:
        messages_repo.index_message(conn, seq)  # metadata only now: the body is gone from search
    keys = {r["raw_key"] for r in batch if r["raw_key"]}
    live = and_live_attachments(ids)
    keys |= {r["blob_key"] for r in many(conn, select(attachments.c.blob_key).where(*live)) if r["blob_key"]}
    tombstoned = conn.execute(update(attachments).where(*live).values(deleted_at=at, blob_key=None)).rowcount
    return int(tombstoned or 0), keys


def and_live_attachments(message_ids: Sequence[str]) -> list[Any]:
    return [attachments.c.message_id.in_(list(message_ids)), attachments.c.deleted_at.is_(None)]


# --------------------------------------------------------------------------- blob references


def _blob_key_columns() -> list[tuple[Table, Column[Any]]]:
    return [(t, c) for t in metadata.sorted_tables for c in t.c if c.name in BLOB_KEY_COLUMNS]


def referenced_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """Which of `keys` some row anywhere (any mailbox, any account) still points at.

    The blob store is content-addressed and shared: the same attachment or the same raw
    message delivered to two mailboxes is one blob, so a blob may go only when nothing
    references it any more.
    """
    wanted = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start:start + 500]
        # One statement over every table: under READ COMMITTED each statement reads its own
        # snapshot, and a reference moving from one table to another (a draft's file becoming
        # the sent message's) between two statements would be seen in neither.
        parts = []
        for table, column in _blob_key_columns():
            conds = [column.in_(chunk)]
            if table is inbound_queue:
                conds.append(inbound_queue.c.status.in_(_QUEUE_HOLDING))
            parts.append(select(column.label("key")).where(*conds))
        found |= {r[0] for r in conn.execute(union(*parts))}
    return found


# Advisory locks of blob keys (PostgreSQL): the two-int form, in a class of their own so no other
# advisory-lock user of the database collides with them, one lock per bucket of keys so that a
# transaction never holds more than BLOB_LOCK_BUCKETS of them whatever it stores (PostgreSQL's lock
# table is shared and small: max_locks_per_transaction x max_connections).
BLOB_LOCK_CLASS = 0x4C4D42  # "LMB"
BLOB_LOCK_BUCKETS = 1024


def hold_blob_keys(conn: Connection, keys: Iterable[str]) -> None:
    """A writer about to reference `keys`: hold them (shared) until its transaction ends.

    PostgreSQL: one shared advisory lock per bucket of keys, taken in order. SQLite: nothing to
    take, because every write transaction already holds the database's one write lock (BEGIN
    IMMEDIATE), so a writer's and a deleter's transactions never overlap.
    """
    if conn.dialect.name != "postgresql":
        return
    buckets = sorted({_bucket(key) for key in keys if key})
    if buckets:
        conn.execute(_HOLD, {"c": BLOB_LOCK_CLASS, "bs": buckets}).all()


def claim_blob_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """A deleter: which of `keys` it now holds exclusively until its transaction ends; a key
    some writer holds is left out. Never waits, so a deleter can never be part of a deadlock
    (it may hold row locks a writer waits for). SQLite: all of them (see hold_blob_keys).
    """
    keys = {key for key in keys if key}
    if conn.dialect.name != "postgresql":
        return keys
    buckets = sorted({_bucket(key) for key in keys})
    taken = set(conn.execute(_CLAIM, {"c": BLOB_LOCK_CLASS, "bs": buckets}).scalars()) if buckets else set()
    return {key for key in keys if _bucket(key) in taken}


# One round trip each. A function scan returns the array in order and these lock functions are
# parallel-restricted, so the locks are taken one by one in that (sorted) order.
_HOLD = text("SELECT pg_advisory_xact_lock_shared(CAST(:c AS integer), b) FROM unnest(CAST(:bs AS integer[])) AS b")
_CLAIM = text("SELECT b FROM unnest(CAST(:bs AS integer[])) AS b "
              "WHERE pg_try_advisory_xact_lock(CAST(:c AS integer), b)")


def _bucket(key: str) -> int:
    """The lock bucket of a blob key (hex SHA-256, uniformly spread)."""
    return int(key[:8], 16) % BLOB_LOCK_BUCKETS


# --------------------------------------------------------------------------- metadata pruning


def prunable_batch(conn: Connection, mailbox_id: str, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
    """Messages whose content is already gone and which were received before `cutoff`."""
    stmt = (select(messages.c.seq, messages.c.id, messages.c.thread_id)
            .where(messages.c.mailbox_id == mailbox_id, messages.c.deleted_content_at.is_not(None),
                   messages.c.received_at < cutoff)
            .order_by(messages.c.received_at, messages.c.seq).limit(limit))
    return many(conn, _skip_locked(conn, stmt))


def delete_messages(conn: Connection, batch: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Un-index and delete message rows (attachments with them); shrink or drop their threads.

    Returns (messages deleted, threads left empty and deleted).
    """
    if not batch:
        return 0, 0
    for row in batch:
        messages_repo.unindex_message(conn, row["seq"])
    ids = [r["id"] for r in batch]
    conn.execute(delete(attachments).where(attachments.c.message_id.in_(ids)))
    deleted = conn.execute(delete(messages).where(messages.c.id.in_(ids))).rowcount
    return int(deleted or 0), _shrink_threads(conn, [r["thread_id"] for r in batch])


def _shrink_threads(conn: Connection, thread_ids: Sequence[str]) -> int:
    counts: dict[str, int] = {}
    for thread_id in thread_ids:
        counts[thread_id] = counts.get(thread_id, 0) + 1
    for thread_id, n in counts.items():
        conn.execute(update(threads).where(threads.c.id == thread_id)
                     .values(message_count=threads.c.message_count - n))
    left = select(messages.c.id).where(messages.c.thread_id == threads.c.id).exists()
    return int(conn.execute(delete(threads).where(threads.c.id.in_(list(counts)), ~left)).rowcount or 0)


def prune_audit(conn: Connection, account_id: str | None, cutoff: datetime, keep_mailboxes: Sequence[str],
                limit: int) -> int:
    """Delete up to `limit` audit rows older than `cutoff`, except those of held mailboxes."""
    account = audit_events.c.account_id.is_(None) if account_id is None else audit_events.c.account_id == account_id
    conds = [account, audit_events.c.at < cutoff]
    if keep_mailboxes:
        conds.append(or_(audit_events.c.mailbox.is_(None), audit_events.c.mailbox.not_in(list(keep_mailboxes))))
    ids = [r[0] for r in conn.execute(select(audit_events.c.id).where(*conds).order_by(audit_events.c.id)
                                      .limit(limit))]
    if not ids:
        return 0
    return int(conn.execute(delete(audit_events).where(audit_events.c.id.in_(ids))).rowcount or 0)


def prunable_queue_rows(conn: Connection, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
    """Finished inbound queue rows (envelope metadata) received before `cutoff`."""
    stmt = (select(inbound_queue.c.id, inbound_queue.c.raw_key)
            .where(inbound_queue.c.status.in_(("done", "failed")), inbound_queue.c.received_at < cutoff)
            .order_by(inbound_queue.c.id).limit(limit))
    return many(conn, _skip_locked(conn, stmt))


def delete_queue_rows(conn: Connection, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    return int(conn.execute(delete(inbound_queue).where(inbound_queue.c.id.in_(list(ids)))).rowcount or 0)


# --------------------------------------------------------------------------- purge


def purge_batch(conn: Connection, mailbox_id: str, limit: int) -> list[dict[str, Any]]:
    """Any messages of the mailbox, with what deleting them must also clean up."""
    stmt = (select(messages.c.seq, messages.c.id, messages.c.thread_id, messages.c.raw_key, messages.c.queue_id,
                   messages.c.deleted_content_at)
            .where(messages.c.mailbox_id == mailbox_id).order_by(messages.c.seq).limit(limit))
    return many(conn, _skip_locked(conn, stmt))


def attachment_keys(conn: Connection, message_ids: Sequence[str]) -> set[str]:
    stmt = select(attachments.c.blob_key).where(attachments.c.message_id.in_(list(message_ids)))
    return {r[0] for r in conn.execute(stmt) if r[0]}


def scrub_queue_rows(conn: Connection, queue_ids: Iterable[int], mailbox_id: str) -> tuple[int, set[str]]:
    """Remove a mailbox from the envelope of finished queue rows; drop rows left with no recipient.

    Returns (rows deleted, raw keys of the deleted rows).
    """
    deleted, keys = 0, set()
    for row in many(conn, select(inbound_queue).where(inbound_queue.c.id.in_(sorted(set(queue_ids))))):
        if row["status"] == "pending":
            continue  # still to be delivered (it may reach other mailboxes); processing needs it whole
        rest = [r for r in row["recipients"] if r.get("mailbox_id") != mailbox_id]
        if rest:
            conn.execute(update(inbound_queue).where(inbound_queue.c.id == row["id"]).values(recipients=rest))
        else:
            conn.execute(delete(inbound_queue).where(inbound_queue.c.id == row["id"]))
            deleted += 1
            keys.add(row["raw_key"])
    return deleted, keys


def delete_mailbox_audit(conn: Connection, account_id: str, address: str, limit: int) -> int:
    ids = [r[0] for r in conn.execute(
        select(audit_events.c.id).where(audit_events.c.account_id == account_id, audit_events.c.mailbox == address)
        .order_by(audit_events.c.id).limit(limit))]
    if not ids:
        return 0
    return int(conn.execute(delete(audit_events).where(audit_events.c.id.in_(ids))).rowcount or 0)


# --------------------------------------------------------------------------- export


def count_messages(conn: Connection, mailbox_id: str) -> int:
    stmt = select(func.count()).select_from(messages).where(messages.c.mailbox_id == mailbox_id)
    return int(conn.execute(stmt).scalar_one())


def export_page(conn: Connection, mailbox_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Oldest first by seq, metadata columns only (bodies live in the raw message)."""
    stmt = (select(*EXPORT_COLUMNS).where(messages.c.mailbox_id == mailbox_id, messages.c.seq > after_seq)
            .order_by(messages.c.seq).limit(limit))
    return many(conn, stmt)


def attachments_by_message(conn: Connection, message_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in message_ids}
    stmt = (select(attachments).where(attachments.c.message_id.in_(list(message_ids)))
            .order_by(attachments.c.message_id, attachments.c.position))
    for row in many(conn, stmt):
        out[row["message_id"]].append(row)
    return out


def audit_page(conn: Connection, account_id: str, address: str, after_id: int, limit: int) -> list[dict[str, Any]]:
    stmt = (select(audit_events).where(audit_events.c.account_id == account_id, audit_events.c.mailbox == address,
                                       audit_events.c.id > after_id)
            .order_by(audit_events.c.id).limit(limit))
    return many(conn, stmt)


# --------------------------------------------------------------------------- periodic-job lock


def _skip_locked(conn: Connection, stmt: Any) -> Any:
    return stmt.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else stmt



# --------------------------------------------------------------------------- abuse flags


def set_disabled(conn: Connection, table: Table, row_id: str, at: datetime | None) -> None:
    """Set or clear `disabled_at` on an account, domain, mailbox or token row."""
    conn.execute(update(table).where(table.c.id == row_id).values(disabled_at=at))


def delete_mailbox_draft_attachments(conn: Connection, mailbox_id: str) -> set[str]:
    """Remove the attachment rows of the mailbox's drafts; returns the blob keys they held
    (the caller deletes those no other row references)."""
    of_mailbox = select(drafts.c.id).where(drafts.c.mailbox_id == mailbox_id).scalar_subquery()
    a = draft_attachments.c
    keys = {r[0] for r in conn.execute(select(a.blob_key).where(a.draft_id.in_(of_mailbox))) if r[0]}
    conn.execute(delete(draft_attachments).where(a.draft_id.in_(of_mailbox)))
    return keys


def delete_mailbox_drafts(conn: Connection, mailbox_id: str) -> int:
    return int(conn.execute(delete(drafts).where(drafts.c.mailbox_id == mailbox_id)).rowcount or 0)


def delete_mailbox_threads(conn: Connection, mailbox_id: str) -> int:
    return int(conn.execute(delete(threads).where(threads.c.mailbox_id == mailbox_id)).rowcount or 0)
