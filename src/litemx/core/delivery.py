"""Outbound delivery, pure: VERP addresses, retry schedule, reply classification, and the
transport interface the provider adapters implement (SMTP relay, direct MX, SES).

- VERP: each delivery's envelope sender is `bounce+<delivery-id>@<mail-from domain>`, so a
  DSN returned to it (RFC 5321 §4.5.5, RFC 3464) names the delivery without parsing the
  bounce body at all.
- Retries: a 4xx reply or a connection failure is transient (RFC 5321 §4.2.1); the next
  attempt waits exponentially longer, capped, and the message is given up after five days
  (RFC 5321 §4.5.4.1: "at least 4-5 days"). A 5xx reply is permanent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol

VERP_LOCAL = "bounce"
# The pseudo mailbox id routing gives a MAIL FROM address (`<anything>@<mail_from domain>`), so the
# inbound processor hands that mail to the bounce processor instead of a mailbox.
BOUNCE_TARGET = "bounce:"
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=4)
GIVE_UP_AFTER = timedelta(days=5)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_VERP = re.compile(rf"^{VERP_LOCAL}\+(dlv_[a-z0-9]{{10,40}})@", re.IGNORECASE)

Result = Literal["delivered", "deferred", "failed"]


def verp_address(delivery_id: str, mail_from_domain: str) -> str:
    """The envelope sender of one delivery (see module docstring)."""
    return f"{VERP_LOCAL}+{delivery_id}@{mail_from_domain}"


def verp_delivery_id(address: str) -> str | None:
    """The delivery id a VERP address carries, or None for any other address."""
    match = _VERP.match(address.strip().strip("<>"))
    return match[1].lower() if match else None


def retry_delay(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 1, 2, 4, ... minutes, at most four hours."""
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_CAP)


def classify(code: int | None) -> Result:
    """An SMTP reply code as a delivery result; None (no reply: connection error) is transient."""
    if code is None or 400 <= code < 500:
        return "deferred"
    return "delivered" if 200 <= code < 300 else "failed"


def enhanced_status(text: str | None) -> str | None:
    """The RFC 3463 status code (class.subject.detail) in a reply or diagnostic text."""
    match = _ENHANCED.search(text or "")
    return f"{match[1]}.{match[2]}.{match[3]}" if match else None


def is_hard_bounce(code: int | None, status: str | None) -> bool:
    """A permanent failure that says the *recipient* is bad, so it belongs on the suppression list.

    RFC 3463 §3.2 (addressing status, X.1.X) and §3.3 X.2.1 (mailbox disabled); without an
    enhanced code, the basic replies 550/551/553 (RFC 5321 §4.2.3). Policy or content refusals
    (X.7.X, X.6.X, X.3.X) are the sender's problem and suppress nothing.
    """
    if status is not None:
        klass, subject, detail = status.split(".")
        return klass == "5" and (subject == "1" or (subject == "2" and detail == "1"))
    return code in (550, 551, 553)


@dataclass(frozen=True)
class OutboundItem:
    """One delivery handed to a transport."""

    delivery_id: str
    envelope_from: str
    recipient: str
    from_address: str  # the header From (SES sends "as" this identity)
    raw: bytes = field(repr=False)

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Outcome:
    """What one attempt at one delivery came to."""

    delivery_id: str
    result: Result
    code: int | None
    reply: str
    transport: str
    host: str | None = None
    provider_id: str | None = None

    @property
    def status(self) -> str | None:
        return enhanced_status(self.reply)


def outcome(item: OutboundItem, code: int | None, reply: str, transport: str, host: str | None = None,
            provider_id: str | None = None) -> Outcome:
    """An Outcome whose result follows from the reply code (see `classify`)."""
    return Outcome(item.delivery_id, classify(code), code, reply[:1000], transport, host, provider_id)


class OutboundTransport(Protocol):
    """A provider adapter: attempts each item once and reports one Outcome per item, in order.

    Implementations never raise for a delivery problem; they report it as an Outcome.
    """

    name: str

    async def deliver(self, items: Sequence[OutboundItem]) -> list[Outcome]: ...
