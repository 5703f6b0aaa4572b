"""The send preflight (SPEC §6): the one gate every send path goes through — REST, CLI and
MCP alike — answering `send_blocked` with EVERY failing reason, not just the first.

It runs inside the transaction that queues the message, and its last step counts the send
against the plan limits atomically (`sending_repo.reserve`): if any reason fails, the
caller's transaction rolls back and the counters with it, so a blocked send costs nothing and
concurrent sends never pass a limit.

Decisions:
- The `email:send` scope is checked HERE, not by the `@operation` scope gate, so a token
  without it hears `send_blocked` / `scope_missing` (with every other failing reason) and the
  attempt is audited as `send.blocked`, like every other refused send.
- A mailbox outside the caller's grants (or not a mailbox of the account) is
  `mailbox_not_granted`; its domain, limits and flags are then not examined, so nothing about
  a mailbox the caller cannot see leaks through the other reasons.
- A domain without an active DKIM key is `domain_not_ready`: mail must leave signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from litemx.core import compose
from litemx.core.mime import Address
from litemx.core.plans import PlanLimits, limits_for
from litemx.core.scopes import Scope
from litemx.errors import SendBlocked
from litemx.service.principal import Caller
from litemx.storage import directory_repo, sending_repo, tokens_repo

REASONS = ("scope_missing", "mailbox_not_granted", "domain_not_ready", "provider_not_approved", "recipient_cap",
           "mailbox_daily_limit", "account_daily_limit", "account_monthly_limit", "recipient_suppressed",
           "disabled", "invalid_headers")


@dataclass(frozen=True)
class SendRequest:
    """A send as the caller asked for it: addresses as given (strings) or as a draft stored them."""

    mailbox: str
    to: Sequence[str | Address]
    cc: Sequence[str | Address] = ()
    bcc: Sequence[str | Address] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    has_signing_key: bool = True


@dataclass(frozen=True)
class Cleared:
    """A send that passed: the rows it sends from and its parsed recipients."""

    mailbox: dict[str, Any]
    domain: dict[str, Any]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients: every distinct address of To, Cc and Bcc."""
        return [a.address for a in compose.distinct([*self.to, *self.cc, *self.bcc])]


@dataclass
class _Findings:
    reasons: set[str] = field(default_factory=set)
    details: dict[str, Any] = field(default_factory=dict)
    invalid_recipients: int = 0  # still count against the recipient cap

    def fail(self, reason: str, **details: Any) -> None:
        self.reasons.add(reason)
        for key, value in details.items():
            self.details.setdefault(key, value)

    def raise_if_any(self) -> None:
        if self.reasons:
            raise SendBlocked([r for r in REASONS if r in self.reasons], self.details)


def preflight(conn: Connection, caller: Caller, request: SendRequest, now: datetime) -> Cleared:
    """Check one send and count it against the plan limits (see module docstring).

    Raises: SendBlocked with every failing reason, in SPEC §6 order.
    """
    found = _Findings()
    if not caller.principal.has_scope(Scope.EMAIL_SEND):
        found.fail("scope_missing", missing_scope=Scope.EMAIL_SEND.value)
    mailbox, domain = _sender(conn, caller, request.mailbox, found)
    if domain is not None:
        _check_domain(domain, request.has_signing_key, found)
    to, cc, bcc = _check_headers(request, found)
    recipients = compose.distinct([*to, *cc, *bcc])
    limits = limits_for(caller.principal.plan)
    _check_cap(len(recipients) + found.invalid_recipients, limits, found)
    _check_disabled(conn, caller, mailbox, domain, found)
    _check_suppressed(conn, caller.principal.account_id, [a.address for a in recipients], found)
    _reserve(conn, caller.principal.account_id, mailbox, limits, now, found)
    found.raise_if_any()
    assert mailbox is not None and domain is not None  # no reasons means both were found
    return Cleared(mailbox, domain, tuple(to), tuple(cc), tuple(bcc))


def _sender(conn: Connection, caller: Caller, address: str, found: _Findings
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The sending mailbox and its domain, when the caller may send as it."""
    try:
        addr = compose.parse_recipient(address).address
    except ValueError:
        found.fail("mailbox_not_granted", mailbox=address)
        return None, None
    box = directory_repo.mailbox_by_address(conn, addr)
    if box is None or box["account_id"] != caller.principal.account_id or not caller.principal.can_see(addr):
        found.fail("mailbox_not_granted", mailbox=addr)
        return None, None
    domain = directory_repo.domain_by_name(conn, addr.rpartition("@")[2])
    return box, domain


def _check_domain(domain: dict[str, Any], has_signing_key: bool, found: _Findings) -> None:
    # SPEC §4: sending needs inbound_ready, outbound_ready and provider_approved.
    missing = [flag for flag in ("inbound_ready", "outbound_ready") if not domain[flag]]
    if not has_signing_key:
        missing.append("dkim_key")
    if missing:
        found.fail("domain_not_ready", not_ready=missing)
    if not domain["provider_approved"]:
        found.fail("provider_not_approved")


def _check_headers(request: SendRequest, found: _Findings) -> tuple[list[Address], list[Address], list[Address]]:
    """Parsed To/Cc/Bcc; CR/LF/NUL anywhere in a header, or an invalid address, is invalid_headers."""
    if compose.has_line_break(request.subject) or len(request.subject) > compose.MAX_SUBJECT:
        found.fail("invalid_headers", field="subject")
    for name, body in (("text", request.text), ("html", request.html)):
        if body is not None and "\0" in body:
            found.fail("invalid_headers", field=name)
    parsed = [_addresses(name, values, found) for name, values in
              (("to", request.to), ("cc", request.cc), ("bcc", request.bcc))]
    if not any(parsed) and not found.invalid_recipients:
        found.fail("invalid_headers", field="to", message="at least one recipient is required")
    return parsed[0], parsed[1], parsed[2]


def _addresses(name: str, values: Sequence[str | Address], found: _Findings) -> list[Address]:
    parsed = []
    for value in values:
        try:
            parsed.append(_recipient(value))
        except ValueError as exc:
            found.fail("invalid_headers", field=name, message=f"{value!r}: {exc}"[:300])
            found.invalid_recipients += 1
    return parsed


def _recipient(value: str | Address) -> Address:
    """Raises: ValueError. A stored draft address is re-validated, keeping its display name."""
    if isinstance(value, Address):
        if compose.has_line_break(value.name):
            raise ValueError("the display name contains a line break or NUL")
        return Address(value.name, compose.parse_recipient(value.address).address)
    return compose.parse_recipient(value)


def _check_cap(count: int, limits: PlanLimits, found: _Findings) -> None:
    if count > limits.recipients_per_message:
        found.fail("recipient_cap", recipients=count, recipient_cap=limits.recipients_per_message)


def _check_disabled(conn: Connection, caller: Caller, mailbox: dict[str, Any] | None,
                    domain: dict[str, Any] | None, found: _Findings) -> None:
    """SPEC §11: a disabled domain, mailbox, token or account stops sending at once."""
    p = caller.principal
    what = [name for name, row in (("domain", domain), ("mailbox", mailbox)) if row and row["disabled_at"]]
    token = tokens_repo.token_in_account(conn, p.account_id, p.token_id) if p.token_id else None
    if token is not None and token["disabled_at"] is not None:
        what.append("token")
    account = tokens_repo.get_account(conn, p.account_id)
    if account is not None and account["disabled_at"] is not None:
        what.append("account")
    if what:
        found.fail("disabled", disabled=what)


def _check_suppressed(conn: Connection, account_id: str, recipients: list[str], found: _Findings) -> None:
    hits = sending_repo.suppressed_among(conn, account_id, recipients)
    if hits:
        found.fail("recipient_suppressed", suppressed=hits)


def periods(now: datetime) -> tuple[str, str]:
    """(day, month) counter periods in UTC: limits reset at 00:00 UTC and on the 1st."""
    return f"d{now:%Y-%m-%d}", f"m{now:%Y-%m}"


def _reserve(conn: Connection, account_id: str, mailbox: dict[str, Any] | None, limits: PlanLimits,
             now: datetime, found: _Findings) -> None:
    """Count the send against every limit; each one that is full is a reason (rolled back)."""
    day, month = periods(now)
    checks = [("account_daily_limit", "account", account_id, day, limits.account_daily),
              ("account_monthly_limit", "account", account_id, month, limits.account_monthly)]
    if mailbox is not None:
        # Mailbox first: every transaction takes the counter rows in one order (no deadlocks).
        checks.insert(0, ("mailbox_daily_limit", "mailbox", mailbox["id"], day, limits.mailbox_daily))
    for reason, scope, key, period, limit in checks:
        if not sending_repo.reserve(conn, scope, key, period, limit):
            found.fail(reason, limits={"mailbox_daily": limits.mailbox_daily,
                                       "account_daily": limits.account_daily,
                                       "account_monthly": limits.account_monthly})
