"""DKIM (RFC 6376, RSA and RFC 8463 Ed25519) and ARC (RFC 8617) verification over our resolver.

dkimpy does the cryptography and canonicalisation; it takes a per-call `dnsfunc`, so no global
state is touched. dkimpy folds every problem into `False`, so `_KeyFetcher` remembers what the
key lookup saw and we re-derive the RFC 8601 §2.7.1 result word from it:
pass, fail (signature or body hash mismatch, expired), policy (RFC 8301 algorithm or key-size
rules), permerror (no key, bad key, malformed signature), temperror (DNS unavailable).
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from datetime import datetime

import dkim as dkimpy
from dkim.util import InvalidTagValueList, parse_tag_value

from litemx.mailauth.dnsport import TEMP_ERRORS, normalise_name
from litemx.mailauth.results import ArcResult, ArcWord, DkimResult, DkimWord
from litemx.ports import Resolver

# dkimpy's parsers leak these on some malformed inputs (e.g. an IndexError while locating an
# ARC-Message-Signature); they mean "malformed", never "try again".
_MALFORMED = (dkimpy.DKIMException, InvalidTagValueList, ValueError, LookupError, TypeError)

_MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers MUST NOT accept RSA keys under 1024 bits
# RFC 6376 §6.1: verifiers MAY limit how many signatures they try (each costs a DNS query).
_MAX_SIGNATURES = 10
_MAX_ARC_SETS = 50  # RFC 8617 §4.2.1: i= ranges 1..50


class _KeyFetcher:
    """dkimpy's `dnsfunc(name, timeout=...)` over our resolver, remembering what it saw."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.temp_error = ""
        self.record: bytes | None = None

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        try:
            qname = normalise_name(name)
        except UnicodeDecodeError:
            return None  # a non-ASCII d=/s= cannot name a DNS key record
        try:
            records = self.resolver.txt(qname)
        except TEMP_ERRORS as exc:
            self.temp_error = f"key lookup for {qname} failed: {type(exc).__name__}"
            raise dkimpy.DnsTimeoutError(self.temp_error) from exc
        # RFC 6376 §3.6.2.2: one key record per selector; with several, results are undefined,
        # and we take the first as dkimpy's own resolver does.
        self.record = records[0].encode("utf-8", "surrogateescape") if records else None
        return self.record


def verify_dkim(raw: bytes, resolver: Resolver, *, now: datetime) -> tuple[DkimResult, ...]:
    """One result per DKIM-Signature header field, top to bottom, at most 10 (RFC 6376 §6.1).

    `now` enforces `x=` (RFC 6376 §3.5) in addition to dkimpy's own wall-clock check.

    Raises:
        Nothing: malformed messages and signatures become permerror results.
    """
    names = _header_names(raw)
    if names is not None and b"dkim-signature" not in names:
        return ()  # what the count below finds too, without dkimpy reading the whole message
    try:
        count = len(_signature_headers(dkimpy.DKIM(raw)))
    except _MALFORMED as exc:
        # RFC 6376 §6.1: a header block we cannot parse cannot be verified at all.
        if b"dkim-signature" in raw.lower():
            return (DkimResult("permerror", reason=f"unparseable message: {exc}"),)
        return ()
    return tuple(_verify_one(raw, idx, resolver, now) for idx in range(min(count, _MAX_SIGNATURES)))


# Where dkimpy's header block ends: at the first empty line (its lines are split on CRLF or LF).
_HEADER_END = re.compile(rb"(?:\A|\n)\r?\n")


def _header_names(raw: bytes) -> frozenset[bytes] | None:
    """Lower-cased names of the header fields exactly as dkimpy reads them; None when dkimpy
    cannot read the header block (the callers then take their full path, which says why).

    Parses the header block only: dkimpy's parser goes line by line and stops at the first
    empty line, so those lines give the same fields (or the same error) as the whole message.
    """
    end = _HEADER_END.search(raw)
    block = raw if end is None else raw[:end.end()]
    # DKIM and then ARC ask about the same message: the last few (small) blocks' names are kept.
    return _remembered_names(block) if len(block) <= _REMEMBERED_BLOCK_BYTES else _block_names(block)


_REMEMBERED_BLOCK_BYTES = 64 * 1024


def _block_names(block: bytes) -> frozenset[bytes] | None:
    try:
        headers, _body = dkimpy.rfc822_parse(block)
    except _MALFORMED:
        return None
    return frozenset(name.lower() for name, _value in headers)


_remembered_names = functools.lru_cache(maxsize=16)(_block_names)


def _signature_headers(message: dkimpy.DKIM) -> list[bytes]:
    return [value for name, value in message.headers if name.lower() == b"dkim-signature"]


def _verify_one(raw: bytes, idx: int, resolver: Resolver, now: datetime) -> DkimResult:
    message = dkimpy.DKIM(raw, minkey=0)  # key size is judged below, as policy (RFC 8301)
    base = _describe(_signature_headers(message)[idx])
    fetch = _KeyFetcher(resolver)
    try:
        verified = message.verify(idx=idx, dnsfunc=fetch)
    except dkimpy.ValidationError as exc:
        # dkimpy appends both digests to a body hash mismatch; the words are what matter.
        reason = str(exc).split(" (got ", 1)[0]
        return replace(base, result=_validation_word(reason), reason=reason)
    except _MALFORMED as exc:
        return replace(base, result="permerror", reason=f"malformed signature: {exc}")
    if fetch.temp_error:
        return replace(base, result="temperror", reason=fetch.temp_error)
    if not verified:
        return _unverified(base, fetch)
    return _judge_valid(base, message, now)


def _validation_word(text: str) -> DkimWord:
    # RFC 6376 §6.1.3: a body hash mismatch is a failed signature; dkimpy's other
    # ValidationErrors are tag syntax problems (§3.5), hence permerror.
    if text.startswith("body hash mismatch") or text.startswith("x= value is past"):
        return "fail"
    return "permerror"


def _unverified(base: DkimResult, fetch: _KeyFetcher) -> DkimResult:
    if fetch.record is None:
        # RFC 6376 §6.1.2: no key record -> PERMFAIL (no key for signature).
        return replace(base, result="permerror", reason="no key for signature")
    try:
        dkimpy.evaluate_pk(b"", fetch.record)
    except _MALFORMED as exc:
        # RFC 6376 §6.1.2: an unparseable or unsuitable key record -> PERMFAIL.
        return replace(base, result="permerror", reason=f"key record unusable: {exc}")
    return replace(base, result="fail", reason="signature did not verify")


def _judge_valid(base: DkimResult, message: dkimpy.DKIM, now: datetime) -> DkimResult:
    if base.algorithm == "rsa-sha1":
        # RFC 8301 §3.1: rsa-sha1 MUST NOT be used for verifying.
        return replace(base, result="policy", reason="rsa-sha1 is not accepted (RFC 8301)")
    if message.ktag == b"rsa" and message.keysize < _MIN_RSA_BITS:
        return replace(base, result="policy", reason=f"RSA key of {message.keysize} bits")
    expiry = _expiry(message.signature_fields)
    if expiry is not None and expiry < now.timestamp():
        return replace(base, result="fail", reason="signature expired (x=)")  # RFC 6376 §3.5
    return replace(base, result="pass")


def _expiry(fields: dict[bytes, bytes]) -> int | None:
    value = fields.get(b"x", b"")
    return int(value) if value.isdigit() else None


def _describe(header_value: bytes) -> DkimResult:
    """The reportable tags of one signature; empty when the tag list itself is malformed."""
    try:
        tags = parse_tag_value(header_value)
    except InvalidTagValueList:
        return DkimResult("permerror")
    return DkimResult(
        "permerror",
        domain=_tag(tags, b"d").lower(),
        selector=_tag(tags, b"s"),
        algorithm=_tag(tags, b"a").lower(),
        identity=_tag(tags, b"i"),
        header_b=_tag(tags, b"b")[:8],  # RFC 6008 §4: header.b is a prefix of b=
    )


def _tag(tags: dict[bytes, bytes], name: bytes) -> str:
    return re.sub(r"\s+", "", tags.get(name, b"").decode("ascii", "replace"))


def verify_arc(raw: bytes, resolver: Resolver) -> ArcResult:
    """Validate the ARC chain (RFC 8617 §5.2) and report pass, fail or none.

    Raises:
        Nothing: a malformed chain is `fail` (RFC 8617 §5.2 step 2), DNS trouble too.
    """
    names = _header_names(raw)
    if names is not None and names.isdisjoint(dkimpy.ARC.ARC_HEADERS):
        return ArcResult("none", 0, "no ARC sets")  # RFC 8617 §5.2 step 1, as found below
    try:
        instances, _headers = dkimpy.ARC(raw).sorted_arc_headers()
    except _MALFORMED as exc:
        # Unreadable headers: a chain we cannot read is broken (§5.2), no chain is none.
        word: ArcWord = "fail" if b"arc-seal" in raw.lower() else "none"
        return ArcResult(word, 0, f"unparseable message: {exc}")
    if instances == 0:
        return ArcResult("none", 0, "no ARC sets")  # RFC 8617 §5.2 step 1
    if instances > _MAX_ARC_SETS:
        return ArcResult("fail", instances, f"more than {_MAX_ARC_SETS} ARC sets")
    fetch = _KeyFetcher(resolver)
    try:
        status, _sets, reason = dkimpy.arc_verify(raw, dnsfunc=fetch)
    except _MALFORMED as exc:
        return ArcResult("fail", instances, f"malformed ARC set: {exc}")
    return _arc_verdict(status, instances, fetch.temp_error or str(reason))


def _arc_verdict(status: bytes | None, instances: int, reason: str) -> ArcResult:
    # RFC 8617 §5.2: anything but a fully validated chain is fail; a set already marked
    # cv=fail (dkimpy answers None) ends the chain as fail too.
    if status == dkimpy.CV_Pass:
        return ArcResult("pass", instances, "")
    if status == dkimpy.CV_None:
        return ArcResult("none", instances, reason)
    return ArcResult("fail", instances, reason)
