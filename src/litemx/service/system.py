"""Who-am-I (bootstrap) and the audit log reader."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from litemx.core.plans import limits_for
from litemx.service import render
from litemx.service.base import ServiceBase, operation
from litemx.service.principal import Caller
from litemx.storage import audit_repo, tokens_repo
from litemx.storage.pagination import page
from litemx.storage.schema import domains, mailboxes


class SystemService(ServiceBase):
    @operation("system.bootstrap")
    def bootstrap(self, caller: Caller) -> dict[str, Any]:
        p = caller.principal
        with self.db.write() as conn:
            account = tokens_repo.get_account(conn, p.account_id) or {}
            usage = self._usage(conn, caller)
            self.audit(conn, caller, "bootstrap.read", resource_type="account", resource_id=p.account_id)
        limits = limits_for(p.plan)
        return {
            "account": {"id": p.account_id, "name": account.get("name"), "plan": p.plan},
            "token": {"id": p.token_id, "name": p.name, "admin": p.is_admin, "scopes": sorted(p.effective_scopes),
                      "mailboxes": sorted(p.grants), "expires_at": render.iso(p.expires_at)},
            "limits": {"mailbox_daily_sends": limits.mailbox_daily, "account_daily_sends": limits.account_daily,
                       "account_monthly_sends": limits.account_monthly,
                       "recipients_per_message": limits.recipients_per_message},
            "usage": usage,
        }

    def _usage(self, conn: Any, caller: Caller) -> dict[str, Any]:
        p = caller.principal
        boxes = select(func.count()).select_from(mailboxes).where(mailboxes.c.account_id == p.account_id)
        if not p.all_mailboxes:
            boxes = boxes.where(mailboxes.c.address.in_(sorted(p.grants)))
        usage: dict[str, Any] = {"mailboxes": conn.execute(boxes).scalar_one()}
        if p.all_mailboxes:
            doms = select(func.count()).select_from(domains).where(domains.c.account_id == p.account_id)
            usage["domains"] = conn.execute(doms).scalar_one()
        return usage

    @operation("audit.list")
    def list_audit(self, caller: Caller, mailbox: str | None = None, action: str | None = None,
                   resource_type: str | None = None, limit: int | None = None,
                   cursor: str | None = None) -> dict[str, Any]:
        p = caller.principal
        pg = page(limit, cursor)
        f = audit_repo.AuditFilter(
            p.account_id, _lower(mailbox), action, resource_type,
            visible_mailboxes=None if p.all_mailboxes else p.grants, own_token_id=p.token_id)
        with self.db.write() as conn:
            result = audit_repo.list_events(conn, f, pg)
            self.audit(conn, caller, "audit.list", resource_type="audit", mailbox=f.mailbox,
                       details={"count": len(result.items)})
        return {"items": [render.audit_event(r) for r in result.items], "next_cursor": result.next_cursor}


def _lower(value: str | None) -> str | None:
    return value.strip().lower() if value else None
