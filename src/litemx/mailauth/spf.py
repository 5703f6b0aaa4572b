"""SPF (RFC 7208) with pyspf's evaluator and every DNS lookup routed through our resolver.

pyspf offers no per-query DNS hook: `spf.query.dns()` calls the module-global function
`spf.DNSLookup(name, qtype, strict, timeout)`, which by default asks dnspython's global resolver
(ARCHITECTURE.md "Known traps"). We therefore replace that global once, with `_lookup`, a
dispatcher holding no state of its own: it asks the resolver bound to the *current context* in
`_RESOLVER`, a ContextVar that `check_spf` sets for the duration of one check and resets
afterwards. ContextVars are per thread and per asyncio task, so concurrent checks on different
threads or tasks each see their own resolver and never each other's; the global assignment
itself is idempotent (always the same function object). When nothing is bound the dispatcher
fails closed with TempError instead of falling back to dnspython: no lookup may leave the
injected resolver (ARCHITECTURE.md invariant).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import spf as pyspf

from litemx.mailauth.dnsport import TEMP_ERRORS, AuthResolver, normalise_name
from litemx.mailauth.results import SpfResult, SpfWord

Answer = tuple[tuple[str, str], Any]

_RESOLVER: ContextVar[AuthResolver | None] = ContextVar("litemx_spf_resolver", default=None)

# pyspf's own words -> RFC 7208 §2.6; "ambiguous" only occurs in pyspf's harsh mode (strict=2),
# which we never use, and "unknown"/"error" are RFC 4408 draft spellings.
_WORDS: dict[str, SpfWord] = {
    "pass": "pass", "fail": "fail", "softfail": "softfail", "neutral": "neutral",
    "none": "none", "temperror": "temperror", "permerror": "permerror",
    "unknown": "permerror", "error": "temperror", "ambiguous": "permerror",
}


def check_spf(
    resolver: AuthResolver,
    *,
    client_ip: str,
    mail_from: str,
    helo: str,
    receiver: str = "unknown",
    default_explanation: str | None = None,
) -> SpfResult:
    """Evaluate SPF for the SMTP client at `client_ip` sending as `mail_from` after `helo`.

    RFC 7208 §2.4: the MAIL FROM identity is checked; when the reverse-path is null the HELO
    identity is checked instead (as `postmaster@<helo>`). `receiver` feeds the `%{r}` macro;
    `default_explanation` replaces pyspf's when a failing policy has no `exp=` (RFC 7208 §6.2).
    An empty `client_ip` (no SMTP session, e.g. a simulated message) gives `none`.

    Raises:
        Nothing: DNS failures become temperror, malformed policies permerror.
    """
    scope = "mailfrom" if mail_from else "helo"
    domain = _identity_domain(mail_from, helo)
    if not client_ip:
        # No SMTP session to judge (a simulated or provider-delivered message): nothing checked.
        return SpfResult("none", domain, scope, client_ip, "no SMTP client address")
    if not _valid_ip(client_ip):
        return SpfResult("permerror", domain, scope, client_ip, "invalid SMTP client address")
    query = _Query(i=client_ip, s=mail_from, h=helo, receiver=receiver, strict=True)
    if default_explanation is not None:
        query.set_default_explanation(default_explanation)
    word, explanation = _run(query, resolver)
    return SpfResult(word, domain, scope, client_ip, explanation)


class _Query(pyspf.query):  # type: ignore[misc]  # pyspf is untyped
    """pyspf's query with RFC 7208 §5.5's PTR rule, which pyspf leaves to its DNS driver."""

    def validated_ptrs(self) -> list[str]:
        # RFC 7208 §5.5: at most 10 PTR names are checked; a DNS error while looking up one
        # name's addresses skips that name instead of turning the whole check into temperror.
        names: list[str] = self.dns_ptr(self.i)[: pyspf.MAX_PTR]
        return [name for name in names if self._validates(name)]

    def _validates(self, name: str) -> bool:
        try:
            return bool(self.cidrmatch(self.dns_a(name, self.A), self.cidrmax))
        except pyspf.TempError:
            return False


def _run(query: pyspf.query, resolver: AuthResolver) -> tuple[SpfWord, str]:
    _install()
    token = _RESOLVER.set(resolver)
    try:
        result, _code, explanation = query.check()
    finally:
        _RESOLVER.reset(token)
    return _WORDS.get(result, "permerror"), str(explanation)


def _identity_domain(mail_from: str, helo: str) -> str:
    # RFC 7208 §4.3: the domain is the part after the last "@" of the identity.
    if not mail_from:
        return helo.lower()
    return mail_from.rpartition("@")[2].lower() if "@" in mail_from else mail_from.lower()


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _install() -> None:
    # Idempotent: re-installs only if something else replaced the hook since.
    if pyspf.DNSLookup is not _lookup:
        pyspf.DNSLookup = _lookup


def _lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> list[Answer]:
    """pyspf's DNSLookup contract: [((name, qtype), value), ...], TempError when unknown."""
    resolver = _RESOLVER.get()
    if resolver is None:
        raise pyspf.TempError("DNS: no resolver bound to this SPF check")
    fetch = _FETCHERS.get(qtype)
    if fetch is None:
        # RFC 7208 §3.1 / §14.1: type SPF (99) is obsolete; we only ever publish TXT answers.
        return []
    try:
        values = fetch(resolver, normalise_name(name))
    except TEMP_ERRORS as exc:
        # RFC 7208 §5 / §4.4: a DNS error other than "no such name" makes the result temperror.
        raise pyspf.TempError(f"DNS {type(exc).__name__}: {exc}") from exc
    return [((name, qtype), value) for value in values]


def _txt(resolver: AuthResolver, name: str) -> list[tuple[bytes, ...]]:
    # pyspf wants each record as its character-strings in bytes; ours are already joined
    # (RFC 7208 §3.3 joins them anyway). surrogateescape keeps undecodable bytes byte-exact,
    # so RFC 7208 §3.1's 7-bit rule still trips on them.
    return [(text.encode("utf-8", "surrogateescape"),) for text in resolver.txt(name)]


def _mx(resolver: AuthResolver, name: str) -> list[tuple[int, str]]:
    return [(pref, host.rstrip(".")) for pref, host in resolver.mx(name)]


def _ptr(resolver: AuthResolver, name: str) -> list[str]:
    if not hasattr(resolver, "ptr"):
        # A plain ports.Resolver cannot answer PTR: only checks that need it become temperror.
        raise pyspf.TempError("DNS: this resolver cannot answer PTR queries")
    return [host.rstrip(".") for host in resolver.ptr(name)]


_FETCHERS: dict[str, Callable[[AuthResolver, str], list[Any]]] = {
    "TXT": _txt,
    "MX": _mx,
    "A": lambda resolver, name: list(resolver.a(name)),
    "AAAA": lambda resolver, name: list(resolver.aaaa(name)),
    "PTR": _ptr,
}
