"""REST routes for reading mail (SPEC §3 "Messages and threads") and the simulate inbound route.

Each handler is one service call. `/api/messages/search` is declared before
`/api/messages/{id}` so the literal path wins. The read routes are async and call their
service method through `deps.answer` (on the event loop, no thread hop; see deps.py);
`response_model` keeps their OpenAPI schema.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from litemx.adapters.http.deps import CallerDep, ServicesDep, answer
from litemx.adapters.http.models import InboundSimulate
from litemx.errors import invalid_field

router = APIRouter()
TAG = "Messages and threads"
Json = dict[str, Any]
Limit = Query(None, ge=1, le=200, description="Page size (1-200, default 50; threads/{id}: 1-50, default 20).")
Cursor = Query(None, description="Opaque cursor from a previous page's next_cursor.")
MailboxFilter = Query(None, description="Only this mailbox (404 when it is not visible to the token).")
Quarantined = Query(False, description="Also show quarantined messages (DMARC reject); hidden by default.")


@router.get("/api/messages", tags=[TAG], response_model=Json)
async def list_messages(request: Request, caller: CallerDep, mailbox: str | None = MailboxFilter,
                        status: str | None = Query(None, description="received | quarantined | queued | sent | failed"),
                        include_quarantined: bool = Quarantined, limit: int | None = Limit,
                        cursor: str | None = Cursor) -> Response:
    """Messages newest first: sender, subject, snippet and SPF/DKIM/DMARC verdicts (no bodies)."""
    return await answer(request, lambda svc: svc.messages.list_messages(caller, mailbox, status,
                                                                        include_quarantined, limit, cursor))


@router.get("/api/messages/search", tags=[TAG], response_model=Json)
async def search_messages(request: Request, caller: CallerDep,
                          q: str = Query(description='Words, "phrases", from: to: subject: has:attachment '
                                                     "after:YYYY-MM-DD before:YYYY-MM-DD (all ANDed)."),
                          mailbox: str | None = MailboxFilter, include_quarantined: bool = Quarantined,
                          limit: int | None = Limit, cursor: str | None = Cursor) -> Response:
    """Newest first; `snippet` marks the matched words with **."""
    return await answer(request, lambda svc: svc.messages.search(caller, q, mailbox, include_quarantined, limit,
                                                                 cursor))


@router.get("/api/messages/{id}", tags=[TAG], response_model=Json)
async def read_message(request: Request, caller: CallerDep, id: str,  # noqa: A002 - SPEC's path name
                       offset: int = Query(0, ge=0, description="First character of the body window."),
                       max_chars: int | None = Query(None, ge=1, le=60000,
                                                     description="Body window size in characters (default 20000).")
                       ) -> Response:
    """One message: headers, verdicts, signals, attachments, text and sanitised HTML windows."""
    return await answer(request, lambda svc: svc.messages.read_message(caller, id, offset, max_chars))


@router.get("/api/messages/{id}/attachments/{attachment_id}", tags=[TAG],
            response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def download_attachment(svc: ServicesDep, caller: CallerDep, id: str,  # noqa: A002
                        attachment_id: str) -> Response:
    """The attachment's bytes, always as a download (never rendered inline)."""
    content = svc.messages.read_attachment(caller, id, attachment_id)
    # Content-Type set as given: Starlette would append "charset=utf-8" to text/* types,
    # which an attachment in another charset must not be told it is.
    return Response(content.data, headers={**content.headers, "Content-Type": content.content_type})


@router.get("/api/threads", tags=[TAG], response_model=Json)
async def list_threads(request: Request, caller: CallerDep, mailbox: str | None = MailboxFilter,
                       include_quarantined: bool = Quarantined, limit: int | None = Limit,
                       cursor: str | None = Cursor) -> Response:
    """Conversations, newest activity first, each with its latest message's sender and snippet."""
    return await answer(request, lambda svc: svc.messages.list_threads(caller, mailbox, include_quarantined, limit,
                                                                       cursor))


@router.get("/api/threads/{id}", tags=[TAG], response_model=Json)
async def read_thread(request: Request, caller: CallerDep, id: str,  # noqa: A002 - SPEC's path name
                      include_quarantined: bool = Quarantined,
                      max_chars: int | None = Query(None, ge=1, le=60000,
                                                    description="Body characters per message (default 4000)."),
                      limit: int | None = Query(None, ge=1, le=50, description="Messages per page (1-50, default 20)."),
                      cursor: str | None = Cursor) -> Response:
    """A thread's messages oldest first, bodies cut to size; read on with next_cursor / next_offset."""
    return await answer(request, lambda svc: svc.messages.read_thread(caller, id, include_quarantined, max_chars,
                                                                      limit, cursor))


@router.post("/api/inbound/simulate", tags=["Inbound"])
def simulate_inbound(svc: ServicesDep, caller: CallerDep, body: InboundSimulate) -> Json:
    """Deliver raw MIME through the MX pipeline (admin only); answers the created message ids."""
    return svc.inbound.simulate(caller, _raw_bytes(body), body.recipients, body.mail_from, body.client_ip,
                                body.helo)


def _raw_bytes(body: InboundSimulate) -> bytes:
    """Raises: InvalidRequest naming `raw` / `raw_base64`."""
    if (body.raw is None) == (body.raw_base64 is None):
        raise invalid_field("raw", "give exactly one of raw and raw_base64")
    if body.raw is not None:
        try:
            return body.raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from JSON "\ud800"
            raise invalid_field("raw", "raw must be valid Unicode text; send other bytes as raw_base64") from None
    try:
        return base64.b64decode(body.raw_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise invalid_field("raw_base64", "raw_base64 is not valid base64") from None
