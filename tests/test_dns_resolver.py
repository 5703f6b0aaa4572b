"""DnsResolver against a real authoritative DNS server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dkim
import pytest
import spf

from litemx.adapters.dns_resolver import (
    DnsError,
    DnsResolver,
    dkimpy_dnsfunc,
    install_pyspf,
    pyspf_dnslookup,
)
from litemx.core.dkimkeys import generate_key_pair
from litemx.core.dnsplan import DkimPublicKey, dkim_value
from litemx.errors import InvalidRequest
from litemx.settings import Settings
from tests.support.dns_server import LoopbackDnsServer, closed_loopback_port


@pytest.fixture
def dns_server() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer() as server:
        yield server


@pytest.fixture
def resolver(dns_server: LoopbackDnsServer) -> DnsResolver:
    return DnsResolver((dns_server.address,))


def test_txt_joins_the_character_strings_of_each_record(dns_server: LoopbackDnsServer,
                                                       resolver: DnsResolver) -> None:
    dns_server.set("example.com", [("TXT", ["v=spf1 a:mx.example.net", " ~all"]),
                                   ("TXT", ["google-site-verification=abc"])])

    assert sorted(resolver.txt("example.com")) == ["google-site-verification=abc",
                                                   "v=spf1 a:mx.example.net ~all"]


def test_txt_raw_shows_a_2048_bit_dkim_key_split_at_255_bytes(dns_server: LoopbackDnsServer,
                                                              resolver: DnsResolver) -> None:
    pair = generate_key_pair("rsa", "lmx202511r1")
    value = dkim_value(DkimPublicKey(pair.selector, pair.public_key_b64))
    dns_server.set("lmx202511r1._domainkey.example.com", [("TXT", value)])

    [strings] = resolver.txt_raw("lmx202511r1._domainkey.example.com")

    assert [len(s) for s in strings] == [255, len(value) - 255]
    assert b"".join(strings).decode() == value
    assert resolver.txt("lmx202511r1._domainkey.example.com") == [value]


def test_answers_too_large_for_udp_are_fetched_over_tcp(dns_server: LoopbackDnsServer,
                                                        resolver: DnsResolver) -> None:
    big = "k=" + "x" * 1500
    dns_server.set("big.example.com", [("TXT", big)])

    assert resolver.txt("big.example.com") == [big]
    assert ("big.example.com", "TXT", "tcp") in dns_server.queries


def test_mx_answers_are_sorted_by_preference_without_the_final_dot(
        dns_server: LoopbackDnsServer, resolver: DnsResolver) -> None:
    dns_server.set("example.com", [("MX", "20 backup.example.net"), ("MX", (10, "mx.example.net."))])

    assert resolver.mx("example.com") == [(10, "mx.example.net"), (20, "backup.example.net")]


def test_a_aaaa_and_ptr_answers(dns_server: LoopbackDnsServer, resolver: DnsResolver) -> None:
    dns_server.set("mx.example.net", [("A", "192.0.2.25"), ("AAAA", "2001:db8::25")])
    dns_server.set("25.2.0.192.in-addr.arpa", [("PTR", "mx.example.net")])

    assert resolver.a("mx.example.net") == ["192.0.2.25"]
    assert resolver.aaaa("mx.example.net") == ["2001:db8::25"]
    assert resolver.ptr("25.2.0.192.in-addr.arpa") == ["mx.example.net"]


def test_nxdomain_and_no_data_answer_an_empty_list(dns_server: LoopbackDnsServer,
                                                   resolver: DnsResolver) -> None:
    dns_server.set("example.com", [("A", "192.0.2.1")])

    assert resolver.txt("nothing-here.example.com") == []
    assert resolver.mx("example.com") == []
    assert resolver.aaaa("example.com") == []


def test_servfail_raises_dns_error_not_an_empty_answer(dns_server: LoopbackDnsServer,
                                                       resolver: DnsResolver) -> None:
    dns_server.set("example.com", [("TXT", "v=spf1 -all")])
    dns_server.fail("example.com")

    with pytest.raises(DnsError) as caught:
        resolver.txt("example.com")
    assert caught.value.name == "example.com" and caught.value.rdtype == "TXT"
    assert caught.value.code == "unavailable"  # "could not check" renders as SPEC §3's 503


def test_a_server_that_does_not_answer_raises_dns_error_within_the_lifetime() -> None:
    resolver = DnsResolver((f"127.0.0.1:{closed_loopback_port()}",), lifetime=0.5)
    started = time.monotonic()

    with pytest.raises(DnsError):
        resolver.mx("example.com")
    assert time.monotonic() - started < 3.0


def test_records_changed_between_steps_are_seen_at_once(dns_server: LoopbackDnsServer,
                                                        resolver: DnsResolver) -> None:
    dns_server.set("_dmarc.example.com", [("TXT", "v=DMARC1; p=none")])
    assert resolver.txt("_dmarc.example.com") == ["v=DMARC1; p=none"]

    dns_server.set("_dmarc.example.com", [("TXT", "v=DMARC1; p=reject")])
    assert resolver.txt("_dmarc.example.com") == ["v=DMARC1; p=reject"]


def test_from_settings_asks_only_the_configured_servers(dns_server: LoopbackDnsServer) -> None:
    dns_server.set("example.com", [("A", "192.0.2.1")])
    resolver = DnsResolver.from_settings(Settings(dns_servers=(dns_server.address,)))

    assert resolver.a("example.com") == ["192.0.2.1"]
    assert dns_server.queries == [("example.com", "A", "udp")]


@pytest.mark.parametrize("server", ["localhost:53", "dns.example:53", "127.0.0.1", "127.0.0.1:x"])
def test_servers_must_be_ip_host_port(server: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        DnsResolver((server,))
    assert caught.value.details == {"field": "dns_servers"}


def test_ipv6_literal_servers_are_accepted() -> None:
    assert DnsResolver(("[::1]:5353",)).servers == ("[::1]:5353",)


def test_dkimpy_dnsfunc_returns_the_joined_key_record_or_none(dns_server: LoopbackDnsServer,
                                                             resolver: DnsResolver) -> None:
    dns_server.set("s._domainkey.example.com", [("TXT", ["v=DKIM1; p=AB", "CD"])])
    get_txt = dkimpy_dnsfunc(resolver)

    assert get_txt(b"s._domainkey.example.com.") == b"v=DKIM1; p=ABCD"
    assert get_txt(b"other._domainkey.example.com.") is None


def test_dkimpy_dnsfunc_reports_an_outage_as_a_dns_timeout(dns_server: LoopbackDnsServer,
                                                          resolver: DnsResolver) -> None:
    dns_server.fail("s._domainkey.example.com")

    with pytest.raises(dkim.DnsTimeoutError):
        dkimpy_dnsfunc(resolver)(b"s._domainkey.example.com.")


def test_pyspf_evaluates_through_our_resolver(dns_server: LoopbackDnsServer, resolver: DnsResolver,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dns_server.set("example.com", [("TXT", "v=spf1 a:mx.example.net -all")])
    dns_server.set("mx.example.net", [("A", "192.0.2.25")])
    monkeypatch.setattr(spf, "DNSLookup", pyspf_dnslookup(resolver))

    assert spf.check2(i="192.0.2.25", s="a@example.com", h="mx.example.net")[0] == "pass"
    assert spf.check2(i="192.0.2.99", s="a@example.com", h="mx.example.net")[0] == "fail"


def test_pyspf_sees_an_outage_as_temperror(dns_server: LoopbackDnsServer, resolver: DnsResolver,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dns_server.fail("example.com")
    monkeypatch.setattr(spf, "DNSLookup", spf.DNSLookup)  # restored after the test
    install_pyspf(resolver)

    assert spf.check2(i="192.0.2.25", s="a@example.com", h="mx.example.net")[0] == "temperror"
