"""The one DNS resolver every lookup goes through (SPEC §12 `--dns` / `LITEMX_DNS_SERVERS`).

`DnsResolver` implements `litemx.ports.Resolver` on dnspython. When servers are configured,
every query goes only to them (never /etc/resolv.conf); otherwise the system configuration is
used. "Nothing there" (NXDOMAIN, NODATA) answers `[]`; "could not find out" (timeout, SERVFAIL,
unreachable server) raises `DnsError`, so callers never mistake an outage for a missing record.

No cache by default: the domain DNS checks must see a record the moment it is published.
`with_cache()` gives a second resolver over the same servers with a TTL-respecting cache, for
lookups that may be as old as their TTL (the inbound verdicts, two or more per message).

Bridges for the two libraries that do their own lookups:
- dkimpy: pass `dkimpy_dnsfunc(resolver)` as `dnsfunc=` to `dkim.verify` / `DKIM.verify`.
- pyspf: it calls the module global `spf.DNSLookup`; `install_pyspf(resolver)` replaces it with
  `pyspf_dnslookup(resolver)` (process-wide, which matches "every lookup goes through the one
  resolver"). Call it once at start-up, or monkeypatch `spf.DNSLookup` in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dns.exception
import dns.inet
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from litemx.errors import InvalidRequest, Unavailable
from litemx.settings import Settings, split_host_port

DEFAULT_LIFETIME = 3.0
CACHE_SIZE = 10_000  # answers (names x types); a few MB at most
CACHE_MAX_TTL = 300  # seconds: a record changed at its source is seen within this, whatever its TTL

PyspfAnswer = list[tuple[tuple[str, str], Any]]


class DnsError(Unavailable):
    """A lookup could not be completed (timeout, SERVFAIL, no reachable server).

    Distinct from "no such record", which lookups answer with an empty list. An `Unavailable`
    (SPEC §3 `unavailable`, 503) so transports render it without a table entry of their own,
    and mailauth's resolver contract (`mailauth.dnsport.TEMP_ERRORS`) turns it into temperror.
    """

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"DNS lookup {rdtype} {name} failed: {reason}", {"name": name, "type": rdtype})
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


class DnsResolver:
    """`ports.Resolver` on dnspython, bounded in time; uncached unless built with a cache."""

    def __init__(self, servers: Sequence[str] = (), *, lifetime: float = DEFAULT_LIFETIME,
                 timeout: float | None = None, cache: TtlCache | None = None) -> None:
        """servers: "host:port" strings with IP literal hosts; empty means the system resolver.

        lifetime bounds a whole lookup, retries included; timeout bounds one attempt
        (default half the lifetime, so a lost UDP datagram gets one retry). cache: None
        (every lookup asks the servers) or a `TtlCache`.

        Raises: InvalidRequest when a server is not an IP literal host:port;
            DnsError when no servers are given and the system has no resolver configuration.
        """
        self._resolver = _make_resolver(servers)
        self._resolver.lifetime = lifetime
        self._resolver.timeout = timeout if timeout is not None else lifetime / 2
        self._resolver.cache = cache
        self._memo = _Memo(cache.max_size) if cache is not None else None
        self.servers = tuple(servers)

    @classmethod
    def from_settings(cls, settings: Settings, *, lifetime: float = DEFAULT_LIFETIME) -> DnsResolver:
        """The resolver `settings.dns_servers` asks for.

        Raises: InvalidRequest, DnsError (see `__init__`).
        """
        return cls(settings.dns_servers, lifetime=lifetime)

    def with_cache(self, max_size: int = CACHE_SIZE, max_ttl: float = CACHE_MAX_TTL) -> DnsResolver:
        """A resolver over the same servers and time bounds that caches answers (see `TtlCache`).

        Raises: DnsError when this resolver uses the system configuration and it is gone.
        """
        return DnsResolver(self.servers, lifetime=self._resolver.lifetime, timeout=self._resolver.timeout,
                           cache=TtlCache(max_size, max_ttl))

    def __repr__(self) -> str:
        cached = ", cached" if self._resolver.cache is not None else ""
        return f"DnsResolver(servers={self.servers!r}, lifetime={self._resolver.lifetime}{cached})"

    def txt(self, name: str) -> list[str]:
        """TXT records at name, each record's character-strings joined (RFC 7208 §3.3).

        Raises: DnsError when the lookup could not be completed.
        """
        return [b"".join(strings).decode("utf-8", "replace") for strings in self.txt_raw(name)]

    def txt_raw(self, name: str) -> list[list[bytes]]:
        """TXT records at name as published: one list of character-strings per record.

        RFC 1035 §3.3.14 caps each character-string at 255 bytes, so long values arrive split.
        Raises: DnsError when the lookup could not be completed.
        """
        return [list(r.strings) for r in self._query(name, "TXT")]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs sorted by preference, exchanges without the final dot.

        A null MX (RFC 7505 §3) is answered as `(0, ".")`.
        Raises: DnsError when the lookup could not be completed.
        """
        pairs = [(r.preference, _host_text(r.exchange)) for r in self._query(name, "MX")]
        return sorted(pairs)

    def a(self, name: str) -> list[str]:
        """IPv4 addresses at name. Raises: DnsError when the lookup could not be completed."""
        return [r.address for r in self._query(name, "A")]

    def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses at name. Raises: DnsError when the lookup could not be completed."""
        return [r.address for r in self._query(name, "AAAA")]

    def ptr(self, name: str) -> list[str]:
        """PTR targets at name (e.g. `4.3.2.1.in-addr.arpa`), without the final dot.

        Raises: DnsError when the lookup could not be completed.
        """
        return [_host_text(r.target) for r in self._query(name, "PTR")]

    def _query(self, name: str, rdtype: str) -> list[Any]:
        """The answer's rdatas; [] on NXDOMAIN or NODATA. Raises: DnsError."""
        memo = self._memo
        if memo is not None:
            known = memo.recall(name, rdtype)
            if known is not None:
                return known
        try:
            qname = dns.name.from_text(name)
            answer = self._resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            if memo is not None:  # dnspython keeps a name's NXDOMAIN under type ANY
                memo.keep(name, None, self._cached(qname, dns.rdatatype.ANY), [])
            return []
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as exc:  # Timeout, NoNameservers (SERVFAIL), bad name
            raise DnsError(name, rdtype, type(exc).__name__ + ": " + str(exc)) from exc
        except OSError as exc:  # network unreachable and friends
            raise DnsError(name, rdtype, str(exc)) from exc
        rdatas = list(answer.rrset) if answer.rrset is not None else []
        if memo is not None:
            memo.keep(name, rdtype, self._cached(qname, dns.rdatatype.from_text(rdtype)), rdatas)
        return rdatas

    def _cached(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer | None:
        """The answer dnspython's cache holds now for (qname, rdtype), if any."""
        cache = self._resolver.cache
        return cache.get((qname, rdtype, dns.rdataclass.IN)) if cache is not None else None


class TtlCache(dns.resolver.LRUCache):
    """dnspython's bounded LRU answer cache, made stricter where dnspython is lenient.

    dnspython keeps each answer for its TTL, and a negative answer (NXDOMAIN, NODATA) for
    min(SOA TTL, SOA MINIMUM) as RFC 2308 §5 says — but also keeps a negative answer that
    carries no SOA, for 300 s. RFC 2308 §5 says such an answer SHOULD NOT be cached, so this
    cache drops it (the next lookup asks again). Every TTL is also capped at `max_ttl`, so a
    changed record is seen within that time whatever TTL it was published with. Failures
    (SERVFAIL, timeouts) are never cached, by dnspython itself. Thread-safe (dnspython's lock).
    """

    def __init__(self, max_size: int = CACHE_SIZE, max_ttl: float = CACHE_MAX_TTL) -> None:
        super().__init__(max_size)
        self.max_ttl = max_ttl

    def put(self, key: Any, value: dns.resolver.Answer) -> None:
        if value.rrset is None and not _has_negative_ttl(value):
            return
        # dnspython set expiration = now + the answer's TTL; moving it back keeps dnspython's clock.
        value.expiration -= max(value.chaining_result.minimum_ttl - self.max_ttl, 0)
        super().put(key, value)


class _Memo:
    """The answers the cache holds, as `_query` returns them, by the name and type asked for.

    A hit in dnspython's cache still costs a resolution's worth of Python (the name parsed,
    a request object, the cache's lock, and for NXDOMAIN an exception built and raised): most
    of the DNS cost of an inbound message's verdicts, whose lookups are nearly all hits. Here a
    hit is a dict lookup. An entry is made only from what the cache itself holds (so its rules
    above apply unchanged) and expires with it, on dnspython's clock. A name's NXDOMAIN is kept
    under type None and answers every type, as dnspython's entry under ANY does.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.entries: dict[tuple[str, str | None], tuple[float, tuple[Any, ...]]] = {}

    def recall(self, name: str, rdtype: str) -> list[Any] | None:
        now = dns.resolver.time.time()  # looked up at call time: the cache's clock, even when replaced
        for key in ((name, rdtype), (name, None)):
            entry = self.entries.get(key)
            if entry is not None and entry[0] > now:
                return list(entry[1])
        return None

    def keep(self, name: str, rdtype: str | None, cached: dns.resolver.Answer | None, rdatas: list[Any]) -> None:
        if cached is None:
            return  # not kept by the cache (a negative answer without an SOA): ask again next time
        if len(self.entries) >= self.max_size:
            self.entries.clear()  # bounded like the cache; refilled by the next lookups
        self.entries[(name, rdtype)] = (cached.expiration, tuple(rdatas))


def _has_negative_ttl(answer: dns.resolver.Answer) -> bool:
    """Whether a negative answer names its negative TTL: an SOA at or above the name (RFC 2308 §3)."""
    name = answer.canonical_name
    return any(rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name)
               for rrset in answer.response.authority)


def _make_resolver(servers: Sequence[str]) -> dns.resolver.Resolver:
    """A dnspython resolver that asks only `servers`, or the system's when there are none.

    Raises: InvalidRequest, DnsError.
    """
    if not servers:
        try:
            return dns.resolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsError(".", "-", "no system resolver configuration") from exc
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [_nameserver(s) for s in servers]
    return resolver


def _nameserver(server: str) -> dns.nameserver.Nameserver:
    """One "host:port" entry as a dnspython nameserver. Raises: InvalidRequest."""
    host, port = split_host_port(server, "dns_servers")
    # Resolving a server's own name would need DNS (or the system resolver) first: refuse it.
    if not dns.inet.is_address(host):
        raise InvalidRequest(f"dns_servers entries need an IP address, got {server!r}",
                             {"field": "dns_servers"})
    return dns.nameserver.Do53Nameserver(host, port)


def _host_text(name: dns.name.Name) -> str:
    """A domain name as text without the final dot; the root stays "."."""
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True)


def dkimpy_dnsfunc(resolver: DnsResolver) -> Callable[..., bytes | None]:
    """A `dnsfunc` for dkimpy's verify: the first TXT record at name, strings joined, or None.

    RFC 6376 §3.6.2.2 lets a verifier pick any one of several key records. A DnsError becomes
    dkimpy's DnsTimeoutError so the verdict is a temperror (RFC 6376 §6.1.2), not a failure.
    """
    import dkim

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            records = resolver.txt_raw(name.decode("ascii"))
        except DnsError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from exc
        except UnicodeDecodeError:
            return None
        return b"".join(records[0]) if records else None

    return get_txt


def pyspf_dnslookup(resolver: DnsResolver) -> Callable[..., PyspfAnswer]:
    """A replacement for pyspf's module-level `DNSLookup(name, qtype, strict, timeout)`.

    Answers in pyspf's shape: `[((name, qtype), value), ...]`; TXT values stay lists of byte
    strings because pyspf joins them itself (RFC 7208 §3.3). A DnsError becomes pyspf's
    TempError (RFC 7208 §2.6.6).
    """
    import spf

    def lookup(name: str, qtype: str, strict: object = True, timeout: float = 30) -> PyspfAnswer:
        try:
            return [((name, qtype), value) for value in _pyspf_values(resolver, name, qtype)]
        except DnsError as exc:
            raise spf.TempError(f"DNS {exc.reason}") from exc

    return lookup


def _pyspf_values(resolver: DnsResolver, name: str, qtype: str) -> list[Any]:
    """Values of one type in the form pyspf's dnspython driver produces."""
    if qtype in ("TXT", "SPF"):
        return resolver.txt_raw(name) if qtype == "TXT" else []  # type 99 is obsolete (RFC 7208 §14.1)
    getters: dict[str, Callable[[str], list[Any]]] = {
        "A": resolver.a, "AAAA": resolver.aaaa, "MX": resolver.mx, "PTR": resolver.ptr,
    }
    getter = getters.get(qtype)
    return getter(name) if getter else []


def install_pyspf(resolver: DnsResolver) -> None:
    """Route every pyspf lookup in this process through `resolver` (see module docstring)."""
    import spf

    spf.DNSLookup = pyspf_dnslookup(resolver)
