"""Reports mail systems send back, pure and never raising: delivery status notifications
(RFC 3464, inside RFC 6522 `multipart/report`) and abuse feedback reports (ARF, RFC 5965).

`parse_report(raw)` answers a `DeliveryReport`, a `ComplaintReport`, or None for anything else
(an ordinary message, an auto-reply, a malformed report). Only what the bounce processor needs
is extracted: per recipient the action and status, and the original message's Message-ID
from the returned message or headers (RFC 3464 §2; RFC 5965 §2 item (c)).
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses
from typing import Any

from litemx.core.delivery import enhanced_status
from litemx.core.mime import normalise_message_id

MAX_RECIPIENTS = 100
MAX_TEXT = 1000


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN (RFC 3464 §2.3)."""

    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded (RFC 3464 §2.3.3)
    status: str | None  # RFC 3463 code, e.g. 5.1.1
    diagnostic: str | None


@dataclass(frozen=True)
class DeliveryReport:
    recipients: tuple[RecipientStatus, ...]
    original_message_id: str | None
    envelope_id: str | None  # Original-Envelope-Id (RFC 3464 §2.2.1)
    reporting_mta: str | None


@dataclass(frozen=True)
class ComplaintReport:
    feedback_type: str  # abuse | fraud | virus | other | not-spam ... (RFC 5965 §7.3)
    recipients: tuple[str, ...]  # Original-Rcpt-To, else the original message's To
    original_message_id: str | None
    user_agent: str | None


Report = DeliveryReport | ComplaintReport


def parse_report(raw: bytes) -> Report | None:
    """The report a bounce address received, or None when it is not one (see module docstring)."""
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    except (ValueError, TypeError, LookupError):  # the stdlib parser is lenient; be safe anyway
        return None
    if msg.get_content_type() != "multipart/report" or not msg.is_multipart():
        return None
    report_type = str(msg.get_param("report-type") or "").lower()
    parts = [p for p in msg.get_payload() if isinstance(p, Message)]
    if report_type == "delivery-status":
        return _delivery_report(parts)
    if report_type == "feedback-report":
        return _complaint_report(parts)
    return None


# -- RFC 3464 ----------------------------------------------------------------------------------

def _delivery_report(parts: list[Message]) -> DeliveryReport | None:
    blocks = next((_blocks(p) for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    recipients = tuple(r for r in (_recipient(b) for b in per_recipient[:MAX_RECIPIENTS]) if r is not None)
    return DeliveryReport(recipients, _original_message_id(parts), _field(per_message, "original-envelope-id"),
                          _typed(_field(per_message, "reporting-mta")))


def _blocks(part: Message) -> list[Message]:
    """The DSN's field blocks; the stdlib splits message/delivery-status into one Message each."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    text = payload if isinstance(payload, str) else ""
    chunks = [c for c in text.replace("\r\n", "\n").split("\n\n") if c.strip()]
    return [HeaderParser(policy=policy.compat32).parsestr(c) for c in chunks]


def _recipient(block: Message) -> RecipientStatus | None:
    final = _typed(_field(block, "final-recipient")) or _typed(_field(block, "original-recipient"))
    action = (_field(block, "action") or "").lower()
    if not final or not action:
        return None
    diagnostic = _typed(_field(block, "diagnostic-code"))
    status = enhanced_status(_field(block, "status")) or enhanced_status(diagnostic)
    return RecipientStatus(final.strip("<>").lower(), action, status, diagnostic)


def _typed(value: str | None) -> str | None:
    """`rfc822; user@example.net` → `user@example.net` (RFC 3464 §2.1.2 address-type; value)."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    return (rest if sep else kind).strip()[:MAX_TEXT] or None


# -- RFC 5965 ----------------------------------------------------------------------------------

def _complaint_report(parts: list[Message]) -> ComplaintReport | None:
    part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if part is None:
        return None
    fields = _blocks(part)
    block = fields[0] if fields else Message()
    feedback_type = (_field(block, "feedback-type") or "abuse").lower()
    recipients = [r.strip().strip("<>").lower() for r in block.get_all("original-rcpt-to") or []]
    original = _original(parts)
    if not recipients and original is not None:
        recipients = [a.lower() for _, a in _addresses(original.get_all("to") or [])]
    return ComplaintReport(feedback_type, tuple(r for r in recipients if "@" in r)[:MAX_RECIPIENTS],
                           _original_message_id(parts), _field(block, "user-agent"))


def _addresses(values: list[Any]) -> list[tuple[str, str]]:
    return [(n, a) for n, a in getaddresses([str(v) for v in values]) if a]


# -- the returned original ---------------------------------------------------------------------

def _original(parts: list[Message]) -> Message | None:
    """The original message or its headers (RFC 3464 §2 third part; RFC 5965 §2 (c))."""
    for part in parts[1:]:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            return inner if isinstance(inner, Message) else None
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            text = part.get_payload(decode=True) or b""
            return HeaderParser(policy=policy.compat32).parsestr(text.decode("utf-8", "replace"))
    return None


def _original_message_id(parts: list[Message]) -> str | None:
    original = _original(parts)
    return normalise_message_id(str(original.get("message-id") or "")) if original is not None else None


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    return " ".join(str(value).split())[:MAX_TEXT] if value is not None else None
