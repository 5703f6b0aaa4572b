"""Compare a domain's DNS plan with what DNS actually serves (SPEC §4). Pure.

The caller looks the records up (`collect_found` does it through any `ports.Resolver`) and
passes them in as `FoundRecords`; the only other outside data is the optional `txt_lookup`
callable used to follow SPF `include:`/`redirect=` when counting DNS lookups. A lookup that
could not be completed must not be reported as "missing": the resolver's error (DnsError)
propagates to the caller, which answers "could not check" (SPEC §3 `unavailable`).

Each planned record gets `ok | missing | mismatch`, the expected and found values, a `hint` a
person can act on, and `warnings` for things that do not block readiness (a backup MX, an SPF
`+all`, a missing DMARC report address). A conflicting MX (another exchange with an equal or
better preference than ours) is a `mismatch`, because senders would deliver there instead
(RFC 5321 §5.1), so inbound mail is not reliably ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dkim.util import InvalidTagValueList, parse_tag_value

from litemx.core.dnsplan import DnsRecord, normalize_host
from litemx.ports import Resolver

Status = Literal["ok", "missing", "mismatch"]
TxtLookup = Callable[[str], Sequence[str]]

# RFC 7208 §4.6.4: at most 10 terms that cause DNS queries per SPF evaluation.
SPF_LOOKUP_LIMIT = 10
_SPF_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_SPF_VERSION = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)  # RFC 7208 §4.5
# RFC 7489 §6.4: the first tag; ABNF makes "v" case-insensitive and "DMARC1" a case-sensitive %x string.
_DMARC_VERSION = re.compile(r"^[vV]\s*=\s*DMARC1\s*(;|$)")
_DMARC_POLICIES = frozenset({"none", "quarantine", "reject"})  # RFC 7489 §6.3 p=


@dataclass(frozen=True)
class FoundRecords:
    """What DNS served, keyed by normalised host name (see `dnsplan.normalize_host`)."""

    txt: Mapping[str, Sequence[str]] = field(default_factory=dict)
    mx: Mapping[str, Sequence[tuple[int, str]]] = field(default_factory=dict)

    def txt_at(self, host: str) -> tuple[str, ...]:
        return tuple(self.txt.get(normalize_host(host), ()))

    def mx_at(self, host: str) -> tuple[tuple[int, str], ...]:
        return tuple(self.mx.get(normalize_host(host), ()))


@dataclass(frozen=True)
class RecordCheck:
    """One planned record against DNS. `hint` is empty when status is ok."""

    record: DnsRecord
    status: Status
    expected: str
    found: tuple[str, ...]
    hint: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DomainCheck:
    """Every record's check plus the readiness flags SPEC §4 derives from them."""

    checks: tuple[RecordCheck, ...]
    inbound_ready: bool
    outbound_ready: bool


def collect_found(plan: Sequence[DnsRecord], resolver: Resolver) -> FoundRecords:
    """Look up every host/type the plan names through the injected resolver.

    Raises: whatever the resolver raises when a lookup cannot be completed (DnsError).
    """
    txt_hosts = {r.host for r in plan if r.type == "TXT"}
    mx_hosts = {r.host for r in plan if r.type == "MX"}
    return FoundRecords(txt={h: tuple(resolver.txt(h)) for h in sorted(txt_hosts)},
                        mx={h: tuple(resolver.mx(h)) for h in sorted(mx_hosts)})


def check_domain(plan: Sequence[DnsRecord], found: FoundRecords, *,
                 active_selector: str | None = None,
                 txt_lookup: TxtLookup | None = None) -> DomainCheck:
    """Check every record and derive readiness.

    Raises: whatever `txt_lookup` raises when an SPF include cannot be looked up.
    """
    checks = tuple(check_records(plan, found, txt_lookup=txt_lookup))
    return DomainCheck(checks, inbound_ready(checks), outbound_ready(checks, active_selector))


def check_records(plan: Sequence[DnsRecord], found: FoundRecords, *,
                  txt_lookup: TxtLookup | None = None) -> list[RecordCheck]:
    """One RecordCheck per planned record, in plan order.

    Raises: whatever `txt_lookup` raises when an SPF include cannot be looked up.
    """
    return [check_record(r, found, txt_lookup) for r in plan]


def check_record(record: DnsRecord, found: FoundRecords,
                 txt_lookup: TxtLookup | None = None) -> RecordCheck:
    """Dispatch on what the record is: MX, SPF, DKIM or DMARC TXT.

    Raises: whatever `txt_lookup` raises.
    """
    if record.type == "MX":
        return check_mx(record, found.mx_at(record.host))
    txts = found.txt_at(record.host)
    if record.purpose == "dkim":
        return check_dkim(record, txts)
    if record.purpose == "dmarc":
        return check_dmarc(record, txts)
    return check_spf(record, txts, txt_lookup)


def inbound_ready(checks: Iterable[RecordCheck]) -> bool:
    """Mail reaches LiteMX's MX: every inbound (MX) check is ok."""
    inbound = [c for c in checks if c.record.purpose == "inbound"]
    return bool(inbound) and all(c.status == "ok" for c in inbound)


def outbound_ready(checks: Iterable[RecordCheck], active_selector: str | None = None) -> bool:
    """SPF ok, DKIM ok for the active selector (all published ones when not given), DMARC
    present, and the MAIL FROM subdomain's MX and SPF ok."""
    checks = list(checks)
    dkim = [c for c in checks if c.record.purpose == "dkim"
            and (active_selector is None or c.record.selector == normalize_host(active_selector))]
    needed = [c for c in checks if c.record.purpose in ("spf", "dmarc", "mail_from")] + dkim
    purposes = {c.record.purpose for c in needed}
    return {"spf", "dkim", "dmarc", "mail_from"} <= purposes and all(c.status == "ok" for c in needed)


# -- MX (RFC 5321 §5.1) -------------------------------------------------------------------------

def same_host(a: str, b: str) -> bool:
    """Host names compare case-insensitively (RFC 4343 §2), with or without the final dot."""
    return a.strip().rstrip(".").lower() == b.strip().rstrip(".").lower()


def _preference(record: DnsRecord) -> int:
    return record.priority if record.priority is not None else 10


def _mx_text(preference: int, host: str) -> str:
    return f"{preference} {host.rstrip('.') or '.'}"


def check_mx(record: DnsRecord, found: Sequence[tuple[int, str]]) -> RecordCheck:
    """Ours among the exchanges, no rival with an equal or better preference, no null MX."""
    expected = _mx_text(_preference(record), record.value)
    shown = tuple(_mx_text(p, h) for p, h in sorted(found))
    result = _mx_result(record, expected, shown)
    if not found:
        return result("missing", f"add an MX record at {record.host} pointing to {record.value} "
                                 f"(priority {_preference(record)})")
    ours = [p for p, h in found if same_host(h, record.value)]
    if not ours:
        return result("mismatch", f"{record.host}'s MX points to {_names(found)}, not "
                                  f"{record.value}: replace them with {expected}")
    return _mx_rivals(record, found, min(ours), result)


def _mx_result(record: DnsRecord, expected: str, shown: tuple[str, ...]) -> Callable[..., RecordCheck]:
    def result(status: Status, hint: str = "", warnings: tuple[str, ...] = ()) -> RecordCheck:
        return RecordCheck(record, status, expected, shown, hint, warnings)
    return result


def _mx_rivals(record: DnsRecord, found: Sequence[tuple[int, str]], best: int,
               result: Callable[..., RecordCheck]) -> RecordCheck:
    others = [(p, h) for p, h in found if not same_host(h, record.value)]
    if any(h.strip() in (".", "") for _, h in others):
        # RFC 7505 §3: a null MX says the domain accepts no mail and must be the only MX.
        return result("mismatch", f"remove the null MX (\"0 .\") at {record.host}: it tells "
                                  "senders the domain accepts no mail (RFC 7505)")
    rivals = [(p, h) for p, h in others if p <= best]
    backups = tuple(f"{h.rstrip('.')} (preference {p}) is a backup MX: it receives mail when "
                    f"{record.value} is unreachable and must relay it to {record.value}"
                    for p, h in others if p > best)
    if rivals:
        # RFC 5321 §5.1: senders try the lowest preference first and pick randomly among equals.
        return result("mismatch", f"{_names(rivals)} has a preference equal to or better than "
                                  f"{record.value} ({best}), so mail goes there: remove it or "
                                  f"give {record.value} a lower number", backups)
    return result("ok", "", backups)


def _names(pairs: Sequence[tuple[int, str]]) -> str:
    return ", ".join(f"{h.rstrip('.') or '.'} (preference {p})" for p, h in sorted(pairs))


# -- SPF (RFC 7208) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SpfTerm:
    """One SPF term: a mechanism with its qualifier, or a modifier (`name=value`)."""

    qualifier: str
    name: str
    value: str
    modifier: bool

    @property
    def key(self) -> str:
        """Comparable form: lower-case, domain-spec without the final dot."""
        sep = "=" if self.modifier else (":" if self.value and not self.value.startswith("/") else "")
        return f"{self.name}{sep}{self.value.rstrip('.').lower()}"


def is_spf(txt: str) -> bool:
    """An SPF record starts with exactly `v=spf1` then a space or the end (RFC 7208 §4.5)."""
    return bool(_SPF_VERSION.match(txt.strip()))


def parse_spf_terms(record: str) -> list[SpfTerm]:
    """The terms after `v=spf1` (RFC 7208 §4.6.1: separated by spaces; §12 grammar)."""
    return [_parse_term(t) for t in record.split()[1:]]


def _parse_term(text: str) -> SpfTerm:
    modifier = re.match(r"^([a-zA-Z][a-zA-Z0-9_.-]*)=(.*)$", text)
    if modifier:
        return SpfTerm("", modifier.group(1).lower(), modifier.group(2), True)
    qualifier = text[0] if text[:1] in ("+", "-", "~", "?") else ""
    name, sep, value = text[len(qualifier):].partition(":")
    if not sep and "/" in name:  # "a/24", "mx//64": CIDR lengths without a domain (RFC 7208 §5.6)
        name, slash, cidr = name.partition("/")
        value = slash + cidr
    return SpfTerm(qualifier or "+", name.lower(), value, False)


def spf_required_terms(expected: str) -> list[SpfTerm]:
    """Our mechanisms: the expected record's terms other than `all`."""
    return [t for t in parse_spf_terms(expected) if not t.modifier and t.name != "all"]


def check_spf(record: DnsRecord, txts: Sequence[str], txt_lookup: TxtLookup | None = None) -> RecordCheck:
    """Exactly one SPF record, containing our mechanisms as pass terms before `all`, within
    the 10-lookup limit.

    Raises: whatever `txt_lookup` raises.
    """
    spf = [t for t in txts if is_spf(t)]
    result = _txt_result(record, tuple(txts))
    if not spf:
        return result("missing", f"add a TXT record at {record.host}: {record.value}")
    if len(spf) > 1:
        # RFC 7208 §4.5: more than one v=spf1 record is a permerror, so SPF fails for everyone.
        return result("mismatch", f"{len(spf)} SPF records at {record.host} make SPF a permanent "
                                  "error (RFC 7208 §4.5): merge them into one record")
    problems = _spf_problems(record, spf[0], txt_lookup)
    return result("mismatch", "; ".join(problems), _spf_warnings(spf[0])) if problems \
        else result("ok", "", _spf_warnings(spf[0]))


def _txt_result(record: DnsRecord, shown: tuple[str, ...]) -> Callable[..., RecordCheck]:
    def result(status: Status, hint: str = "", warnings: tuple[str, ...] = ()) -> RecordCheck:
        return RecordCheck(record, status, record.value, shown, hint, warnings)
    return result


def _spf_problems(record: DnsRecord, found: str, txt_lookup: TxtLookup | None) -> list[str]:
    terms = parse_spf_terms(found)
    problems = [p for t in spf_required_terms(record.value)
                if (p := _mechanism_problem(t, terms, found, txt_lookup))]
    lookups = count_spf_lookups(found, txt_lookup)
    if lookups > SPF_LOOKUP_LIMIT:
        problems.append(f"the SPF record at {record.host} needs {lookups} DNS lookups, more than "
                        f"the {SPF_LOOKUP_LIMIT} RFC 7208 §4.6.4 allows (a permanent error): "
                        "remove or flatten include: terms")
    return problems


def _mechanism_problem(wanted: SpfTerm, terms: Sequence[SpfTerm], found: str,
                       txt_lookup: TxtLookup | None) -> str:
    """Why `wanted` does not authorise us in the found record, or "" when it does."""
    evaluated = _terms_before_all(terms)  # RFC 7208 §5.1: terms after "all" are never reached
    same = [t for t in terms if not t.modifier and t.key == wanted.key]
    if any(t.qualifier == "+" for t in same if t in evaluated):
        return ""
    if txt_lookup and _included_passes(wanted, evaluated, txt_lookup, set()):
        return ""
    if same and same[0].qualifier != "+":
        return f"change {same[0].qualifier}{wanted.key} to {wanted.key}: only a pass authorises"
    if same:
        return f"move {wanted.key} before {_all_text(terms)}: terms after \"all\" are never " \
               "evaluated (RFC 7208 §5.1)"
    return f"add {wanted.key} {_insert_position(terms)}, e.g. {_suggest(found, terms, wanted)}"


def _terms_before_all(terms: Sequence[SpfTerm]) -> list[SpfTerm]:
    out: list[SpfTerm] = []
    for t in terms:
        if not t.modifier and t.name == "all":
            break
        out.append(t)
    return out


def _all_text(terms: Sequence[SpfTerm]) -> str:
    for t in terms:
        if not t.modifier and t.name == "all":
            return f"{t.qualifier if t.qualifier != '+' else ''}all"
    return "all"


def _insert_position(terms: Sequence[SpfTerm]) -> str:
    """Where a new mechanism must go: before `all` (RFC 7208 §5.1) or before `redirect=`
    (by convention at the end, RFC 7208 §6)."""
    if any(not t.modifier and t.name == "all" for t in terms):
        return f"before {_all_text(terms)}"
    redirect = next((t for t in terms if t.modifier and t.name == "redirect"), None)
    return f"before redirect={redirect.value}" if redirect else "at the end"


def _suggest(found: str, terms: Sequence[SpfTerm], wanted: SpfTerm) -> str:
    """The found record with `wanted` inserted at the right place."""
    words = found.split()
    index = next((i + 1 for i, t in enumerate(terms)
                  if (not t.modifier and t.name == "all") or (t.modifier and t.name == "redirect")),
                 len(words))
    return " ".join(words[:index] + [wanted.key] + words[index:])


def _included_passes(wanted: SpfTerm, terms: Sequence[SpfTerm], txt_lookup: TxtLookup,
                     seen: set[str]) -> bool:
    """Whether an `include:` reached before `all` authorises `wanted` as a pass (RFC 7208 §5.2:
    an include matches when the included record's result is pass)."""
    for t in terms:
        if t.modifier or t.name != "include" or t.qualifier != "+" or _unresolvable(t.value, seen):
            continue
        seen.add(t.value.lower())
        inner = _spf_at(t.value, txt_lookup)
        if inner and _authorises(wanted, inner, txt_lookup, seen):
            return True
    return False


def _authorises(wanted: SpfTerm, record: str, txt_lookup: TxtLookup, seen: set[str]) -> bool:
    """Whether `record` passes `wanted` itself or through a nested include."""
    evaluated = _terms_before_all(parse_spf_terms(record))
    direct = any(not t.modifier and t.key == wanted.key and t.qualifier == "+" for t in evaluated)
    return direct or _included_passes(wanted, evaluated, txt_lookup, seen)


def _spf_at(name: str, txt_lookup: TxtLookup) -> str | None:
    """The single SPF record at name, or None (none or several: RFC 7208 §4.5)."""
    found = [t for t in txt_lookup(name.rstrip(".")) if is_spf(t)]
    return found[0] if len(found) == 1 else None


def _unresolvable(domain: str, seen: set[str]) -> bool:
    """Macros (RFC 7208 §7) depend on the message; loops were already counted; and past the
    RFC 7208 §4.6.4 budget the answer is known, so no further lookups are spent."""
    return "%" in domain or not domain or domain.lower() in seen or len(seen) > SPF_LOOKUP_LIMIT


def count_spf_lookups(record: str, txt_lookup: TxtLookup | None = None) -> int:
    """DNS-querying terms (RFC 7208 §4.6.4: include, a, mx, ptr, exists, redirect), following
    include: and redirect= through `txt_lookup` when given. Stops once over the limit.

    Raises: whatever `txt_lookup` raises.
    """
    return _count(record, txt_lookup, set())


def _count(record: str, txt_lookup: TxtLookup | None, seen: set[str]) -> int:
    terms = parse_spf_terms(record)
    has_all = any(not t.modifier and t.name == "all" for t in terms)
    total = 0
    for t in terms:
        if t.name not in _SPF_LOOKUP_TERMS or (t.modifier and t.name != "redirect"):
            continue
        if t.name == "redirect" and has_all:
            continue  # RFC 7208 §6.1: redirect is ignored when "all" is present
        total += 1 + _count_target(t, txt_lookup, seen)
        if total > SPF_LOOKUP_LIMIT:
            break
    return total


def _count_target(term: SpfTerm, txt_lookup: TxtLookup | None, seen: set[str]) -> int:
    """Lookups inside an include:/redirect= target (RFC 7208 §4.6.4 counts them all)."""
    if txt_lookup is None or term.name not in ("include", "redirect") or _unresolvable(term.value, seen):
        return 0
    seen.add(term.value.lower())
    inner = _spf_at(term.value, txt_lookup)
    return _count(inner, txt_lookup, seen) if inner else 0


def _spf_warnings(record: str) -> tuple[str, ...]:
    terms = parse_spf_terms(record)
    if any(not t.modifier and t.name == "all" and t.qualifier == "+" for t in terms):
        return ("\"+all\" authorises every host on the internet to send as this domain "
                "(RFC 7208 §5.1): use ~all or -all",)
    return ()


# -- DKIM (RFC 6376 §3.6.1) ---------------------------------------------------------------------

def parse_tags(txt: str) -> dict[str, str] | None:
    """A tag=value list (RFC 6376 §3.2, also DMARC's RFC 7489 §6.4), or None when malformed."""
    try:
        tags = parse_tag_value(txt.encode("utf-8"))
    except InvalidTagValueList:
        return None
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in tags.items()}


def normalize_key(p: str) -> str:
    """A base64 key with folding whitespace (RFC 6376 §3.2) and stray quotes removed."""
    return re.sub(r"[\s\"]", "", p)


def check_dkim(record: DnsRecord, txts: Sequence[str]) -> RecordCheck:
    """Exactly one key record at the selector, with our key type and the same `p=`."""
    result = _txt_result(record, tuple(txts))
    if not txts:
        return result("missing", f"add a TXT record at {record.host} with the value shown "
                                 "(providers split values over 255 characters themselves)")
    if len(txts) > 1:
        # RFC 6376 §3.6.2.2: with several key records a verifier may use any one of them.
        return result("mismatch", f"{len(txts)} TXT records at {record.host}: keep only LiteMX's")
    return result(*_dkim_status(record, txts[0]))


def _dkim_status(record: DnsRecord, txt: str) -> tuple[Status, str]:
    tags, wanted = parse_tags(txt), parse_tags(record.value) or {}
    replace = f"replace the TXT value at {record.host} with LiteMX's"
    if tags is None or "p" not in tags:
        return "mismatch", f"not a valid DKIM key record (RFC 6376 §3.6.1): {replace}"
    if normalize_key(tags["p"]) == "":
        return "mismatch", f"the key is revoked (empty p=, RFC 6376 §3.6.1): {replace}"
    if tags.get("k", "rsa").strip().lower() != wanted.get("k", "rsa"):  # k= defaults to rsa
        return "mismatch", f"key type k={tags.get('k', 'rsa')} differs from k={wanted.get('k')}: {replace}"
    if normalize_key(tags["p"]) != normalize_key(wanted.get("p", "")):
        return "mismatch", f"the published key is not LiteMX's key for this selector: {replace}"
    return "ok", ""


# -- DMARC (RFC 7489 §6.6.3) --------------------------------------------------------------------

def is_dmarc(txt: str) -> bool:
    """RFC 7489 §6.6.3 step 4: only records starting with `v=DMARC1` count."""
    return bool(_DMARC_VERSION.match(txt.strip()))


def check_dmarc(record: DnsRecord, txts: Sequence[str]) -> RecordCheck:
    """One DMARC record with a valid policy; any policy is fine (a stricter one is the goal)."""
    dmarc = [t for t in txts if is_dmarc(t)]
    result = _txt_result(record, tuple(txts))
    if not dmarc:
        return result("missing", f"add a TXT record at {record.host}: {record.value}")
    if len(dmarc) > 1:
        # RFC 7489 §6.6.3 step 5: several records means DMARC is not applied at all.
        return result("mismatch", f"{len(dmarc)} DMARC records at {record.host}: keep only one")
    policy = (parse_tags(dmarc[0]) or {}).get("p", "").strip().lower()
    if policy not in _DMARC_POLICIES:
        return result("mismatch", f"the DMARC record at {record.host} needs a policy "
                                  "p=none, p=quarantine or p=reject (RFC 7489 §6.3)")
    return result("ok", "", _dmarc_warnings(record, dmarc[0]))


def _dmarc_warnings(record: DnsRecord, found: str) -> tuple[str, ...]:
    wanted = (parse_tags(record.value) or {}).get("rua")
    have = (parse_tags(found) or {}).get("rua", "")
    if wanted and wanted.lower() not in have.lower():
        return (f"aggregate reports are not sent to {wanted.removeprefix('mailto:')}: "
                f"add rua={wanted} to receive them",)
    return ()
