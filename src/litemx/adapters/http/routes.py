"""REST routes of SPEC §3 for the spine. Each handler is one service call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from litemx.adapters.http.deps import CallerDep, ServicesDep
from litemx.adapters.http.models import (
    AliasCreate,
    CatchallUpdate,
    DomainCreate,
    MailboxCreate,
    RetentionUpdate,
    TokenCreate,
)

router = APIRouter()
Limit = Query(None, ge=1, le=200, description="Page size (1-200, default 50).")
Cursor = Query(None, description="Opaque cursor from a previous page's next_cursor.")
Json = dict[str, Any]


@router.get("/api/health", tags=["System"])
def health(svc: ServicesDep) -> Json:
    with svc.infra.db.read() as conn:
        conn.exec_driver_sql("SELECT 1")
    return {"status": "ok"}


@router.get("/api/bootstrap", tags=["System"])
def bootstrap(svc: ServicesDep, caller: CallerDep) -> Json:
    return svc.system.bootstrap(caller)


@router.get("/api/domains", tags=["Domains"])
def list_domains(svc: ServicesDep, caller: CallerDep, limit: int | None = Limit, cursor: str | None = Cursor) -> Json:
    return svc.directory.list_domains(caller, limit, cursor)


@router.post("/api/domains", status_code=201, tags=["Domains"])
def create_domain(svc: ServicesDep, caller: CallerDep, body: DomainCreate) -> Json:
    return svc.directory.create_domain(caller, body.name, body.dmarc_report)


@router.get("/api/mailboxes", tags=["Mailboxes and routing"])
def list_mailboxes(svc: ServicesDep, caller: CallerDep, limit: int | None = Limit,
                   cursor: str | None = Cursor) -> Json:
    return svc.directory.list_mailboxes(caller, limit, cursor)


@router.post("/api/mailboxes", status_code=201, tags=["Mailboxes and routing"])
def create_mailbox(svc: ServicesDep, caller: CallerDep, body: MailboxCreate) -> Json:
    return svc.directory.create_mailbox(caller, body.address, body.display_name)


@router.get("/api/mailboxes/{mailbox}", tags=["Mailboxes and routing"])
def show_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.directory.show_mailbox(caller, mailbox)


@router.delete("/api/mailboxes/{mailbox}", tags=["Mailboxes and routing"])
def delete_mailbox(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.directory.delete_mailbox(caller, mailbox)


@router.get("/api/mailboxes/{mailbox}/retention", tags=["Mailboxes and routing"])
def get_retention(svc: ServicesDep, caller: CallerDep, mailbox: str) -> Json:
    return svc.directory.get_retention(caller, mailbox)


@router.put("/api/mailboxes/{mailbox}/retention", tags=["Mailboxes and routing"])
def set_retention(svc: ServicesDep, caller: CallerDep, mailbox: str, body: RetentionUpdate) -> Json:
    return svc.directory.set_retention(caller, mailbox, body.days)


@router.get("/api/aliases", tags=["Mailboxes and routing"])
def list_aliases(svc: ServicesDep, caller: CallerDep, limit: int | None = Limit, cursor: str | None = Cursor) -> Json:
    return svc.routing.list_aliases(caller, limit, cursor)


@router.post("/api/aliases", status_code=201, tags=["Mailboxes and routing"])
def create_alias(svc: ServicesDep, caller: CallerDep, body: AliasCreate) -> Json:
    return svc.routing.create_alias(caller, body.address, body.targets)


@router.delete("/api/aliases/{alias}", tags=["Mailboxes and routing"])
def delete_alias(svc: ServicesDep, caller: CallerDep, alias: str) -> Json:
    return svc.routing.delete_alias(caller, alias)


@router.get("/api/catchalls/{domain}", tags=["Mailboxes and routing"])
def get_catchall(svc: ServicesDep, caller: CallerDep, domain: str) -> Json:
    return svc.routing.get_catchall(caller, domain)


@router.put("/api/catchalls/{domain}", tags=["Mailboxes and routing"])
def set_catchall(svc: ServicesDep, caller: CallerDep, domain: str, body: CatchallUpdate) -> Json:
    return svc.routing.set_catchall(caller, domain, body.mailbox)


@router.get("/api/tokens", tags=["Tokens, audit, retention, MCP"])
def list_tokens(svc: ServicesDep, caller: CallerDep, limit: int | None = Limit, cursor: str | None = Cursor) -> Json:
    return svc.tokens.list_tokens(caller, limit, cursor)


@router.post("/api/tokens", status_code=201, tags=["Tokens, audit, retention, MCP"])
def create_token(svc: ServicesDep, caller: CallerDep, body: TokenCreate) -> Json:
    return svc.tokens.create_token(caller, body.name, body.scopes, body.mailboxes, body.expires_at)


@router.delete("/api/tokens/{id}", tags=["Tokens, audit, retention, MCP"])
def revoke_token(svc: ServicesDep, caller: CallerDep, id: str) -> Json:  # noqa: A002 - SPEC's path name
    return svc.tokens.revoke_token(caller, id)


@router.get("/api/audit", tags=["Tokens, audit, retention, MCP"])
def list_audit(svc: ServicesDep, caller: CallerDep, mailbox: str | None = None, action: str | None = None,
               resource_type: str | None = None, limit: int | None = Limit, cursor: str | None = Cursor) -> Json:
    return svc.system.list_audit(caller, mailbox, action, resource_type, limit, cursor)
