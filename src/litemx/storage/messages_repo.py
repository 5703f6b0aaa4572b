"""Messages, threads and attachments, plus keeping the full-text index in step."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (ColumnElement, Connection, Integer, and_, bindparam, case, false, func, insert, or_, select,
                        text, update)

from litemx.storage import lean_select
from litemx.storage.lean_insert import LeanInsert
from litemx.storage.repo import by_column, many, one, row_dict
from litemx.storage.schema import attachments, inbound_queue, messages, threads

# The inbound worker's per-message statements, built once: executed with a parameter dict they
# hit SQLAlchemy's compiled cache instead of being rebuilt and re-keyed for every message.
# Once per stored message: without Connection.execute's per-call work (storage/lean_insert.py).
_ADD_MESSAGE = LeanInsert(messages)
_ADD_ATTACHMENTS = LeanInsert(attachments)
_ADD_THREAD = insert(threads)
_THREAD_AT = bindparam("b_at", type_=threads.c.last_message_at.type)
# One statement for a thread that exists (most replies): count one more, keep the newest time.
_BUMP_THREAD = (update(threads).where(threads.c.id == bindparam("b_id"))
                .values(message_count=threads.c.message_count + 1,
                        last_message_at=case((threads.c.last_message_at < _THREAD_AT, _THREAD_AT),
                                             else_=threads.c.last_message_at)))


# How far a message's received_at may trail the account's newest stored one and still count
# as in order. Messages are accepted by several front processes and stored by several workers
# in leased batches, so a few seconds of reordering is normal; a delivery retried after a
# deferral is later than this and is marked `late`. Never lower it below a value already used:
# rows stored under a larger slack would break the search's bound (search_repo).
ORDER_SLACK = timedelta(minutes=10)
_NEWEST_IN_ORDER = (select(func.max(messages.c.received_at))
                    .where(messages.c.account_id == bindparam("b_account"), messages.c.late == false()))


def add_message(conn: Connection, values: dict[str, Any]) -> int:
    """Insert and index; returns the integer seq.

    `late` is decided here, inside the writing transaction: SQLite serialises writers, so
    every non-late row's received_at is at least that of every earlier non-late row of its
    account minus ORDER_SLACK (search_repo relies on it). On PostgreSQL two concurrent
    transactions do not see each other's rows, so the flag can miss one and its search does
    not rely on it.
    """
    newest = lean_select.scalar(conn, _NEWEST_IN_ORDER, {"b_account": values["account_id"]})
    late = newest is not None and values["received_at"] < newest - ORDER_SLACK
    seq = _ADD_MESSAGE.one(conn, {**values, "late": late})
    index_message(conn, seq)
    return seq


def add_attachments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _ADD_ATTACHMENTS.many(conn, rows)


_THREADS_BY_MESSAGE_IDS = (select(messages.c.message_id_header, messages.c.thread_id)
                           .where(messages.c.mailbox_id == bindparam("b_box"),
                                  messages.c.message_id_header.in_(bindparam("b_ids", expanding=True))))
_THREAD_BY_SUBJECT = (select(threads.c.id)
                      .where(threads.c.mailbox_id == bindparam("b_box"), threads.c.subject_key == bindparam("b_key"),
                             threads.c.last_message_at >= bindparam("b_since"))
                      .order_by(threads.c.last_message_at.desc()).limit(1))


def threads_by_message_ids(conn: Connection, mailbox_id: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    found = lean_select.rows(conn, _THREADS_BY_MESSAGE_IDS, {"b_box": mailbox_id, "b_ids": ids})
    return {row["message_id_header"]: row["thread_id"] for row in found}


def thread_by_subject(conn: Connection, mailbox_id: str, key: str, since: datetime) -> str | None:
    params = {"b_box": mailbox_id, "b_key": key, "b_since": since}
    thread_id: str | None = conn.execute(_THREAD_BY_SUBJECT, params).scalar()
    return thread_id


def touch_thread(conn: Connection, thread: dict[str, Any], at: datetime) -> None:
    """Create the thread or count one more message in it."""
    if lean_select.update(conn, _BUMP_THREAD, {"b_id": thread["id"], "b_at": at}) == 0:
        conn.execute(_ADD_THREAD, {**thread, "message_count": 1, "last_message_at": at, "created_at": at})


# The full-text index (see migration 0002 for why it lives outside the metadata).
_SQLITE_INDEX = text("INSERT INTO message_fts(rowid, subject, body, from_addr, to_addr) "
                     "SELECT seq, subject, body, from_addr, to_addr FROM message_fts_source WHERE seq = :seq")
_SQLITE_UNINDEX = text("INSERT INTO message_fts(message_fts, rowid, subject, body, from_addr, to_addr) "
                       "SELECT 'delete', seq, subject, body, from_addr, to_addr FROM message_fts_source "
                       "WHERE seq = :seq")
_PG_DOC = ("setweight(to_tsvector('simple', coalesce(subject, '')), 'A') || "
           "setweight(to_tsvector('simple', coalesce(from_name, '') || ' ' || coalesce(from_addr, '')), 'B') || "
           "setweight(to_tsvector('simple', coalesce(to_addrs::text, '') || ' ' || coalesce(cc_addrs::text, '')), "
           "'C') || setweight(to_tsvector('simple', left(coalesce(text_body, ''), 500000)), 'D')")
_PG_INDEX = text(f"INSERT INTO message_fts(seq, doc) SELECT seq, {_PG_DOC} FROM messages WHERE seq = :seq "
                 "ON CONFLICT (seq) DO UPDATE SET doc = EXCLUDED.doc")
_PG_UNINDEX = text("DELETE FROM message_fts WHERE seq = :seq")


def index_message(conn: Connection, seq: int) -> None:
    conn.execute(_SQLITE_INDEX if conn.dialect.name == "sqlite" else _PG_INDEX, {"seq": seq})


def unindex_message(conn: Connection, seq: int) -> None:
    """Call before the indexed columns change or vanish (FTS5 'delete' needs the old values)."""
    conn.execute(_SQLITE_UNINDEX if conn.dialect.name == "sqlite" else _PG_UNINDEX, {"seq": seq})


# Read on every GET /api/messages/{id}: built once, so executing them hits the compiled cache.
_MESSAGE_BY_ID = select(messages).where(messages.c.id == bindparam("b_id"))
_ATTACHMENTS_OF = (select(attachments)
                   .where(attachments.c.message_id == bindparam("b_id"), attachments.c.deleted_at.is_(None))
                   .order_by(attachments.c.position))


def message_by_id(conn: Connection, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(_MESSAGE_BY_ID, {"b_id": message_id}).first()
    return row_dict(row) if row is not None else None


def attachments_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    return [row_dict(r) for r in conn.execute(_ATTACHMENTS_OF, {"b_id": message_id})]


# --------------------------------------------------------------------------- read side (issue 3)
# Every read takes a MessageScope and applies it INSIDE the query, so nothing outside the
# caller's account and mailbox grants is ever fetched, counted or paginated over.

# Columns a list item or search hit shows (message_views.list_item): never the bodies, headers
# or raw key, nor Cc (a list item has none; each JSON column costs a decode per row).
LIST_COLUMNS = (
    messages.c.seq, messages.c.id, messages.c.mailbox, messages.c.thread_id, messages.c.direction,
    messages.c.status, messages.c.subject, messages.c.from_name, messages.c.from_addr, messages.c.to_addrs,
    messages.c.sent_at, messages.c.received_at, messages.c.size, messages.c.snippet,
    messages.c.has_attachments, messages.c.auth, messages.c.deleted_content_at,
)


@dataclass(frozen=True)
class MessageScope:
    """Which messages a read may see: one account, optionally some of its mailboxes, some statuses.

    `mailboxes` None means every mailbox of the account; `status` None with
    `include_quarantined` False hides quarantined mail (SPEC §5: not delivered as normal mail).
    """

    account_id: str
    mailboxes: tuple[str, ...] | None = None
    status: str | None = None
    include_quarantined: bool = False


def scope_conditions(scope: MessageScope, *, within_thread: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE conditions every message read applies (account, grants, status).

    `within_thread`: the query is already narrowed to one or a few threads. The account and
    mailbox terms still apply, written as `column || ''` so no index can serve them: SQLite
    without ANALYZE statistics ties (thread_id, seq) with (account_id, seq) and may otherwise
    walk a whole account to read one thread.
    """
    account, mailbox = messages.c.account_id, messages.c.mailbox
    if within_thread:
        account, mailbox = account.concat(""), mailbox.concat("")
    conds: list[ColumnElement[bool]] = [account == scope.account_id]
    if scope.mailboxes is not None:
        conds.append(mailbox.in_(sorted(scope.mailboxes)))
    if scope.status is not None:
        conds.append(messages.c.status == scope.status)
    elif not scope.include_quarantined:
        conds.append(messages.c.status != "quarantined")
    return conds


# The hot reads (lists, search) build their statement once per shape (which conditions apply)
# with every value a required parameter: executed with `scope_params(...)` they skip building
# and re-keying the statement per request. Same SQL as scope_conditions, so the same plans.
ScopeShape = tuple[bool, bool, bool]


def scope_shape(scope: MessageScope) -> ScopeShape:
    return scope.mailboxes is not None, scope.status is not None, scope.include_quarantined


def bound_scope_conditions(shape: ScopeShape) -> list[ColumnElement[bool]]:
    """`scope_conditions` for a statement built once per shape; values come from `scope_params`."""
    has_mailboxes, has_status, include_quarantined = shape
    conds: list[ColumnElement[bool]] = [messages.c.account_id == bindparam("s_account")]
    if has_mailboxes:
        conds.append(messages.c.mailbox.in_(bindparam("s_mailboxes", expanding=True)))
    if has_status:
        conds.append(messages.c.status == bindparam("s_status"))
    elif not include_quarantined:
        conds.append(messages.c.status != "quarantined")
    return conds


def scope_params(scope: MessageScope) -> dict[str, Any]:
    params: dict[str, Any] = {"s_account": scope.account_id}
    if scope.mailboxes is not None:
        params["s_mailboxes"] = sorted(scope.mailboxes)
    if scope.status is not None:
        params["s_status"] = scope.status
    return params


@functools.lru_cache(maxsize=32)
def _list_statement(shape: ScopeShape, with_cursor: bool) -> Any:
    conds = bound_scope_conditions(shape)
    if with_cursor:
        conds.append(messages.c.seq < bindparam("b_before"))
    stmt = select(*LIST_COLUMNS).where(*conds).order_by(messages.c.seq.desc())
    return stmt.limit(bindparam("b_limit", type_=Integer))


def list_messages(conn: Connection, scope: MessageScope, limit: int, before_seq: int | None) -> list[dict[str, Any]]:
    """Newest first by seq; fetches `limit` rows (callers ask for one extra to detect more)."""
    params = {**scope_params(scope), "b_limit": limit}
    if before_seq is not None:
        params["b_before"] = before_seq
    return lean_select.rows(conn, _list_statement(scope_shape(scope), before_seq is not None), params)


def thread_by_id(conn: Connection, thread_id: str) -> dict[str, Any] | None:
    return by_column(conn, threads, "id", thread_id)


def thread_messages(conn: Connection, thread_id: str, scope: MessageScope, limit: int,
                    after_seq: int | None) -> list[dict[str, Any]]:
    """A thread's messages oldest first (full rows: the thread view shows bodies)."""
    conds = [messages.c.thread_id == thread_id, *scope_conditions(scope, within_thread=True)]
    if after_seq is not None:
        conds.append(messages.c.seq > after_seq)
    return many(conn, select(messages).where(*conds).order_by(messages.c.seq).limit(limit))


def list_threads(conn: Connection, scope: MessageScope, limit: int,
                 after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """Threads with at least one message visible in `scope`, newest activity first.

    Each row also carries `visible_count` and the newest visible message's id, sender and
    snippet, so a thread holding only quarantined mail stays hidden unless the scope includes
    quarantine. The page is chosen first (an index walk over threads); the per-thread figures
    are then computed for that page's threads only.
    """
    visible = (select(messages.c.seq)
               .where(messages.c.thread_id == threads.c.id, *scope_conditions(scope, within_thread=True)).exists())
    conds = [threads.c.account_id == scope.account_id, visible]
    if scope.mailboxes is not None:
        conds.append(threads.c.mailbox.in_(sorted(scope.mailboxes)))
    if after is not None:
        at, thread_id = after
        conds.append(or_(threads.c.last_message_at < at,
                         and_(threads.c.last_message_at == at, threads.c.id < thread_id)))
    stmt = select(threads).where(*conds).order_by(threads.c.last_message_at.desc(), threads.c.id.desc())
    rows = many(conn, stmt.limit(limit))
    latest = _latest_per_thread(conn, scope, [r["id"] for r in rows])
    return [{**row, **latest.get(row["id"], {})} for row in rows]


def _latest_per_thread(conn: Connection, scope: MessageScope, thread_ids: list[str]) -> dict[str, dict[str, Any]]:
    """thread id -> visible_count and the newest visible message's id, sender and snippet."""
    if not thread_ids:
        return {}
    by_thread = {"partition_by": messages.c.thread_id}
    ranked = select(
        messages.c.thread_id,
        func.row_number().over(**by_thread, order_by=messages.c.seq.desc()).label("rank"),
        func.count().over(**by_thread).label("visible_count"),
        messages.c.from_name.label("latest_from_name"), messages.c.from_addr.label("latest_from_addr"),
        messages.c.snippet.label("latest_snippet"), messages.c.id.label("latest_id"),
    ).where(messages.c.thread_id.in_(thread_ids), *scope_conditions(scope, within_thread=True)).subquery("ranked")
    rows = many(conn, select(ranked).where(ranked.c.rank == 1))
    return {r.pop("thread_id"): {k: v for k, v in r.items() if k != "rank"} for r in rows}


def attachment_of(conn: Connection, message_id: str, attachment_id: str) -> dict[str, Any] | None:
    """A live (not retention-tombstoned) attachment of this message."""
    stmt = select(attachments).where(attachments.c.id == attachment_id, attachments.c.message_id == message_id,
                                     attachments.c.deleted_at.is_(None))
    return one(conn, stmt)


def messages_of_queue(conn: Connection, queue_id: int) -> list[dict[str, Any]]:
    """What one inbound queue row delivered (simulate answers with these ids)."""
    stmt = (select(messages.c.id, messages.c.mailbox, messages.c.thread_id, messages.c.status)
            .where(messages.c.queue_id == queue_id).order_by(messages.c.seq))
    return many(conn, stmt)


def queue_state(conn: Connection, queue_id: int) -> dict[str, Any] | None:
    """Status, attempts and last error of an inbound queue row (simulate waits on it)."""
    stmt = select(inbound_queue.c.status, inbound_queue.c.attempts, inbound_queue.c.last_error,
                  inbound_queue.c.next_attempt_at).where(inbound_queue.c.id == queue_id)
    return one(conn, stmt)
