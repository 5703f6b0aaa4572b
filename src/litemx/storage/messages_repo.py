"""Messages, threads and attachments, plus keeping the full-text index in step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from litemx.storage.repo import by_column, many, one
from litemx.storage.schema import attachments, messages, threads


def add_message(conn: Connection, values: dict[str, Any]) -> int:
    """Insert and index; returns the integer seq."""
    seq = int(conn.execute(insert(messages).values(**values).returning(messages.c.seq)).scalar_one())
    index_message(conn, seq)
    return seq


def delivered_mailboxes(conn: Connection, queue_id: int) -> set[str]:
    stmt = select(messages.c.mailbox_id).where(messages.c.queue_id == queue_id)
    return {r["mailbox_id"] for r in many(conn, stmt)}


def add_attachments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(attachments), rows)


def threads_by_message_ids(conn: Connection, mailbox_id: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    stmt = (select(messages.c.message_id_header, messages.c.thread_id)
            .where(messages.c.mailbox_id == mailbox_id, messages.c.message_id_header.in_(ids)))
    return {r["message_id_header"]: r["thread_id"] for r in many(conn, stmt)}


def thread_by_subject(conn: Connection, mailbox_id: str, key: str, since: datetime) -> str | None:
    stmt = (select(threads.c.id).where(threads.c.mailbox_id == mailbox_id, threads.c.subject_key == key,
                                       threads.c.last_message_at >= since)
            .order_by(threads.c.last_message_at.desc()).limit(1))
    row = one(conn, stmt)
    return row["id"] if row else None


def touch_thread(conn: Connection, thread: dict[str, Any], at: datetime) -> None:
    """Create the thread or count one more message in it."""
    existing = by_column(conn, threads, "id", thread["id"])
    if existing is None:
        conn.execute(insert(threads).values(**thread, message_count=1, last_message_at=at, created_at=at))
        return
    newest = max(existing["last_message_at"], at)
    conn.execute(update(threads).where(threads.c.id == thread["id"])
                 .values(message_count=threads.c.message_count + 1, last_message_at=newest))


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


def message_by_id(conn: Connection, message_id: str) -> dict[str, Any] | None:
    return by_column(conn, messages, "id", message_id)


def attachments_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    stmt = (select(attachments).where(attachments.c.message_id == message_id, attachments.c.deleted_at.is_(None))
            .order_by(attachments.c.position))
    return many(conn, stmt)
