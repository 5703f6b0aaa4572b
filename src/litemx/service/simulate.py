"""`POST /api/inbound/simulate`: the SMTP pipeline without SMTP (SPEC §5; admin only).

The same steps as the MX: route each recipient with the routing service, store durably with
`InboundService.accept(..., source="simulate")`, then process the queue row synchronously so
the caller gets the created message ids back. Decisions:

- All or nothing: when any recipient is refused (unknown user, relay, disabled, or a mailbox
  of another account — reported as `relay_denied` so nothing about other tenants leaks),
  nothing is accepted and the 422 lists every refused recipient with its reason.
- Processing is bounded: the request drives `process_due` itself, and when the background
  worker holds the row's lease it waits for it at most `WAIT_SECONDS`; a row that failed and
  was scheduled for retry answers `status: "deferred"` instead of waiting for the retry.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any

from litemx.errors import InvalidRequest, PayloadTooLarge, invalid_field
from litemx.service.principal import Caller
from litemx.service.routing import Route

MAX_RECIPIENTS = 100  # the MX's per-transaction limit (RFC 5321 §4.5.3.1.8)
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.02
STATUS = {"done": "delivered", "failed": "failed", "pending": "deferred"}


def check_request(raw: bytes, recipients: Sequence[str], mail_from: str, client_ip: str | None,
                  helo: str | None, max_bytes: int) -> None:
    """Validate what SMTP would have checked before DATA.

    Raises: PayloadTooLarge (over the SMTP SIZE limit), InvalidRequest naming the field.
    """
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the message is over the {max_bytes}-byte limit", {"limit": max_bytes})
    if not raw:
        raise invalid_field("raw", "the message is empty")
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        raise invalid_field("recipients", f"give 1 to {MAX_RECIPIENTS} recipients")
    if len(mail_from) > 320 or any(c in mail_from for c in "\r\n\0<> "):
        raise invalid_field("mail_from", "mail_from must be an address without brackets, or empty for bounces")
    if helo is not None and (len(helo) > 255 or not helo.isprintable()):
        raise invalid_field("helo", "helo must be one printable line of at most 255 characters")
    _check_ip(client_ip)


def _check_ip(client_ip: str | None) -> None:
    """Raises: InvalidRequest naming `client_ip` unless it is an IPv4 or IPv6 address."""
    if client_ip is None:
        return
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        raise invalid_field("client_ip", "client_ip must be an IPv4 or IPv6 address") from None


def refuse_unroutable(caller: Caller, routes: Sequence[Route]) -> None:
    """Raises: InvalidRequest listing each refused recipient and why (field `recipients`)."""
    refused = [{"recipient": r.recipient, "reason": _reason(caller, r)} for r in routes]
    refused = [r for r in refused if r["reason"] is not None]
    if refused:
        raise InvalidRequest(f"{len(refused)} recipient(s) refused; nothing was accepted",
                             {"field": "recipients", "recipients": refused})


def _reason(caller: Caller, route: Route) -> str | None:
    if route.account_id is not None and route.account_id != caller.principal.account_id:
        return "relay_denied"  # another tenant's domain looks exactly like an unhosted one
    return route.reject


def drain(process_due: Callable[[], int], state_of: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """Process until the queue row is finished or deferred, waiting for another worker's
    lease at most WAIT_SECONDS; returns the row's last known state."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        process_due()
        state = state_of() or {"status": "failed", "last_error": "queue row vanished"}
        if state["status"] != "pending" or state["last_error"] is not None or time.monotonic() > deadline:
            return state
        time.sleep(POLL_SECONDS)  # another worker holds the lease: it finishes the row soon


def result(queue_id: int, state: dict[str, Any], routes: Sequence[Route],
           delivered: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer: queue id, outcome, the created messages and where each recipient went."""
    return {
        "queue_id": queue_id, "status": STATUS.get(state["status"], state["status"]),
        "messages": [{k: m[k] for k in ("id", "mailbox", "thread_id", "status")} for m in delivered],
        "recipients": [{"recipient": r.recipient, "via": r.via, "mailboxes": [b["address"] for b in r.mailboxes]}
                       for r in routes],
    }
