"""DMARC (RFC 7489) with RFC 9091's `np` for non-existent subdomains, over our resolver.

Input is what SPF and DKIM already found; DMARC adds policy discovery (§6.6.3), identifier
alignment (§3.1) and the policy to apply (§6.3, §6.6.4). Every outcome is a DmarcResult; the
only lookups are TXT at `_dmarc.<domain>` and, for `np`, A/AAAA/MX existence checks.

Not implemented: RFC 9091 §3's fallback to a public suffix's own record (`_dmarc.gov`), which
needs a list of participating PSDs, and DMARCbis's DNS tree walk; reports (rua/ruf) are not sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

from publicsuffixlist import PublicSuffixList

from litemx.mailauth.dnsport import TEMP_ERRORS
from litemx.mailauth.headers import FromHeader
from litemx.mailauth.results import DkimResult, DmarcResult, Policy, SpfResult
from litemx.ports import Resolver

_POLICIES: dict[str, Policy] = {"none": "none", "quarantine": "quarantine", "reject": "reject"}
_STRENGTH: dict[str, int] = {"none": 0, "quarantine": 1, "reject": 2}
# RFC 7489 §6.6.4: messages not sampled by pct get the next less strict policy.
_DOWNGRADE: dict[Policy, Policy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}
# RFC 7489 §6.4: the record starts with the version tag; "DMARC1" itself is case-sensitive.
_VERSION = re.compile(r"^\s*[vV]\s*=\s*DMARC1\s*(;|$)")
_TAG = re.compile(r"^([a-z][a-z0-9_]*)\s*=\s*(.*)$", re.IGNORECASE | re.DOTALL)
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:[^\s!]+(![0-9]+[kmgt]?)?$", re.IGNORECASE)


class DmarcSyntaxError(ValueError):
    """A DMARC record that does not follow RFC 7489 §6.4's tag-list grammar."""


@dataclass(frozen=True)
class DmarcRecord:
    """The tags of one DMARC record that policy evaluation needs (RFC 7489 §6.3)."""

    p: Policy | None
    sp: Policy | None
    np: Policy | None
    adkim: Literal["r", "s"]
    aspf: Literal["r", "s"]
    pct: int
    rua: tuple[str, ...]
    sp_invalid: bool = False


@dataclass(frozen=True)
class _Found:
    record: DmarcRecord
    record_domain: str


def check_dmarc(
    author: FromHeader,
    spf: SpfResult,
    dkim: Sequence[DkimResult],
    resolver: Resolver,
    *,
    sample: int = 0,
) -> DmarcResult:
    """DMARC verdict for the message's author domain(s).

    `sample` (0..99) decides pct sampling (RFC 7489 §6.6.4): the policy applies when
    `sample < pct`. Deriving it from the message makes the decision stable across retries.

    Raises:
        Nothing: DNS failures become temperror, malformed records permerror.
    """
    domains = author.domains
    if not domains:
        # RFC 7489 §6.6.1: without exactly one usable author domain DMARC cannot be applied.
        return DmarcResult("permerror", reason=_no_domain_reason(author))
    verdicts = [_evaluate(domain, spf, dkim, resolver, sample) for domain in domains]
    worst = max(verdicts, key=_severity)
    note = _multiple_from_note(author, domains)
    return replace(worst, reason="; ".join(filter(None, [note, worst.reason])))


def _no_domain_reason(author: FromHeader) -> str:
    if author.fields == 0:
        return "no From header field"
    return f"unable to extract a From domain from {author.text[:80]!r}"


def _multiple_from_note(author: FromHeader, domains: tuple[str, ...]) -> str:
    # RFC 7489 §6.6.1: with several author domains each is checked and the strictest
    # failing policy applies; RFC 5322 §3.6 allows only one From field.
    if len(domains) > 1:
        return "multiple From domains: " + ", ".join(domains)
    return "multiple From fields" if author.fields > 1 else ""


def _severity(verdict: DmarcResult) -> tuple[int, int]:
    rank = {"pass": 0, "none": 1, "permerror": 2, "temperror": 3, "fail": 4}[verdict.result]
    return rank, _STRENGTH[verdict.disposition]


def _evaluate(
    domain: str, spf: SpfResult, dkim: Sequence[DkimResult], resolver: Resolver, sample: int
) -> DmarcResult:
    org = organizational_domain(domain)
    base = DmarcResult("none", from_domain=domain, org_domain=org)
    found = _discover(domain, org, resolver, base)
    if isinstance(found, DmarcResult):
        return found
    return _apply(found, spf, dkim, resolver, sample, base)


def _apply(
    found: _Found,
    spf: SpfResult,
    dkim: Sequence[DkimResult],
    resolver: Resolver,
    sample: int,
    base: DmarcResult,
) -> DmarcResult:
    record = found.record
    spf_ok, dkim_ok = _alignment(base.from_domain, record, spf, dkim)
    verdict = replace(_with_record(base, found), spf_aligned=spf_ok, dkim_aligned=dkim_ok)
    verdict = replace(verdict, policy=_nominal_policy(verdict.from_domain, found))
    if spf_ok or dkim_ok:
        # RFC 7489 §4.2: one aligned, passing identifier is a DMARC pass.
        return replace(verdict, result="pass")
    if _aligned_temperror(verdict.from_domain, record, spf, dkim):
        # RFC 7489 §11.2: temperror means a later attempt might pass; an aligned identifier
        # that could not be checked must not produce a final fail.
        return replace(verdict, result="temperror", reason="aligned identifier had a DNS error")
    policy = _requested_policy(verdict.from_domain, found, resolver)
    if policy is None:
        return replace(verdict, result="temperror", reason="DNS error checking the domain exists")
    return _failed(replace(verdict, policy=policy), record, sample)


def _with_record(base: DmarcResult, found: _Found) -> DmarcResult:
    record = found.record
    return replace(
        base, record_domain=found.record_domain, aspf=record.aspf, adkim=record.adkim, pct=record.pct
    )


def _failed(verdict: DmarcResult, record: DmarcRecord, sample: int) -> DmarcResult:
    # RFC 7489 §6.6.4: the policy applies to pct% of failing messages, the rest get the next
    # less strict one.
    disposition = verdict.policy if sample < record.pct else _DOWNGRADE[verdict.policy]
    reason = "no aligned SPF or DKIM pass"
    return replace(verdict, result="fail", disposition=disposition, reason=reason)


# --- policy discovery (RFC 7489 §6.6.3) -------------------------------------------------------


def _discover(domain: str, org: str, resolver: Resolver, base: DmarcResult) -> _Found | DmarcResult:
    found = _lookup(domain, resolver, base)
    if found is None and org != domain:
        # RFC 7489 §6.6.3 step 4: no record at the author domain -> the organizational domain.
        found = _lookup(org, resolver, base)
    if found is None:
        return replace(base, reason="no DMARC record")
    return found


def _lookup(domain: str, resolver: Resolver, base: DmarcResult) -> _Found | DmarcResult | None:
    try:
        texts = resolver.txt(f"_dmarc.{domain}")
    except TEMP_ERRORS as exc:
        # RFC 7489 §6.6.3 step 4 and §11.2: a transient DNS error is temperror, not "no record".
        return replace(base, result="temperror", reason=f"DNS error for _dmarc.{domain}: {exc}")
    records = [text for text in texts if _VERSION.match(text)]  # §6.6.3 step 2
    if len(records) > 1:
        # RFC 7489 §6.6.3 step 3: several records end discovery without DMARC processing.
        return replace(base, record_domain=domain, reason=f"multiple DMARC records at {domain}")
    return _parsed(records[0], domain, base) if records else None


def _parsed(text: str, domain: str, base: DmarcResult) -> _Found | DmarcResult:
    try:
        record = parse_record(text)
    except DmarcSyntaxError as exc:
        # RFC 7489 §11.2: permerror is "a syntactically incorrect DMARC record".
        return replace(base, result="permerror", record_domain=domain, reason=str(exc))
    if record.p is None or record.sp_invalid:
        return _invalid_policy(record, domain, base)
    return _Found(record, domain)


def _invalid_policy(record: DmarcRecord, domain: str, base: DmarcResult) -> _Found | DmarcResult:
    # RFC 7489 §6.6.3 step 6: without a valid p (or with an invalid sp), a record with a usable
    # rua is treated as p=none; otherwise no DMARC processing is applied.
    if any(_URI.match(uri) for uri in record.rua):
        return _Found(replace(record, p="none", sp=None, sp_invalid=False), domain)
    return replace(base, record_domain=domain, reason=f"DMARC record at {domain} has no valid p=")


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record (RFC 7489 §6.3, §6.4; `np` from RFC 9091 §3.2).

    Raises:
        DmarcSyntaxError: the text is not a `v=DMARC1` tag-value list.
    """
    tags = _tag_list(text)
    if tags.get("v") != "DMARC1":
        raise DmarcSyntaxError(f"not a DMARC1 record: {text[:80]!r}")
    sp = tags.get("sp")
    return DmarcRecord(
        p=_policy(tags.get("p")),
        sp=_policy(sp),
        np=_policy(tags.get("np")),  # RFC 9091 §3.2: an invalid np is as good as absent
        adkim=_mode(tags.get("adkim")),
        aspf=_mode(tags.get("aspf")),
        pct=_pct(tags.get("pct")),
        rua=tuple(uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip()),
        sp_invalid=sp is not None and _policy(sp) is None,
    )


def _tag_list(text: str) -> dict[str, str]:
    # RFC 7489 §6.4: tag = value pairs separated by ";", a trailing ";" allowed; unknown tags
    # are ignored (§6.3) but a part that is not tag=value breaks the grammar.
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        match = _TAG.match(part.strip())
        if match is None:
            raise DmarcSyntaxError(f"missing tag or value: {text[:80]!r}")
        tags.setdefault(match.group(1).lower(), match.group(2).strip())
    return tags


def _policy(value: str | None) -> Policy | None:
    return _POLICIES.get(value.lower()) if value is not None else None


def _mode(value: str | None) -> Literal["r", "s"]:
    # RFC 7489 §6.3: adkim/aspf default to "r"; an unknown value is treated as the default.
    return "s" if value is not None and value.lower() == "s" else "r"


def _pct(value: str | None) -> int:
    # RFC 7489 §6.3: pct is an integer 0..100, default 100.
    if value is None or not value.isdigit():
        return 100
    return min(int(value), 100)


# --- alignment (RFC 7489 §3.1) ------------------------------------------------------------------


def _alignment(
    domain: str, record: DmarcRecord, spf: SpfResult, dkim: Sequence[DkimResult]
) -> tuple[bool, bool]:
    # RFC 7489 §3.1.2: SPF aligns through the domain it authenticated (MAIL FROM, or HELO
    # when the reverse-path was null, RFC 7208 §2.4).
    spf_ok = spf.result == "pass" and aligned(spf.domain, domain, record.aspf)
    # RFC 7489 §3.1.1: DKIM aligns through the d= of any passing signature.
    dkim_ok = any(sig.result == "pass" and aligned(sig.domain, domain, record.adkim) for sig in dkim)
    return spf_ok, dkim_ok


def _aligned_temperror(
    domain: str, record: DmarcRecord, spf: SpfResult, dkim: Sequence[DkimResult]
) -> bool:
    spf_temp = spf.result == "temperror" and aligned(spf.domain, domain, record.aspf)
    return spf_temp or any(
        sig.result == "temperror" and aligned(sig.domain, domain, record.adkim) for sig in dkim
    )


def aligned(identifier: str, author: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict needs the same domain, relaxed the same organizational domain.

    Raises:
        Nothing.
    """
    left, right = identifier.lower().rstrip("."), author.lower().rstrip(".")
    if not left or not right:
        return False
    if mode == "s":
        return left == right
    return organizational_domain(left) == organizational_domain(right)


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a bare public suffix is its own.

    Raises:
        Nothing.
    """
    name = domain.lower().rstrip(".")
    return _public_suffixes().privatesuffix(name) or name


# --- which policy applies (RFC 7489 §6.3, RFC 9091 §3.2) ---------------------------------------


def _nominal_policy(domain: str, found: _Found) -> Policy:
    """p for the domain the record was found at, else sp (or p) for its subdomains (§6.3)."""
    record = found.record
    if found.record_domain == domain:
        return record.p or "none"
    return record.sp or record.p or "none"


def _requested_policy(domain: str, found: _Found, resolver: Resolver) -> Policy | None:
    """The policy for a failing message: RFC 9091 §3.2's np replaces sp for a non-existent
    subdomain. None when the existence check hit a DNS error."""
    nominal = _nominal_policy(domain, found)
    np = found.record.np
    if found.record_domain == domain or np is None or np == nominal:
        return nominal
    exists = _domain_exists(domain, resolver)
    if exists is None:
        return None
    return nominal if exists else np


def _domain_exists(domain: str, resolver: Resolver) -> bool | None:
    # RFC 9091 §2.4: a domain is non-existent when A, AAAA and MX all answer NXDOMAIN/NODATA.
    try:
        return bool(resolver.a(domain) or resolver.aaaa(domain) or resolver.mx(domain))
    except TEMP_ERRORS:
        return None
