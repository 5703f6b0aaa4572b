"""Authentication verdicts stored on each inbound message, and their Authentication-Results header.

Result words are RFC 8601 §2.7's (and RFC 7489 §11.2's, RFC 8617 §4.4's for DMARC and ARC), so
the stored JSON and the rendered header say the same thing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import authres
import authres.arc
import authres.dkim_b
import authres.dmarc

SpfWord = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
DkimWord = Literal["pass", "fail", "policy", "neutral", "none", "temperror", "permerror"]
ArcWord = Literal["pass", "fail", "none"]
DmarcWord = Literal["pass", "fail", "none", "temperror", "permerror"]
Policy = Literal["none", "quarantine", "reject"]


@dataclass(frozen=True)
class SpfResult:
    """RFC 7208 §2.6 result for the MAIL FROM identity (the HELO one when MAIL FROM is null)."""

    result: SpfWord
    domain: str
    scope: Literal["mailfrom", "helo"]
    client_ip: str
    explanation: str = ""


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature's verdict (RFC 6376 §6.1), with the tags RFC 8601 §2.7.1 reports."""

    result: DkimWord
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    header_b: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ArcResult:
    """RFC 8617 §5.2 chain validation: the chain's status and how many ARC sets it has."""

    result: ArcWord
    instances: int = 0
    reason: str = ""


@dataclass(frozen=True)
class DmarcResult:
    """RFC 7489 §6.6 verdict; `policy` is the requested one, `disposition` what we apply."""

    result: DmarcWord
    from_domain: str = ""
    org_domain: str = ""
    record_domain: str = ""
    policy: Policy = "none"
    disposition: Policy = "none"
    spf_aligned: bool = False
    dkim_aligned: bool = False
    aspf: Literal["r", "s"] = "r"
    adkim: Literal["r", "s"] = "r"
    pct: int = 100
    reason: str = ""


@dataclass(frozen=True)
class AuthResults:
    """Everything evaluate() found out about one message."""

    spf: SpfResult
    dkim: tuple[DkimResult, ...]
    arc: ArcResult
    dmarc: DmarcResult
    evaluated_at: datetime
    errors: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dkim as a list, evaluated_at as ISO 8601).

        Raises:
            Nothing.
        """
        # What dataclasses.asdict gave, without its deep copies: every field value is immutable.
        return {"spf": _as_dict(self.spf), "dkim": [_as_dict(sig) for sig in self.dkim],
                "arc": _as_dict(self.arc), "dmarc": _as_dict(self.dmarc),
                "evaluated_at": self.evaluated_at.isoformat(), "errors": list(self.errors)}

    def header(self, authserv_id: str) -> str:
        """The `Authentication-Results:` header field (RFC 8601 §2.2), unfolded, no CRLF.

        Raises:
            ValueError: `authserv_id` is not a plain domain-like token.
        """
        return render_header(self, authserv_id)


def _as_dict(result: SpfResult | DkimResult | ArcResult | DmarcResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in _field_names(type(result))}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# RFC 8601 §2.2: property values are `value` or a `dot-atom`; anything else is left out rather
# than quoted, so hostile tag values from a message can never break the header's syntax.
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+$")


def _token(value: str) -> str | None:
    return value if value and _TOKEN.match(value) else None


def _reason(text: str) -> str | None:
    return text[:200] if text else None


def render_header(results: AuthResults, authserv_id: str) -> str:
    """Render `results` as one Authentication-Results header line for `authserv_id`.

    Raises:
        ValueError: `authserv_id` is not a plain domain-like token.
    """
    if _token(authserv_id) is None:
        raise ValueError(f"authserv-id must be a token: {authserv_id!r}")
    clauses = [_spf_clause(results.spf), *(_dkim_clause(sig) for sig in results.dkim)]
    clauses += [_dmarc_clause(results.dmarc), _arc_clause(results.arc)]
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=clauses)
    return str(header)


def _spf_clause(spf: SpfResult) -> authres.core.SPFAuthenticationResult:
    # RFC 8601 §2.7.2: smtp.mailfrom carries the checked domain; smtp.helo for the HELO scope.
    domain = _token(spf.domain)
    return authres.core.SPFAuthenticationResult(
        result=spf.result,
        reason=_reason(spf.explanation) if spf.result != "pass" else None,
        smtp_mailfrom=domain if spf.scope == "mailfrom" else None,
        smtp_helo=domain if spf.scope == "helo" else None,
    )


def _dkim_clause(sig: DkimResult) -> authres.dkim_b.DKIMAuthenticationResult:
    # RFC 8601 §2.7.1 header.d/header.i/header.a/header.s; RFC 6008 §4 header.b (a prefix).
    clause = authres.dkim_b.DKIMAuthenticationResult(
        result=sig.result,
        reason=_reason(sig.reason) if sig.result != "pass" else None,
        header_d=_token(sig.domain),
        header_i=_token(sig.identity),
        header_b=_token(sig.header_b),
    )
    # dkim_b's constructor lacks a= and s=; the inherited properties append them.
    for name, value in (("header_a", sig.algorithm), ("header_s", sig.selector)):
        if _token(value):
            setattr(clause, name, value)
    return clause


def _dmarc_clause(dmarc: DmarcResult) -> authres.dmarc.DMARCAuthenticationResult:
    # RFC 7489 §11.2: header.from is the RFC5322.From domain; policy.dmarc the requested policy.
    # The comment carries the disposition actually applied after pct sampling (§6.6.4).
    found = dmarc.result in ("pass", "fail")  # only then was a policy actually evaluated
    return authres.dmarc.DMARCAuthenticationResult(
        result=dmarc.result,
        result_comment=f"p={dmarc.policy} dis={dmarc.disposition}" if found else None,
        reason=_reason(dmarc.reason) if dmarc.result != "pass" else None,
        header_from=_token(dmarc.from_domain),
        policy=dmarc.policy if found else None,
    )


def _arc_clause(arc: ArcResult) -> authres.arc.ARCAuthenticationResult:
    # RFC 8617 §4.4 / §10.1: arc=pass|fail|none.
    return authres.arc.ARCAuthenticationResult(
        result=arc.result, reason=_reason(arc.reason) if arc.result == "fail" else None
    )
