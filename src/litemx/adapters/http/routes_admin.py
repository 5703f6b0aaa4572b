"""REST routes for retention, legal hold, abuse controls and mailbox export/purge (SPEC §10, §11).

Every route is the account's admin token only (the operation table says so; the service
checks). Each handler is one service call.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from litemx.adapters.http.deps import CallerDep, ServicesDep
from litemx.adapters.http.models import LegalHoldUpdate, RetentionRun

router = APIRouter()
Json = dict[str, Any]
RETENTION = ["Tokens, audit, retention, MCP"]
ABUSE = ["Abuse and privacy"]
ZIP_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "A zip: `<id>.eml` per stored message (byte-identical), `messages.jsonl`, `audit.jsonl`.",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/api/retention/run", tags=RETENTION, summary="Run the retention cleanup for this account now")
def run_retention(svc: ServicesDep, caller: CallerDep, body: RetentionRun | None = None) -> Json:
    return svc.retention.run(caller, body.as_of if body else None)


@router.put("/api/mailboxes/{mailbox}/legal-hold", tags=ABUSE, summary="Put a mailbox on legal hold or release it")
def set_legal_hold(svc: ServicesDep, caller: CallerDep, mailbox: str, body: LegalHoldUpdate) -> Json:
    return svc.retention.set_legal_hold(caller, mailbox, body.hold)


@router.get("/api/mailboxes/{mailbox}/export", tags=ABUSE, response_class=StreamingResponse,
            responses=ZIP_RESPONSE, summary="Export a mailbox as a zip (streamed)")
def export_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> StreamingResponse:
    export = svc.abuse.export_mailbox(caller, mailbox)
    headers = {"Content-Disposition": f'attachment; filename="{export.filename}"',
               "X-LiteMX-Messages": str(export.messages)}
    return StreamingResponse(export.chunks, media_type="application/zip", headers=headers)


@router.post("/api/mailboxes/{mailbox}/purge", tags=ABUSE, summary="Erase all content and metadata of a mailbox")
def purge_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.abuse.purge_mailbox(caller, mailbox)


@router.post("/api/domains/{domain}/disable", tags=ABUSE, summary="Disable a domain (refuses mail, blocks sending)")
def disable_domain(svc: ServicesDep, caller: CallerDep, domain: str) -> Json:
    return svc.abuse.disable_domain(caller, domain)


@router.post("/api/domains/{domain}/enable", tags=ABUSE, summary="Re-enable a disabled domain")
def enable_domain(svc: ServicesDep, caller: CallerDep, domain: str) -> Json:
    return svc.abuse.enable_domain(caller, domain)


@router.post("/api/mailboxes/{mailbox}/disable", tags=ABUSE,
             summary="Disable a mailbox (refuses mail, blocks sending; reads still work)")
def disable_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.abuse.disable_mailbox(caller, mailbox)


@router.post("/api/mailboxes/{mailbox}/enable", tags=ABUSE, summary="Re-enable a disabled mailbox")
def enable_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.abuse.enable_mailbox(caller, mailbox)


@router.post("/api/tokens/{id}/disable", tags=ABUSE, summary="Disable a token (every request answers 403)")
def disable_token(svc: ServicesDep, caller: CallerDep, id: str) -> Json:  # noqa: A002 - SPEC's path name
    return svc.abuse.disable_token(caller, id)


@router.post("/api/tokens/{id}/enable", tags=ABUSE, summary="Re-enable a disabled token")
def enable_token(svc: ServicesDep, caller: CallerDep, id: str) -> Json:  # noqa: A002 - SPEC's path name
    return svc.abuse.enable_token(caller, id)
