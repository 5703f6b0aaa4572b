"""REST routes for drafts, replies, sending and the suppression list (SPEC §3 "Drafts and
sending", §6). Each handler is one service call.

Send routes take an optional `Idempotency-Key` header: the same key with the same request
answers the first response again without sending; with another request, 409 `conflict`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query

from litemx.adapters.http.deps import CallerDep, ServicesDep
from litemx.adapters.http.models import DraftCreate, DraftUpdate, ReplyCreate, SendDirect, attachment_dicts

router = APIRouter()
DRAFTS = "Drafts and sending"
THREADS = "Messages and threads"
Json = dict[str, Any]
Limit = Query(None, ge=1, le=200, description="Page size (1-200, default 50).")
Cursor = Query(None, description="Opaque cursor from a previous page's next_cursor.")
IdempotencyKey = Header(None, alias="Idempotency-Key", description="Makes retries safe: same key + same request "
                        "= the first response, nothing sent twice (kept 24 h, per account).")
TOO_LARGE = {413: {"description": "`payload_too_large`: the message with its attachments would exceed the "
                                  "server's max_message_bytes (details.field, details.limit)"}}
SEND_BLOCKED = {**TOO_LARGE, 403: {"description": "`send_blocked` with details.reasons (SPEC §6), or `forbidden`"},
                409: {"description": "Draft already sent, or Idempotency-Key reused for another request"}}


@router.post("/api/messages/{id}/reply", status_code=201, tags=[THREADS])
def reply_to_message(svc: ServicesDep, caller: CallerDep, id: str, body: ReplyCreate) -> Json:  # noqa: A002
    """Create a reply draft (In-Reply-To, References, `Re:` subject, recipients); sending is separate."""
    return svc.drafts.reply_to_message(caller, id, body.text, body.html, body.reply_all)


@router.post("/api/threads/{id}/reply", status_code=201, tags=[THREADS])
def reply_to_thread(svc: ServicesDep, caller: CallerDep, id: str, body: ReplyCreate) -> Json:  # noqa: A002
    """Create a reply draft to the thread's latest inbound message."""
    return svc.drafts.reply_to_thread(caller, id, body.text, body.html, body.reply_all)


@router.post("/api/threads/{id}/drafts", status_code=201, tags=[THREADS])
def draft_in_thread(svc: ServicesDep, caller: CallerDep, id: str, body: ReplyCreate) -> Json:  # noqa: A002
    """Create a draft in the thread, answering its latest inbound message."""
    return svc.drafts.draft_in_thread(caller, id, body.text, body.html, body.reply_all)


@router.get("/api/drafts", tags=[DRAFTS])
def list_drafts(svc: ServicesDep, caller: CallerDep,
                mailbox: str | None = Query(None, description="Only this mailbox (404 when not visible)."),
                limit: int | None = Limit, cursor: str | None = Cursor) -> Json:
    """Unsent drafts, newest first."""
    return svc.drafts.list_drafts(caller, mailbox, limit, cursor)


@router.post("/api/drafts", status_code=201, tags=[DRAFTS], responses=TOO_LARGE)
def create_draft(svc: ServicesDep, caller: CallerDep, body: DraftCreate) -> Json:
    """Write a draft, with attachments if any (413 `payload_too_large` when over the size limit)."""
    return svc.drafts.create(caller, body.mailbox, body.to, body.cc, body.bcc, body.subject, body.text, body.html,
                             attachment_dicts(body.attachments))


@router.get("/api/drafts/{id}", tags=[DRAFTS])
def show_draft(svc: ServicesDep, caller: CallerDep, id: str) -> Json:  # noqa: A002 - SPEC's path name
    return svc.drafts.show(caller, id)


@router.patch("/api/drafts/{id}", tags=[DRAFTS], responses=TOO_LARGE)
def update_draft(svc: ServicesDep, caller: CallerDep, id: str, body: DraftUpdate) -> Json:  # noqa: A002
    """Change the given fields of an unsent draft (`attachments` replaces the whole list)."""
    changes = body.model_dump(exclude_unset=True)
    if "attachments" in changes:
        changes["attachments"] = attachment_dicts(body.attachments) or []
    return svc.drafts.update(caller, id, changes)


@router.delete("/api/drafts/{id}", tags=[DRAFTS])
def delete_draft(svc: ServicesDep, caller: CallerDep, id: str) -> Json:  # noqa: A002
    return svc.drafts.delete(caller, id)


@router.post("/api/drafts/{id}/send", status_code=202, tags=[DRAFTS], responses=SEND_BLOCKED)
def send_draft(svc: ServicesDep, caller: CallerDep, id: str,  # noqa: A002
               idempotency_key: str | None = IdempotencyKey) -> Json:
    """Queue the draft for delivery after the full preflight (needs email:send)."""
    return svc.sending.send_draft(caller, id, idempotency_key)


@router.post("/api/send", status_code=202, tags=[DRAFTS], responses=SEND_BLOCKED)
def send_direct(svc: ServicesDep, caller: CallerDep, body: SendDirect,
                idempotency_key: str | None = IdempotencyKey) -> Json:
    """Send without a draft, after the full preflight (needs email:send)."""
    return svc.sending.send_direct(caller, body.mailbox, body.to, body.cc, body.bcc, body.subject, body.text,
                                   body.html, idempotency_key, attachment_dicts(body.attachments))


@router.get("/api/suppressions", tags=[DRAFTS])
def list_suppressions(svc: ServicesDep, caller: CallerDep, limit: int | None = Limit,
                      cursor: str | None = Cursor) -> Json:
    """Recipients this account no longer sends to (hard bounces, complaints)."""
    return svc.bounces.list_suppressions(caller, limit, cursor)


@router.delete("/api/suppressions/{address}", tags=[DRAFTS])
def remove_suppression(svc: ServicesDep, caller: CallerDep, address: str) -> Json:
    """Allow sending to this recipient again."""
    return svc.bounces.remove_suppression(caller, address)
