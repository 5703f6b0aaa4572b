"""Reading mail (SPEC §3, §5, §7): list, search, read, attachments, threads.

Every method applies the caller's account and mailbox grants inside its query, answers 404
for anything outside them exactly as for anything missing, and reads in a read transaction
(a snapshot: no write lock); its audit event is committed right after by the group-committing
audit writer, before the answer is returned (`ServiceBase.audit_read`).

Decisions (where SPEC is silent):
- Lists and search are newest first by arrival order (seq); threads by newest activity.
- Quarantined messages (DMARC reject) are hidden from lists, search and thread views unless
  the caller asks with `include_quarantined=true` (or `status=quarantined` on the list); a
  quarantined message can still be read by id, with `status: "quarantined"`.
- Answers stay under `message_views.RESPONSE_BYTES`; see that module for the size rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from litemx.core.searchquery import parse_query
from litemx.errors import invalid_field
from litemx.service import message_views as views
from litemx.service.base import Infra, ServiceBase, not_found, operation
from litemx.service.directory import DirectoryService
from litemx.service.principal import Caller
from litemx.storage import messages_repo as repo
from litemx.storage import search_repo
from litemx.storage.messages_repo import MessageScope
from litemx.storage.pagination import Page, encode_cursor, page

STATUSES = ("received", "quarantined", "queued", "sent", "failed")
DEFAULT_THREAD_PAGE = 20
MAX_THREAD_PAGE = 50
LIST_ENVELOPE_BYTES = 500  # room kept for the page's own keys (next_cursor, truncated...)
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Control characters (NUL above all: PostgreSQL text cannot hold it) never reach SQL or audit.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class AttachmentContent:
    """Bytes of one attachment plus the headers that make serving them safe."""

    data: bytes
    content_type: str
    headers: dict[str, str]


class MessageService(ServiceBase):
    def __init__(self, infra: Infra, directory: DirectoryService):
        super().__init__(infra)
        self.directory = directory

    # -- messages --------------------------------------------------------------------------
    @operation("messages.list")
    def list_messages(self, caller: Caller, mailbox: str | None = None, status: str | None = None,
                      include_quarantined: bool = False, limit: int | None = None,
                      cursor: str | None = None) -> dict[str, Any]:
        """Newest first. Raises: InvalidRequest (status, limit, cursor), NotFound (mailbox)."""
        p = page(limit, cursor)
        with self.db.read() as conn:
            scope = self._scope(conn, caller, mailbox, _status(status), include_quarantined)
            rows = repo.list_messages(conn, scope, p.limit + 1, _seq_cursor(p))
        result = _message_page(rows, p.limit, views.list_item)
        self.audit_read(caller, "message.list", resource_type="message", mailbox=_audit_mailbox(scope),
                        details={"count": len(result["items"]), "status": status,
                                 "include_quarantined": include_quarantined})
        return result

    @operation("messages.read")
    def read_message(self, caller: Caller, message_id: str, offset: int = 0,
                     max_chars: int | None = None) -> dict[str, Any]:
        """One message with body windows. Raises: NotFound, InvalidRequest (offset, max_chars)."""
        window = _window(offset, max_chars)
        with self.db.read() as conn:
            row = self._visible_message(conn, caller, message_id)
            attachments = repo.attachments_of(conn, row["id"])
        view = views.detail(row, attachments, window)
        self.audit_read(caller, "message.read", resource_type="message", resource_id=row["id"],
                        mailbox=row["mailbox"], details={"offset": window.offset, "max_chars": window.max_chars,
                                                         "truncated": view["truncated"]})
        return view

    @operation("messages.attachment")
    def read_attachment(self, caller: Caller, message_id: str, attachment_id: str) -> AttachmentContent:
        """An attachment's bytes. Raises: NotFound (also once retention removed the content)."""
        with self.db.read() as conn:
            row = self._visible_message(conn, caller, message_id)
            attachment = repo.attachment_of(conn, row["id"], public_id("attachment", attachment_id))
        if attachment is None or attachment["blob_key"] is None:
            raise not_found("attachment", attachment_id)
        data = self._blob(attachment["blob_key"], attachment_id)
        self.audit_read(caller, "attachment.read", resource_type="attachment", resource_id=attachment_id,
                        mailbox=row["mailbox"], details={"message_id": row["id"], "size": len(data),
                                                         "content_type": attachment["content_type"]})
        content_type, headers = views.download_headers(attachment["filename"], attachment["content_type"])
        return AttachmentContent(data, content_type, headers)

    @operation("messages.search")
    def search(self, caller: Caller, q: str, mailbox: str | None = None, include_quarantined: bool = False,
               limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """SPEC §5 search. Raises: InvalidRequest naming `q` (or limit/cursor), NotFound (mailbox)."""
        if not q.strip():
            raise invalid_field("q", "the search query is empty")
        query = parse_query(q)
        p = page(limit, cursor)
        with self.db.read() as conn:
            scope = self._scope(conn, caller, mailbox, None, include_quarantined)
            found = search_repo.search(conn, scope, query, p.limit, _seq_cursor(p))
        more = found.rows + ([{}] if found.more else [])  # a placeholder row proves "more"
        result = _message_page(more, p.limit, _hit)
        self.audit_read(caller, "message.search", resource_type="message", mailbox=_audit_mailbox(scope),
                        details={"query": printable(q)[:500], "count": len(result["items"]),
                                 "mailbox": printable(mailbox) if mailbox else None})
        return result

    # -- threads ---------------------------------------------------------------------------
    @operation("threads.list")
    def list_threads(self, caller: Caller, mailbox: str | None = None, include_quarantined: bool = False,
                     limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Newest activity first. Raises: InvalidRequest (limit, cursor), NotFound (mailbox)."""
        p = page(limit, cursor)
        with self.db.read() as conn:
            scope = self._scope(conn, caller, mailbox, None, include_quarantined)
            rows = repo.list_threads(conn, scope, p.limit + 1, _thread_cursor(p))
        result = _thread_page(rows, p.limit)
        self.audit_read(caller, "thread.list", resource_type="thread", mailbox=_audit_mailbox(scope),
                        details={"count": len(result["items"])})
        return result

    @operation("threads.read")
    def read_thread(self, caller: Caller, thread_id: str, include_quarantined: bool = False,
                    max_chars: int | None = None, limit: int | None = None,
                    cursor: str | None = None) -> dict[str, Any]:
        """A thread's messages oldest first, bodies cut to `max_chars` and the answer to the
        response budget. Raises: NotFound, InvalidRequest (max_chars, limit, cursor)."""
        per_message = _bounded("max_chars", max_chars, views.THREAD_BODY_CHARS, views.MAX_MAX_CHARS)
        p = page(_bounded("limit", limit, DEFAULT_THREAD_PAGE, MAX_THREAD_PAGE), cursor)
        with self.db.read() as conn:
            thread = self._visible_thread(conn, caller, thread_id)
            scope = MessageScope(caller.principal.account_id, (thread["mailbox"],), None, include_quarantined)
            rows = repo.thread_messages(conn, thread["id"], scope, p.limit + 1, _seq_cursor(p, "seq_after"))
        view = _thread_view(thread, rows, p.limit, per_message)
        self.audit_read(caller, "thread.read", resource_type="thread", resource_id=thread["id"],
                        mailbox=thread["mailbox"], details={"messages": [m["id"] for m in view["messages"]],
                                                            "truncated": view["truncated"]})
        return view

    # -- shared lookups --------------------------------------------------------------------
    def _scope(self, conn: Connection, caller: Caller, mailbox: str | None, status: str | None,
               include_quarantined: bool) -> MessageScope:
        """Raises: NotFound when `mailbox` is missing, elsewhere or outside the grants."""
        p = caller.principal
        if mailbox is not None and _UNPRINTABLE.search(mailbox):
            raise not_found("mailbox", printable(mailbox))
        if mailbox is not None:
            boxes: tuple[str, ...] | None = (self.directory.visible_mailbox(conn, caller, mailbox)["address"],)
        else:
            boxes = None if p.all_mailboxes else tuple(sorted(p.grants))
        return MessageScope(p.account_id, boxes, status, include_quarantined)

    def _visible_message(self, conn: Connection, caller: Caller, message_id: str) -> dict[str, Any]:
        """Raises: NotFound when absent, in another account or in a mailbox outside the grants."""
        row = repo.message_by_id(conn, public_id("message", message_id))
        if row is None or row["account_id"] != caller.principal.account_id:
            raise not_found("message", message_id)
        if not caller.principal.can_see(row["mailbox"]):
            raise not_found("message", message_id, grant_denied=True)
        return row

    def _visible_thread(self, conn: Connection, caller: Caller, thread_id: str) -> dict[str, Any]:
        """Raises: NotFound when absent, in another account or in a mailbox outside the grants."""
        row = repo.thread_by_id(conn, public_id("thread", thread_id))
        if row is None or row["account_id"] != caller.principal.account_id:
            raise not_found("thread", thread_id)
        if not caller.principal.can_see(row["mailbox"]):
            raise not_found("thread", thread_id, grant_denied=True)
        return row

    def _blob(self, key: str, attachment_id: str) -> bytes:
        """Raises: NotFound when the blob is gone (retention ran between the lookup and now)."""
        try:
            return self.infra.blobs.get(key)
        except KeyError:
            raise not_found("attachment", attachment_id) from None


# --------------------------------------------------------------------------- helpers


def printable(value: str) -> str:
    """Client text made safe to store in audit details (control characters become U+FFFD)."""
    return _UNPRINTABLE.sub("\ufffd", value)


def public_id(resource_type: str, value: str) -> str:
    """An id as we issue them, or the 404 any unknown id gets (never a query with odd bytes).

    Raises: NotFound.
    """
    if not _PUBLIC_ID.fullmatch(value):
        raise not_found(resource_type, printable(value)[:100])
    return value


def _status(status: str | None) -> str | None:
    """Raises: InvalidRequest naming `status` for an unknown value."""
    if status is not None and status not in STATUSES:
        raise invalid_field("status", f"status must be one of {', '.join(STATUSES)}")
    return status


def _bounded(field: str, value: int | None, default: int, maximum: int) -> int:
    """Raises: InvalidRequest naming `field` when outside 1..maximum."""
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise invalid_field(field, f"{field} must be between 1 and {maximum}")
    return value


def _window(offset: int, max_chars: int | None) -> views.Window:
    """Raises: InvalidRequest naming `offset` or `max_chars`."""
    if offset < 0:
        raise invalid_field("offset", "offset must be 0 or more")
    return views.Window(offset, _bounded("max_chars", max_chars, views.DEFAULT_MAX_CHARS, views.MAX_MAX_CHARS))


def _seq_cursor(p: Page, kind: str = "seq") -> int | None:
    """Raises: InvalidRequest naming `cursor` when it is not a message cursor of this kind."""
    if p.after is None:
        return None
    if not isinstance(p.after, dict) or not isinstance(p.after.get(kind), int):
        raise invalid_field("cursor", "cursor is not one this server issued for this list")
    return int(p.after[kind])


def _thread_cursor(p: Page) -> tuple[datetime, str] | None:
    """Raises: InvalidRequest naming `cursor`."""
    if p.after is None:
        return None
    try:
        at, thread_id = p.after["at"], p.after["id"]
        return datetime.fromisoformat(at), str(thread_id)
    except (KeyError, TypeError, ValueError):
        raise invalid_field("cursor", "cursor is not one this server issued for this list") from None


def _audit_mailbox(scope: MessageScope) -> str | None:
    """The one mailbox a read covered, when there is one (so mailbox-scoped audit shows it)."""
    return scope.mailboxes[0] if scope.mailboxes is not None and len(scope.mailboxes) == 1 else None


def _hit(row: dict[str, Any]) -> dict[str, Any]:
    item = views.list_item(row)
    item["snippet"] = row["hit_snippet"] or row["snippet"]
    return item


def _message_page(rows: list[dict[str, Any]], limit: int, render: Callable[[dict[str, Any]], dict[str, Any]]
                  ) -> dict[str, Any]:
    """Items newest first, cut to the page size and the response budget, with a cursor."""
    items = [render(r) for r in rows[:limit]]
    kept = views.fit(items, views.RESPONSE_BYTES - LIST_ENVELOPE_BYTES)
    more = len(rows) > limit or len(kept) < len(items)
    cursor = encode_cursor({"seq": rows[len(kept) - 1]["seq"]}) if more and kept else None
    return {"items": kept, "next_cursor": cursor, "truncated": len(kept) < len(items)}


def _thread_page(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    items = [views.thread_item(r) for r in rows[:limit]]
    kept = views.fit(items, views.RESPONSE_BYTES - LIST_ENVELOPE_BYTES)
    more = len(rows) > limit or len(kept) < len(items)
    last = rows[len(kept) - 1] if kept else None
    cursor = encode_cursor({"at": last["last_message_at"].isoformat(), "id": last["id"]}) if more and last else None
    return {"items": kept, "next_cursor": cursor, "truncated": len(kept) < len(items)}


def _thread_view(thread: dict[str, Any], rows: list[dict[str, Any]], limit: int, per_message: int) -> dict[str, Any]:
    """Messages until the page or the byte budget is full; a cut says so and gives the cursor."""
    view: dict[str, Any] = {"thread": views.thread_header(thread), "untrusted": True,
                            "untrusted_note": views.UNTRUSTED_NOTE,
                            "limits": {"response_bytes": views.RESPONSE_BYTES, "max_chars_per_message": per_message}}
    room = views.RESPONSE_BYTES - views.json_size(view) - LIST_ENVELOPE_BYTES
    items: list[dict[str, Any]] = []
    for row in rows[:limit]:
        item = views.thread_message(row, per_message, room, force=not items)
        if item is None:
            break
        room -= views.json_size(item) + 1
        items.append(item)
    cut_by_budget = len(items) < min(len(rows), limit)
    more = len(rows) > limit or cut_by_budget
    view["messages"] = items
    view["next_cursor"] = encode_cursor({"seq_after": rows[len(items) - 1]["seq"]}) if more and items else None
    view["truncated"] = cut_by_budget or any(m["text"] and m["text"]["truncated"] for m in items)
    return view
