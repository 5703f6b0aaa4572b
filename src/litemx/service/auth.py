"""Accounts and token authentication."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from litemx.core import tokens as secrets_
from litemx.core.ids import new_id
from litemx.core.plans import PLANS
from litemx.core.scopes import ALL_MAILBOXES, ALL_SCOPES
from litemx.errors import Forbidden, RateLimited, Unauthorized, invalid_field
from litemx.service.auth_limits import FailureLimiter
from litemx.service.base import Infra, ServiceBase, event_row
from litemx.service.principal import Caller, Principal
from litemx.storage import audit_repo, tokens_repo

log = logging.getLogger("litemx.auth")


class AuthService(ServiceBase):
    def __init__(self, infra: Infra):
        super().__init__(infra)
        # Bounds the audit rows and writer time that made-up tokens can cost (service/auth_limits.py).
        self.failures = FailureLimiter(int(infra.settings.auth_failures_per_minute), infra.clock)

    def create_account(self, name: str, plan: str = "free") -> tuple[dict[str, Any], str]:
        """Operator action (server side): a new tenant and its founder admin token, shown once.

        Raises: InvalidRequest for an empty name or unknown plan.
        """
        name = name.strip()
        if not name or len(name) > 200:
            raise invalid_field("name", "an account name of 1 to 200 characters is required")
        if plan not in PLANS:
            raise invalid_field("plan", f"plan must be one of {', '.join(PLANS)}")
        now = self.clock.now()
        account = {"id": new_id("acc"), "name": name, "plan": plan, "created_at": now, "disabled_at": None}
        with self.db.write() as conn:
            tokens_repo.add_account(conn, account)
            token, secret = self._insert_token(conn, account["id"], "founder", True, [], [ALL_MAILBOXES], None, None)
            audit_repo.append(conn, _operator_event(now, account["id"], "account.create", account["id"],
                                                    {"plan": plan, "founder_token": token["id"]}))
        return account, secret

    def _insert_token(self, conn: Any, account_id: str, name: str, is_admin: bool, scopes: list[str],
                      grants: list[str], expires_at: datetime | None, created_by: str | None
                      ) -> tuple[dict[str, Any], str]:
        new = secrets_.generate()
        row = {"id": new_id("tok"), "account_id": account_id, "name": name, "prefix": new.prefix,
               "secret_hash": new.digest, "is_admin": is_admin, "scopes": sorted(scopes), "grants": sorted(grants),
               "created_by": created_by, "created_at": self.clock.now(), "expires_at": expires_at,
               "revoked_at": None, "disabled_at": None, "last_used_at": None}
        tokens_repo.add_token(conn, row)
        return row, new.secret

    def authenticate(self, secret: str | None, interface: str, ip: str | None, user_agent: str | None) -> Caller:
        """Turn a bearer secret into a Caller.

        Raises: Unauthorized (missing, unknown, revoked, expired; audited), Forbidden (disabled),
            RateLimited (one of the former from an address over its failures per minute).
        """
        if not secret:
            self._refuse(None, None, interface, ip, user_agent, "missing token")
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        prefix = secrets_.prefix_of(secret)
        found = None
        if prefix:
            # Read on every request, never cached: a revocation or a disable applies at once.
            with self.db.read() as conn:
                found = tokens_repo.credential(conn, prefix)
        if found is None or not secrets_.matches(secret, found[0]["secret_hash"]):
            self._refuse(None, None, interface, ip, user_agent, "unknown token")
            raise Unauthorized("the token is not valid")
        row, account = found
        caller = Caller(_principal(row, account), interface, ip, user_agent)
        self._check_usable(caller, row, account)
        return caller

    def _check_usable(self, caller: Caller, row: dict[str, Any], account: dict[str, Any]) -> None:
        problem = _unusable_reason(row, self.clock.now())
        if problem:
            self._refuse(caller, row["account_id"], caller.interface, caller.ip, caller.user_agent, problem)
            raise Unauthorized(f"the token is {problem}")
        if row["disabled_at"] is not None or account["disabled_at"] is not None:
            what = "token" if row["disabled_at"] is not None else "account"
            self._audit_auth_failure(caller, row["account_id"], caller.interface, caller.ip, caller.user_agent,
                                     f"{what} disabled")
            raise Forbidden(f"this {what} is disabled", {"reason": "disabled", "disabled": what})

    def _refuse(self, caller: Caller | None, account_id: str | None, interface: str, ip: str | None,
                user_agent: str | None, reason: str) -> None:
        """Audit a failed authentication (the caller then raises Unauthorized), or — from an
        address over its failures per minute — raise RateLimited, audited once per episode."""
        over = self.failures.spend(ip)
        if over is None:
            self._audit_auth_failure(caller, account_id, interface, ip, user_agent, reason)
            return
        if over.first:
            log.warning("failed authentications from %s are over %d a minute: refused for %d s without audit",
                        ip, self.failures.per_minute, over.retry_after)
            self._audit_auth_failure(caller, account_id, interface, ip, user_agent, f"rate limited ({reason})")
        raise RateLimited(f"too many failed authentications from this address; retry in {over.retry_after} s",
                          over.retry_after)

    def _audit_auth_failure(self, caller: Caller | None, account_id: str | None, interface: str,
                            ip: str | None, user_agent: str | None, reason: str) -> None:
        p = caller.principal if caller else None
        # Nothing else is written: the group-committing writer, like every read-only operation.
        self.infra.audit_writer.append(event_row(
            at=self.clock.now(), account_id=account_id, actor_type="token" if p else "anonymous",
            actor_id=p.token_id if p else None, actor_name=p.name if p else None, interface=interface,
            action="auth.denied", outcome="denied", resource_type="token",
            resource_id=p.token_id if p else None, ip=ip, user_agent=user_agent, details={"reason": reason}))


def _unusable_reason(row: dict[str, Any], now: datetime) -> str | None:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return None


def _principal(row: dict[str, Any], account: dict[str, Any]) -> Principal:
    is_admin = bool(row["is_admin"])
    scopes = ALL_SCOPES if is_admin else frozenset(row["scopes"])
    return Principal(account["id"], account["plan"], row["id"], row["name"], is_admin, scopes,
                     frozenset(row["grants"]), "token", row["expires_at"])


def _operator_event(at: datetime, account_id: str, action: str, resource_id: str,
                    details: dict[str, Any]) -> dict[str, Any]:
    return event_row(at=at, account_id=account_id, actor_type="operator", actor_id=None, actor_name="operator",
                     interface="cli", action=action, resource_type="account", resource_id=resource_id,
                     details=details)
