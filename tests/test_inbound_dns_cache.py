"""The inbound verdicts' DNS cache: answers are reused for their TTL (capped), negative answers
only when they carry an SOA (RFC 2308 §5), failures never; the domain checks and outbound
delivery keep asking the servers every time, so a published record is seen at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dns.resolver as dnspython_resolver
import pytest
from dnslib import QTYPE, RCODE, RR, SOA, DNSRecord

from litemx.adapters.dns_resolver import DnsError, DnsResolver
from tests.support.api import Api
from tests.support.dns_server import LoopbackDnsServer, _ZoneResolver
from tests.support.inbox import Mail, deliver, hosted, message_row

ZONE = "cached.example"
SOA_TTL, SOA_MINIMUM = 3600, 120  # the negative TTL is the smaller of the two (RFC 2308 §5)
RECORD_TTL = 60  # what tests.support.dns_server publishes every record with


class _ZonesWithSoa(_ZoneResolver):
    """Negative answers under ZONE carry its SOA in the authority section, as a real
    authoritative server sends them (RFC 2308 §3); answers elsewhere stay SOA-less."""

    def _answer(self, reply: DNSRecord, name: str, qtype: str) -> None:
        super()._answer(reply, name, qtype)
        negative = not reply.rr and reply.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN)
        if negative and (name == ZONE or name.endswith("." + ZONE)):
            reply.add_auth(RR(ZONE + ".", QTYPE.SOA, ttl=SOA_TTL, rdata=SOA(
                "ns." + ZONE, "hostmaster." + ZONE, (1, 3600, 600, 86400, SOA_MINIMUM))))


@pytest.fixture
def server() -> Iterator[LoopbackDnsServer]:
    zones = LoopbackDnsServer()
    zones._resolver = _ZonesWithSoa()
    with zones:
        yield zones


class _Clock:
    """dnspython's clock (dns.resolver reads time.time() for cache expiry), moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def dns_clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(dnspython_resolver, "time", fake)
    return fake


def asked(server: LoopbackDnsServer, name: str, rtype: str | None = None) -> int:
    """How many queries for name (of one type, or any) reached the server."""
    return sum(1 for n, t, _proto in server.queries if n == name and rtype in (None, t))


def test_a_second_lookup_within_the_ttl_does_not_reach_the_server(server, dns_clock):
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,)).with_cache()

    assert resolver.txt(ZONE) == ["v=spf1 -all"]
    dns_clock.advance(RECORD_TTL - 1)
    assert resolver.txt(ZONE) == ["v=spf1 -all"]

    assert asked(server, ZONE, "TXT") == 1


def test_a_record_changed_at_its_source_is_seen_once_its_ttl_has_passed(server, dns_clock):
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,)).with_cache()
    assert resolver.txt(ZONE) == ["v=spf1 -all"]

    server.set(ZONE, [("TXT", "v=spf1 ip4:192.0.2.1 -all")])
    assert resolver.txt(ZONE) == ["v=spf1 -all"]  # still within the TTL
    dns_clock.advance(RECORD_TTL + 1)

    assert resolver.txt(ZONE) == ["v=spf1 ip4:192.0.2.1 -all"]
    assert asked(server, ZONE, "TXT") == 2


def test_no_answer_is_kept_longer_than_the_cap_whatever_its_ttl(server, dns_clock):
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,)).with_cache(max_ttl=10)
    resolver.txt(ZONE)
    server.set(ZONE, [("TXT", "v=spf1 ~all")])

    dns_clock.advance(11)

    assert resolver.txt(ZONE) == ["v=spf1 ~all"]


def test_a_nonexistent_name_with_an_soa_is_cached_for_the_negative_ttl(server, dns_clock):
    name = f"_dmarc.{ZONE}"
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,)).with_cache()
    assert resolver.txt(name) == []

    server.set(name, [("TXT", "v=DMARC1; p=reject")])
    assert resolver.txt(name) == []  # NXDOMAIN remembered (RFC 2308 §5)
    assert resolver.a(name) == []  # ... for every type: the name does not exist
    dns_clock.advance(SOA_MINIMUM + 1)

    assert resolver.txt(name) == ["v=DMARC1; p=reject"]
    assert asked(server, name) == 2


def test_no_data_with_an_soa_is_cached_per_type(server, dns_clock):
    server.set(ZONE, [("A", "192.0.2.1")])
    resolver = DnsResolver((server.address,)).with_cache()
    assert resolver.txt(ZONE) == []
    server.add(ZONE, "TXT", "v=spf1 -all")

    assert resolver.txt(ZONE) == []
    assert resolver.a(ZONE) == ["192.0.2.1"]  # another type: asked, not answered from the TXT entry
    dns_clock.advance(SOA_MINIMUM + 1)
    assert resolver.txt(ZONE) == ["v=spf1 -all"]


def test_a_negative_answer_without_an_soa_is_not_cached(server, dns_clock):
    resolver = DnsResolver((server.address,)).with_cache()
    assert resolver.txt("nowhere.example") == []  # NXDOMAIN, no SOA: RFC 2308 §5 says don't keep it
    server.set("nowhere.example", [("TXT", "v=spf1 -all")])

    assert resolver.txt("nowhere.example") == ["v=spf1 -all"]
    assert asked(server, "nowhere.example", "TXT") == 2


def test_a_failure_is_never_cached(server, dns_clock):
    resolver = DnsResolver((server.address,)).with_cache()
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    server.fail(ZONE)
    with pytest.raises(DnsError):
        resolver.txt(ZONE)

    server.fail(ZONE, False)

    assert resolver.txt(ZONE) == ["v=spf1 -all"]


def test_a_plain_resolver_asks_every_time(server, dns_clock):
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,))
    resolver.txt(ZONE)
    server.set(ZONE, [("TXT", "v=spf1 ~all")])

    assert resolver.txt(ZONE) == ["v=spf1 ~all"]
    assert asked(server, ZONE, "TXT") == 2


def test_a_cached_answer_is_served_without_a_new_resolution(server, dns_clock, monkeypatch):
    # Most of an inbound message's DNS cost was dnspython resolving cache hits; the memo in
    # front of its cache answers them, and only while the cache itself would.
    server.set(ZONE, [("TXT", "v=spf1 -all")])
    resolver = DnsResolver((server.address,)).with_cache()
    assert resolver.txt(ZONE) == ["v=spf1 -all"]
    assert resolver.txt(f"_dmarc.{ZONE}") == []  # NXDOMAIN with an SOA
    resolutions = []
    real = dnspython_resolver.Resolver.resolve
    monkeypatch.setattr(dnspython_resolver.Resolver, "resolve",
                        lambda self, *a, **k: resolutions.append(a[0]) or real(self, *a, **k))

    assert (resolver.txt(ZONE), resolver.txt(f"_dmarc.{ZONE}"), resolver.a(f"_dmarc.{ZONE}")) == (
        ["v=spf1 -all"], [], [])
    assert resolutions == []
    dns_clock.advance(RECORD_TTL + 1)  # the TXT answer expired; the NXDOMAIN (120 s) has not
    assert resolver.txt(ZONE) == ["v=spf1 -all"] and resolver.txt(f"_dmarc.{ZONE}") == []
    assert [str(n) for n in resolutions] == [f"{ZONE}."]


# -- wiring: the inbound verdicts cache, the domain checks and outbound delivery do not ------

SUPPORT = "support@acme.example"


@pytest.fixture
def api(client: Any, tenant: Any) -> Api:
    a = Api(client, tenant.token)
    hosted(a)
    return a


def _bank_mail() -> bytes:
    return Mail(sender="Bank <alerts@bank.example>", subject="Verify your account").build()


def test_inbound_verdicts_reuse_a_dmarc_answer_within_its_ttl(api, services, dns):
    dns.load({"_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
              "bank.example": [("TXT", "v=spf1 ip4:198.51.100.1 -all")]})
    before = asked(dns, "_dmarc.bank.example")
    first, second = (deliver(services, _bank_mail(), SUPPORT, mail_from="alerts@bank.example")[0]
                     for _ in range(2))

    assert [message_row(services, m)["auth"]["dmarc"]["result"] for m in (first, second)] == ["fail", "fail"]
    assert [message_row(services, m)["status"] for m in (first, second)] == ["quarantined", "quarantined"]
    assert asked(dns, "_dmarc.bank.example") - before == 1


def test_the_domain_check_sees_a_change_the_inbound_cache_still_holds(api, services, dns):
    name = "_dmarc.acme.example"
    dns.set(name, [("TXT", "v=DMARC1; p=none")])
    assert services.inbound.resolver.txt(name) == ["v=DMARC1; p=none"]  # now cached for inbound
    dns.set(name, [("TXT", "v=DMARC1; p=reject")])

    report = api.ok("GET", "/api/domains/acme.example/status")

    [dmarc] = [r for r in report["records"] if r["type"] == "TXT" and r["host"] == name]
    assert dmarc["found"] == ["v=DMARC1; p=reject"]
    assert services.domains_dns.resolver.txt(name) == ["v=DMARC1; p=reject"]
    assert services.inbound.resolver.txt(name) == ["v=DMARC1; p=none"]
    assert services.outbound.transport.resolver is services.domains_dns.resolver
