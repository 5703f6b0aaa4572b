"""Scoped tokens (SPEC §2): create (shown once), list (never the secret), revoke.

A token can only hand out what it holds: new scopes must be a subset of the creator's and new
mailbox grants must be inside the creator's grants, so tokens:write cannot escalate.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from litemx.core.scopes import ALL_MAILBOXES, parse_scopes
from litemx.errors import Forbidden, invalid_field
from litemx.service import render
from litemx.service.auth import AuthService
from litemx.service.base import ServiceBase, not_found, operation
from litemx.service.directory import address_field
from litemx.service.principal import Caller
from litemx.storage import directory_repo, tokens_repo
from litemx.storage.pagination import page

MAX_GRANTS = 500


class TokenService(ServiceBase):
    def __init__(self, infra: Any, auth: AuthService):
        super().__init__(infra)
        self.auth = auth

    @operation("tokens.create")
    def create_token(self, caller: Caller, name: str, scopes: list[str], mailboxes: list[str],
                     expires_at: datetime | None = None) -> dict[str, Any]:
        """Returns the token's public view plus `token`, the secret, shown this once.

        Raises: InvalidRequest (name, unknown scope, bad grant, past expiry), Forbidden (escalation).
        """
        name = _token_name(name)
        wanted = _scopes(scopes)
        self._check_expiry(expires_at)
        _no_escalation(caller, wanted)
        with self.db.write() as conn:
            grants = self._grants(conn, caller, mailboxes)
            row, secret = self.auth._insert_token(conn, caller.principal.account_id, name, False, sorted(wanted),
                                                  grants, expires_at, caller.principal.token_id)
            self.audit(conn, caller, "token.create", resource_type="token", resource_id=row["id"],
                       details={"name": name, "scopes": sorted(wanted), "mailboxes": grants})
        return {**render.token(row), "token": secret}

    def _check_expiry(self, expires_at: datetime | None) -> None:
        if expires_at is None:
            return
        if expires_at.tzinfo is None:
            raise invalid_field("expires_at", "expires_at needs a timezone (e.g. 2027-01-01T00:00:00Z)")
        try:
            expires_at.astimezone(timezone.utc)
        except OverflowError:
            raise invalid_field("expires_at", "expires_at is out of range") from None
        if expires_at <= self.clock.now():
            raise invalid_field("expires_at", "expires_at must be in the future")

    def _grants(self, conn: Any, caller: Caller, mailboxes: list[str]) -> list[str]:
        if not mailboxes or len(mailboxes) > MAX_GRANTS:
            raise invalid_field("mailboxes", f"give 1 to {MAX_GRANTS} mailbox addresses, or ['*'] for all")
        if ALL_MAILBOXES in mailboxes:
            if len(mailboxes) > 1:
                raise invalid_field("mailboxes", "'*' already means every mailbox; list nothing else with it")
            if not caller.principal.all_mailboxes:
                raise Forbidden("a token cannot grant more mailboxes than it has", {"missing_grant": "*"})
            return [ALL_MAILBOXES]
        return sorted({self._grant(conn, caller, m) for m in mailboxes})

    def _grant(self, conn: Any, caller: Caller, value: str) -> str:
        address = address_field(value, "mailboxes").address
        box = directory_repo.mailbox_by_address(conn, address)
        if box is None or box["account_id"] != caller.principal.account_id or not caller.principal.can_see(address):
            raise invalid_field("mailboxes", f"{address} is not a mailbox of this account")
        return address

    @operation("tokens.list")
    def list_tokens(self, caller: Caller, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        p = page(limit, cursor, str)
        with self.db.read() as conn:
            result = tokens_repo.list_tokens(conn, caller.principal.account_id, p)
        self.audit_read(caller, "token.list", resource_type="token", details={"count": len(result.items)})
        # A page may come back short for a scoped token: it sees only tokens within its own rights.
        items = [render.token(r) for r in result.items if _covers(caller, r)]
        return {"items": items, "next_cursor": result.next_cursor}

    @operation("tokens.revoke")
    def revoke_token(self, caller: Caller, token_id: str) -> dict[str, Any]:
        with self.db.write() as conn:
            row = tokens_repo.token_in_account(conn, caller.principal.account_id, token_id)
            if row is None:
                raise not_found("token", token_id)
            if not _covers(caller, row):
                raise Forbidden("a token can only revoke tokens whose rights it holds", {"missing_grant": "*"})
            now = self.clock.now()
            tokens_repo.revoke_token(conn, row["id"], now)
            self.audit(conn, caller, "token.revoke", resource_type="token", resource_id=row["id"],
                       details={"name": row["name"], "already_revoked": row["revoked_at"] is not None})
            row["revoked_at"] = row["revoked_at"] or now
        return render.token(row)


def _token_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200 or any(c in name for c in "\r\n\0"):
        raise invalid_field("name", "a token name of 1 to 200 characters on one line is required")
    return name


def _scopes(values: list[str]) -> frozenset[str]:
    if not values:
        raise invalid_field("scopes", "at least one scope is required")
    try:
        return parse_scopes(values)
    except ValueError as exc:
        raise invalid_field("scopes", str(exc)) from None


def _no_escalation(caller: Caller, wanted: frozenset[str]) -> None:
    missing = sorted(wanted - caller.principal.effective_scopes)
    if missing:
        raise Forbidden(f"a token cannot grant the {missing[0]} scope it does not hold", {"missing_scope": missing[0]})


def _covers(caller: Caller, row: dict[str, Any]) -> bool:
    """Whether the caller holds every right of the token it wants to revoke."""
    p = caller.principal
    if p.is_admin:
        return True
    if row["is_admin"]:
        return False
    return set(row["scopes"]) <= p.scopes and all(p.can_see(g) for g in row["grants"] if g != ALL_MAILBOXES) and (
        ALL_MAILBOXES not in row["grants"] or p.all_mailboxes)
