"""dnscheck fed by DnsResolver over a real loopback DNS server serving the test zone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from litemx.adapters.dns_resolver import DnsError, DnsResolver
from litemx.core.dkimkeys import generate_key_pair
from litemx.core.dnscheck import (
    DomainCheck,
    FoundRecords,
    check_domain,
    check_spf,
    collect_found,
    count_spf_lookups,
    parse_spf_terms,
)
from litemx.core.dnsplan import DkimPublicKey, DnsRecord, plan_records
from tests.support.dns_server import LoopbackDnsServer, RecordSpec

DOMAIN = "example.com"
MX_HOST = "mx.litemx.example"
ACTIVE = "lmx202511r2"
OLD = "lmx202511r1"


@pytest.fixture(scope="module")
def plan() -> list[DnsRecord]:
    keys = [DkimPublicKey(s, generate_key_pair("rsa", s).public_key_b64) for s in (OLD, ACTIVE)]
    return plan_records(DOMAIN, MX_HOST, keys, dmarc_rua="dmarc@example.com")


@pytest.fixture
def dns_server() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer() as server:
        yield server


@pytest.fixture
def resolver(dns_server: LoopbackDnsServer) -> DnsResolver:
    return DnsResolver((dns_server.address,))


def zone_of(plan: Sequence[DnsRecord]) -> dict[str, list[RecordSpec]]:
    """The plan as the loopback server's zone data: what a user who followed it publishes."""
    zone: dict[str, list[RecordSpec]] = {}
    for r in plan:
        zone.setdefault(r.host, []).append(("MX", (r.priority, r.value)) if r.type == "MX" else ("TXT", r.value))
    return zone


def run_check(plan: Sequence[DnsRecord], resolver: DnsResolver, active: str | None = ACTIVE) -> DomainCheck:
    return check_domain(plan, collect_found(plan, resolver), active_selector=active, txt_lookup=resolver.txt)


def status_of(result: DomainCheck, purpose: str, rtype: str = "TXT", selector: str | None = None) -> tuple[str, str]:
    [check] = [c for c in result.checks if c.record.purpose == purpose and c.record.type == rtype
               and (selector is None or c.record.selector == selector)]
    return check.status, check.hint


def replace(server: LoopbackDnsServer, host: str, rtype: str, *values: object) -> None:
    server.remove(host, rtype)
    for value in values:
        server.add(host, rtype, value)


# -- the whole domain ---------------------------------------------------------------------------

def test_a_zone_that_matches_the_plan_is_all_ok_and_ready(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                          resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))

    result = run_check(plan, resolver)

    assert [(c.status, c.hint) for c in result.checks] == [("ok", "")] * len(plan)
    assert result.inbound_ready and result.outbound_ready
    assert all(c.expected and c.found for c in result.checks)


def test_removed_records_are_missing_with_a_hint_and_nothing_is_ready(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver) -> None:
    dns_server.load({})

    result = run_check(plan, resolver)

    assert {c.status for c in result.checks} == {"missing"}
    assert all(c.hint.startswith("add ") and c.found == () for c in result.checks)
    assert not result.inbound_ready and not result.outbound_ready


@pytest.mark.parametrize(("host", "rtype", "purpose", "inbound", "outbound"), [
    (DOMAIN, "MX", "inbound", False, True),
    (DOMAIN, "TXT", "spf", True, False),
    (f"{ACTIVE}._domainkey.{DOMAIN}", "TXT", "dkim", True, False),
    (f"_dmarc.{DOMAIN}", "TXT", "dmarc", True, False),
    (f"bounce.{DOMAIN}", "MX", "mail_from", True, False),
    (f"bounce.{DOMAIN}", "TXT", "mail_from", True, False),
])
def test_each_missing_record_is_reported_and_blocks_its_readiness(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver,
        host: str, rtype: str, purpose: str, inbound: bool, outbound: bool) -> None:
    dns_server.load(zone_of(plan))
    dns_server.remove(host, rtype)

    result = run_check(plan, resolver)

    missing = [(c.record.host, c.record.type, c.record.purpose) for c in result.checks if c.status != "ok"]
    assert missing == [(host, rtype, purpose)]
    assert (result.inbound_ready, result.outbound_ready) == (inbound, outbound)


def test_a_rotated_out_selector_does_not_block_sending_with_the_active_one(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    dns_server.remove(f"{OLD}._domainkey.{DOMAIN}")

    assert run_check(plan, resolver, active=ACTIVE).outbound_ready
    assert not run_check(plan, resolver, active=None).outbound_ready
    assert not run_check(plan, resolver, active=OLD).outbound_ready


def test_records_fixed_between_checks_turn_ok(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                              resolver: DnsResolver) -> None:
    assert not run_check(plan, resolver).inbound_ready

    dns_server.load(zone_of(plan))

    assert run_check(plan, resolver).inbound_ready


def test_a_dns_outage_is_an_error_not_a_missing_record(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                       resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    dns_server.fail(f"_dmarc.{DOMAIN}")

    with pytest.raises(DnsError):
        run_check(plan, resolver)


# -- MX -------------------------------------------------------------------------------------------

def test_mx_names_compare_case_and_final_dot_insensitively(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                           resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, DOMAIN, "MX", (10, "MX.LiteMX.Example."))

    assert status_of(run_check(plan, resolver), "inbound", "MX") == ("ok", "")


def test_mx_pointing_elsewhere_is_a_mismatch(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                             resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, DOMAIN, "MX", (1, "aspmx.l.google.com"))

    result = run_check(plan, resolver)

    assert status_of(result, "inbound", "MX") == (
        "mismatch", "example.com's MX points to aspmx.l.google.com (preference 1), not "
                    "mx.litemx.example: replace them with 10 mx.litemx.example")
    assert not result.inbound_ready


@pytest.mark.parametrize("rival", [(10, "aspmx.l.google.com"), (5, "aspmx.l.google.com"), (0, ".")])
def test_a_rival_mx_with_equal_or_better_preference_is_a_conflict(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver, rival: tuple[int, str]) -> None:
    dns_server.load(zone_of(plan))
    dns_server.add(DOMAIN, "MX", rival)

    result = run_check(plan, resolver)

    status, hint = status_of(result, "inbound", "MX")
    assert status == "mismatch" and ("remove" in hint)
    assert not result.inbound_ready


def test_a_backup_mx_is_ok_with_a_warning(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                          resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    dns_server.add(DOMAIN, "MX", (20, "backup.example.net"))

    [check] = [c for c in run_check(plan, resolver).checks if c.record.purpose == "inbound"]

    assert check.status == "ok"
    assert check.found == ("10 mx.litemx.example", "20 backup.example.net")
    assert check.warnings and "backup.example.net" in check.warnings[0]


# -- SPF ------------------------------------------------------------------------------------------

def test_spf_without_our_mechanism_says_exactly_what_to_add(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                            resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, DOMAIN, "TXT", "v=spf1 include:_spf.google.com ~all", "other=thing")

    result = run_check(plan, resolver)

    assert status_of(result, "spf") == (
        "mismatch", "add a:mx.litemx.example before ~all, e.g. "
                    "v=spf1 include:_spf.google.com a:mx.litemx.example ~all")
    assert not result.outbound_ready and result.inbound_ready


def test_spf_mechanism_after_all_or_with_a_fail_qualifier_is_a_mismatch() -> None:
    record = DnsRecord("TXT", DOMAIN, f"v=spf1 a:{MX_HOST} ~all", "spf")

    after = check_spf(record, [f"v=spf1 -all a:{MX_HOST}"])
    failing = check_spf(record, [f"v=spf1 -a:{MX_HOST} ~all"])

    assert after.status == "mismatch" and after.hint.startswith(f"move a:{MX_HOST} before -all")
    assert failing.status == "mismatch" and failing.hint.startswith(f"change -a:{MX_HOST} to a:{MX_HOST}")


def test_spf_with_redirect_gets_the_mechanism_before_the_redirect() -> None:
    record = DnsRecord("TXT", DOMAIN, f"v=spf1 a:{MX_HOST} ~all", "spf")

    check = check_spf(record, ["v=spf1 ip4:192.0.2.1 redirect=_spf.example.com"])

    assert check.hint == (f"add a:{MX_HOST} before redirect=_spf.example.com, e.g. "
                          f"v=spf1 ip4:192.0.2.1 a:{MX_HOST} redirect=_spf.example.com")


def test_our_mechanism_reached_through_an_include_is_ok(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                        resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, DOMAIN, "TXT", "v=spf1 include:_spf.example.com -all")
    dns_server.set("_spf.example.com", [("TXT", f"v=spf1 ip4:192.0.2.0/24 a:{MX_HOST} -all")])

    assert status_of(run_check(plan, resolver), "spf") == ("ok", "")


def test_two_spf_records_are_a_permerror(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                         resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    dns_server.add(f"bounce.{DOMAIN}", "TXT", "v=spf1 include:amazonses.com ~all")

    status, hint = status_of(run_check(plan, resolver), "mail_from", "TXT")

    assert status == "mismatch"
    assert hint == ("2 SPF records at bounce.example.com make SPF a permanent error "
                    "(RFC 7208 §4.5): merge them into one record")


def test_spf_needing_11_lookups_through_includes_is_flagged(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                            resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, DOMAIN, "TXT", f"v=spf1 a:{MX_HOST} mx include:one.example.org ~all")  # 3
    dns_server.set("one.example.org", [("TXT", "v=spf1 a mx ptr include:two.example.org ?all")])  # +4
    dns_server.set("two.example.org", [("TXT", "v=spf1 exists:x.example.org a:b.example.org ip4:192.0.2.1 "
                                               "redirect=three.example.org")])  # +3
    dns_server.set("three.example.org", [("TXT", "v=spf1 mx -all")])  # +1 = 11

    status, hint = status_of(run_check(plan, resolver), "spf")

    assert status == "mismatch"
    assert hint == ("the SPF record at example.com needs 11 DNS lookups, more than the 10 "
                    "RFC 7208 §4.6.4 allows (a permanent error): remove or flatten include: terms")


def test_lookup_counting_follows_includes_only_when_given_a_lookup() -> None:
    zone = {"i.example.org": ["v=spf1 a mx -all"], "j.example.org": ["v=spf1 include:i.example.org"]}

    def lookup(name: str) -> list[str]:
        return zone.get(name, [])

    record = "v=spf1 ip4:192.0.2.1 include:j.example.org a:x.example.org ~all redirect=z.example.org"
    assert count_spf_lookups(record) == 2  # redirect ignored: "all" is present (RFC 7208 §6.1)
    assert count_spf_lookups(record, lookup) == 5


def test_spf_terms_parse_qualifiers_cidr_and_modifiers() -> None:
    terms = parse_spf_terms("v=spf1 -a/24 ~mx:Mail.Example.com. ip6:2001:db8::/32 exp=e.example.com ?all")

    assert [(t.qualifier, t.key, t.modifier) for t in terms] == [
        ("-", "a/24", False), ("~", "mx:mail.example.com", False), ("+", "ip6:2001:db8::/32", False),
        ("", "exp=e.example.com", True), ("?", "all", False)]


def test_plus_all_is_ok_but_warned_about() -> None:
    record = DnsRecord("TXT", DOMAIN, f"v=spf1 a:{MX_HOST} ~all", "spf")

    check = check_spf(record, [f"v=spf1 a:{MX_HOST} +all"])

    assert check.status == "ok" and "+all" in check.warnings[0]


# -- DKIM and DMARC -----------------------------------------------------------------------------

def test_a_different_dkim_key_is_a_mismatch(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                            resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    other = generate_key_pair("rsa", ACTIVE).public_key_b64
    replace(dns_server, f"{ACTIVE}._domainkey.{DOMAIN}", "TXT", f"v=DKIM1; k=rsa; p={other}")

    result = run_check(plan, resolver)

    assert status_of(result, "dkim", selector=ACTIVE) == (
        "mismatch", "the published key is not LiteMX's key for this selector: replace the TXT value "
                    f"at {ACTIVE}._domainkey.example.com with LiteMX's")
    assert not result.outbound_ready


@pytest.mark.parametrize(("published", "reason"), [
    ("v=DKIM1; k=rsa; p=", "revoked"),
    ("v=DKIM1; k=ed25519; p={p}", "key type"),
    ("hello world", "not a valid DKIM key record"),
])
def test_revoked_wrong_type_or_garbage_dkim_records_are_mismatches(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver,
        published: str, reason: str) -> None:
    dns_server.load(zone_of(plan))
    p = next(r.value for r in plan if r.selector == ACTIVE).split("p=")[1]
    replace(dns_server, f"{ACTIVE}._domainkey.{DOMAIN}", "TXT", published.format(p=p))

    status, hint = status_of(run_check(plan, resolver), "dkim", selector=ACTIVE)

    assert status == "mismatch" and reason in hint


def test_dkim_keys_compare_ignoring_whitespace_quotes_and_tag_order(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver) -> None:
    dns_server.load(zone_of(plan))
    p = next(r.value for r in plan if r.selector == ACTIVE).split("p=")[1]
    pasted = f'p={p[:100]}" "{p[100:200]}  {p[200:]} ; v=DKIM1 ;k = rsa; t=s'
    replace(dns_server, f"{ACTIVE}._domainkey.{DOMAIN}", "TXT", pasted)

    assert status_of(run_check(plan, resolver), "dkim", selector=ACTIVE) == ("ok", "")


@pytest.mark.parametrize("policy", ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com",
                                    "v=DMARC1;p=quarantine;pct=50", "V = DMARC1; p=none"])
def test_an_existing_stricter_dmarc_policy_is_ok(plan: list[DnsRecord], dns_server: LoopbackDnsServer,
                                                 resolver: DnsResolver, policy: str) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, f"_dmarc.{DOMAIN}", "TXT", policy)

    result = run_check(plan, resolver)

    assert status_of(result, "dmarc")[0] == "ok"
    assert result.outbound_ready


@pytest.mark.parametrize(("published", "status"), [
    (["v=DMARC1; rua=mailto:x@example.com"], "mismatch"),
    (["v=DMARC1; p=none", "v=DMARC1; p=reject"], "mismatch"),
    (["v=spf1 -all"], "missing"),
    (["v=dmarc1; p=none"], "missing"),
])
def test_dmarc_without_policy_or_doubled_is_a_mismatch_and_non_dmarc_text_is_missing(
        plan: list[DnsRecord], dns_server: LoopbackDnsServer, resolver: DnsResolver,
        published: list[str], status: str) -> None:
    dns_server.load(zone_of(plan))
    replace(dns_server, f"_dmarc.{DOMAIN}", "TXT", *published)

    assert status_of(run_check(plan, resolver), "dmarc")[0] == status


def test_a_dmarc_record_without_our_report_address_warns() -> None:
    plan = plan_records(DOMAIN, MX_HOST, dmarc_rua="dmarc@example.com")
    found = FoundRecords(txt={f"_dmarc.{DOMAIN}": ["v=DMARC1; p=none"]})

    [check] = [c for c in check_domain(plan, found).checks if c.record.purpose == "dmarc"]

    assert check.status == "ok"
    assert check.warnings == ("aggregate reports are not sent to dmarc@example.com: "
                              "add rua=mailto:dmarc@example.com to receive them",)


def test_a_plan_without_dkim_keys_is_never_outbound_ready() -> None:
    plan = plan_records(DOMAIN, MX_HOST)
    found = FoundRecords(txt={r.host: [r.value] for r in plan if r.type == "TXT"},
                         mx={r.host: [(10, MX_HOST)] for r in plan if r.type == "MX"})

    result = check_domain(plan, found)

    assert {c.status for c in result.checks} == {"ok"}
    assert result.inbound_ready and not result.outbound_ready
