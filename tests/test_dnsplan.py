"""The DNS plan: records, names, values, and the zone-file export."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from litemx.core.dnsplan import (
    DkimPublicKey,
    DnsRecord,
    default_spf_mechanisms,
    dmarc_value,
    mail_from_host,
    normalize_host,
    plan_records,
    quote_character_string,
    render_zone,
    report_authorization,
    split_character_strings,
    zone_line,
)

RSA_P = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 342 + "IDAQAB"  # 392 chars, as a 2048-bit key
ED_P = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def _plan(**kwargs: object) -> list[DnsRecord]:
    keys = [DkimPublicKey("lmx202511r1", RSA_P), DkimPublicKey("lmx202511e1", ED_P, "ed25519")]
    return plan_records("Example.COM.", "mx.litemx.example", keys, **kwargs)  # type: ignore[arg-type]


def test_the_plan_lists_every_record_with_type_host_value_purpose_and_ttl() -> None:
    records = _plan(dmarc_rua="dmarc@example.com")

    assert [(r.type, r.host, r.value, r.purpose, r.ttl) for r in records] == [
        ("MX", "example.com", "mx.litemx.example", "inbound", 3600),
        ("TXT", "example.com", "v=spf1 a:mx.litemx.example ~all", "spf", 3600),
        ("TXT", "lmx202511r1._domainkey.example.com", f"v=DKIM1; k=rsa; p={RSA_P}", "dkim", 3600),
        ("TXT", "lmx202511e1._domainkey.example.com", f"v=DKIM1; k=ed25519; p={ED_P}", "dkim", 3600),
        ("TXT", "_dmarc.example.com", "v=DMARC1; p=none; rua=mailto:dmarc@example.com", "dmarc", 3600),
        ("MX", "bounce.example.com", "mx.litemx.example", "mail_from", 3600),
        ("TXT", "bounce.example.com", "v=spf1 a:mx.litemx.example ~all", "mail_from", 3600),
    ]


def test_mx_records_carry_a_priority_and_dkim_records_their_selector() -> None:
    records = _plan()

    assert [r.priority for r in records if r.type == "MX"] == [10, 10]
    assert [r.selector for r in records if r.purpose == "dkim"] == ["lmx202511r1", "lmx202511e1"]


def test_dmarc_defaults_to_p_none_without_a_report_address() -> None:
    assert [r.value for r in _plan() if r.purpose == "dmarc"] == ["v=DMARC1; p=none"]


def test_dmarc_report_addresses_escape_the_uri_separators() -> None:
    assert dmarc_value("a,b!c@example.com") == "v=DMARC1; p=none; rua=mailto:a%2Cb%21c@example.com"
    assert dmarc_value("mailto:r@example.com") == "v=DMARC1; p=none; rua=mailto:r@example.com"


@pytest.mark.parametrize("address", ["not-an-address", "@example.com", "a b@example.com"])
def test_a_dmarc_report_address_must_be_an_address(address: str) -> None:
    with pytest.raises(ValueError):
        dmarc_value(address)


def test_spf_mechanisms_and_qualifier_can_be_chosen() -> None:
    records = _plan(spf_mechanisms=["ip4:192.0.2.0/24", "include:amazonses.com"], spf_all="-all")

    assert {r.value for r in records if r.value.startswith("v=spf1")} == {
        "v=spf1 ip4:192.0.2.0/24 include:amazonses.com -all"}


def test_the_default_spf_mechanism_is_the_mx_hosts_address() -> None:
    assert default_spf_mechanisms("MX.Example.NET.") == ("a:mx.example.net",)


def test_the_mail_from_host_can_be_any_subdomain_but_not_outside_the_domain() -> None:
    assert mail_from_host("example.com") == "bounce.example.com"
    assert mail_from_host("example.com", "mail.Example.com.") == "mail.example.com"
    with pytest.raises(ValueError):
        mail_from_host("example.com", "bounce.example.org")
    with pytest.raises(ValueError):
        mail_from_host("example.com", "badexample.com")


def test_host_names_are_lower_case_a_labels_without_the_final_dot() -> None:
    assert normalize_host("Bücher.Example.") == "xn--bcher-kva.example"
    with pytest.raises(ValueError):
        normalize_host(" . ")


# -- zone export ---------------------------------------------------------------------------------

def _parse_txt(rdata_text: str) -> list[bytes]:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, rdata_text)
    return list(rdata.strings)  # type: ignore[attr-defined]


def test_zone_lines_use_absolute_names_and_mx_preference() -> None:
    mx = _plan()[0]

    assert zone_line(mx) == "example.com.\t3600\tIN\tMX\t10 mx.litemx.example."


def test_a_2048_bit_dkim_value_is_split_into_255_byte_strings() -> None:
    dkim = next(r for r in _plan() if r.selector == "lmx202511r1")
    rdata = zone_line(dkim).split("\tTXT\t")[1]

    strings = _parse_txt(rdata)
    assert [len(s) for s in strings] == [255, len(dkim.value) - 255]
    assert b"".join(strings).decode() == dkim.value


def test_the_zone_snippet_parses_back_to_the_plan() -> None:
    plan = _plan(dmarc_rua="dmarc@example.com")
    zone = dns.zone.from_text(render_zone(plan, "example.com"), origin="example.com.",
                              relativize=False, check_origin=False)

    parsed = sorted((str(name).rstrip("."), dns.rdatatype.to_text(rds.rdtype), _value(rd), rds.ttl)
                    for name, rds in zone.iterate_rdatasets() for rd in rds)
    assert parsed == sorted((r.host, r.type, r.value, r.ttl) for r in plan)


def _value(rdata: dns.rdata.Rdata) -> str:
    if rdata.rdtype == dns.rdatatype.MX:
        return str(rdata.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    strings: tuple[bytes, ...] = rdata.strings  # type: ignore[attr-defined]
    return b"".join(strings).decode()


def test_quotes_backslashes_and_non_ascii_are_escaped() -> None:
    assert quote_character_string(b'say "hi" \\ ok') == '"say \\"hi\\" \\\\ ok"'
    assert quote_character_string("é\n".encode()) == '"\\195\\169\\010"'
    assert split_character_strings("") == [b""]


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=1200))
def test_any_txt_value_round_trips_through_the_zone_format(value: str) -> None:
    record = DnsRecord("TXT", "t.example.com", value, "spf")
    rdata = zone_line(record).split("\tTXT\t", 1)[1]

    strings = _parse_txt(rdata)
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings) == value.encode("utf-8")
    assert "\n" not in rdata


@given(st.binary(max_size=300))
def test_any_character_string_bytes_round_trip_through_quoting(chunk: bytes) -> None:
    assert _parse_txt(quote_character_string(chunk)) == [chunk]


@pytest.mark.parametrize(("address", "host"), [
    (None, None), ("dmarc@example.com", None), ("dmarc@reports.Example.com", None),  # same Organizational Domain
    ("agg@reports.example.net", "example.com._report._dmarc.reports.example.net"),
    ("mailto:agg@other.example", "example.com._report._dmarc.other.example"),
])
def test_a_report_address_on_another_domain_needs_the_rfc7489_authorisation(address, host) -> None:
    record = report_authorization("Example.COM.", address)
    if host is None:
        assert record is None
    else:
        assert record == DnsRecord("TXT", host, "v=DMARC1", "dmarc", 3600)
