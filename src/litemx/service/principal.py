"""Who is calling, and through which door."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from litemx.core.scopes import ALL_MAILBOXES, ALL_SCOPES

INTERFACES = ("api", "cli", "mcp", "smtp", "system")


@dataclass(frozen=True)
class Principal:
    """An authenticated actor inside one account."""

    account_id: str
    plan: str
    token_id: str | None
    name: str
    is_admin: bool
    scopes: frozenset[str]
    grants: frozenset[str]
    kind: str = "token"  # token | system
    expires_at: datetime | None = None

    def has_scope(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    @property
    def all_mailboxes(self) -> bool:
        return self.is_admin or ALL_MAILBOXES in self.grants

    def can_see(self, address: str) -> bool:
        return self.all_mailboxes or address in self.grants

    @property
    def effective_scopes(self) -> frozenset[str]:
        return ALL_SCOPES if self.is_admin else self.scopes


@dataclass(frozen=True)
class Caller:
    """A principal plus the request facts the audit log records."""

    principal: Principal
    interface: str = "api"
    ip: str | None = None
    user_agent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def system_caller(account_id: str, plan: str = "free", interface: str = "system") -> Caller:
    """The actor for SMTP delivery and scheduled jobs: full rights inside one account."""
    principal = Principal(account_id, plan, None, "system", True, ALL_SCOPES, frozenset({ALL_MAILBOXES}), "system")
    return Caller(principal, interface)
