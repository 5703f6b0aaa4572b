"""Authentication verdicts for inbound mail: SPF, DKIM, ARC and DMARC over an injected resolver.

The inbound pipeline calls `evaluate(...)` once per message and stores `AuthResults.to_dict()`;
`signals.assess(...)` turns the verdicts plus the From field and body into spam/phishing signals.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from litemx.mailauth.dkim import verify_arc, verify_dkim
from litemx.mailauth.dmarc import check_dmarc, organizational_domain
from litemx.mailauth.dnsport import AuthResolver, DnsTempError
from litemx.mailauth.headers import FromHeader, Mailbox, from_fields, parse_from
from litemx.mailauth.results import (
    ArcResult,
    AuthResults,
    DkimResult,
    DmarcResult,
    SpfResult,
    render_header,
)
from litemx.mailauth.signals import Signal, SignalReport, assess
from litemx.mailauth.spf import check_spf

__all__ = [
    "ArcResult", "AuthResolver", "AuthResults", "DkimResult", "DmarcResult", "DnsTempError",
    "FromHeader", "Mailbox", "Signal", "SignalReport", "SpfResult", "assess", "evaluate", "from_fields",
    "parse_from", "render_header",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")


def evaluate(
    raw: bytes,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    resolver: AuthResolver,
    now: datetime | None = None,
    author: FromHeader | None = None,
) -> AuthResults:
    """SPF, DKIM, ARC and DMARC verdicts for one received message.

    `mail_from` is the SMTP reverse-path without angle brackets ("" for the null sender);
    `now` (default: the current UTC time) is recorded and used for DKIM `x=` expiry;
    `author` is `parse_from(raw)` when the caller already has it (read here otherwise).

    Raises:
        Nothing: malformed input gives permerror/none verdicts with a reason, DNS failures
        temperror; an unexpected internal error is recorded in `errors` (see `_guard`).
    """
    moment = now or datetime.now(timezone.utc)
    errors: list[str] = []
    spf = _guard("spf", errors, _spf_fallback(client_ip, helo, mail_from),
                 lambda: check_spf(resolver, client_ip=client_ip, mail_from=mail_from, helo=helo))
    dkim = _guard("dkim", errors, _DKIM_FALLBACK, lambda: verify_dkim(raw, resolver, now=moment))
    arc = _guard("arc", errors, _ARC_FALLBACK, lambda: verify_arc(raw, resolver))
    sender = author if author is not None else _guard("from", errors, FromHeader((), 0, ""), lambda: parse_from(raw))
    dmarc = _guard("dmarc", errors, _DMARC_FALLBACK,
                   lambda: check_dmarc(sender, spf, dkim, resolver, sample=_sample(raw)))
    return AuthResults(spf, dkim, arc, dmarc, moment, tuple(errors))


# Stand-in verdicts when a stage hits a bug (see _guard).
_DKIM_FALLBACK = (DkimResult("permerror", reason="internal error"),)
_ARC_FALLBACK = ArcResult("fail", 0, "internal error")
_DMARC_FALLBACK = DmarcResult("permerror", reason="internal error")


def warm_up() -> None:
    """Load now what the first verdict would otherwise load while its message waits: the public
    suffix list (~0.1 s to parse). Worker processes call this as they start."""
    organizational_domain("example.com")


def _guard(stage: str, errors: list[str], fallback: T, run: Callable[[], T]) -> T:
    """The one top-level guard: each stage already turns every failure it knows about into
    a verdict, so anything reaching here is a bug in us or a third-party parser. Mail must still
    be stored after SMTP said 250 (SPEC §5), so the stage gets a neutral-safe verdict, the bug is
    logged, and the other stages still run."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - deliberate: see the docstring
        _log.exception("mailauth %s stage failed", stage)
        errors.append(f"{stage}: {type(exc).__name__}")
        return fallback


def _spf_fallback(client_ip: str, helo: str, mail_from: str) -> SpfResult:
    domain = mail_from.rpartition("@")[2].lower() if mail_from else helo.lower()
    scope = "mailfrom" if mail_from else "helo"
    return SpfResult("temperror", domain, scope, client_ip, "internal error")


def _sample(raw: bytes) -> int:
    # RFC 7489 §6.6.4 pct sampling, derived from the message so a retry decides the same way.
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") % 100
