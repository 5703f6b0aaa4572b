"""Spam and phishing signals: each one on its own, from literal inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from litemx.mailauth.headers import FromHeader, from_values, parse_from
from litemx.mailauth.results import ArcResult, AuthResults, DkimResult, DmarcResult, SpfResult
from litemx.mailauth.signals import GTUBE, assess

OWN = "acme.com"

CLEAN = AuthResults(
    spf=SpfResult("pass", "example.org", "mailfrom", "192.0.2.1"),
    dkim=(DkimResult("pass", domain="example.org"),),
    arc=ArcResult("none"),
    dmarc=DmarcResult("pass", from_domain="example.org", record_domain="example.org", policy="reject"),
    evaluated_at=datetime(2026, 1, 5, tzinfo=timezone.utc),
)


def _codes(author: FromHeader, auth: AuthResults = CLEAN, body: str = "Hello.") -> set[str]:
    return {signal.code for signal in assess(author, OWN, body, auth).signals}


def _from(value: str) -> FromHeader:
    return from_values([value])


def test_clean_message_has_no_signals() -> None:
    report = assess(_from("Partner <bob@example.org>"), OWN, "Hello.", CLEAN)
    assert report.signals == ()
    assert report.quarantine is False
    assert report.to_dict() == {"signals": [], "quarantine": False}


def test_gtube_in_the_body_is_flagged() -> None:
    body = f"Subject line\n\nThis is the GTUBE, the\n{GTUBE}\n"
    assert "gtube" in _codes(_from("bob@example.org"), body=body)


def test_gtube_literal_is_the_spamassassin_string() -> None:
    assert GTUBE == "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_spf_fail_and_softfail_are_flagged() -> None:
    for word in ("fail", "softfail"):
        auth = replace(CLEAN, spf=replace(CLEAN.spf, result=word))
        assert f"spf_{word}" in _codes(_from("bob@example.org"), auth)


def test_dkim_fail_is_flagged_only_without_any_valid_signature() -> None:
    broken = DkimResult("fail", domain="example.org", reason="body hash mismatch")
    assert "dkim_fail" in _codes(_from("bob@example.org"), replace(CLEAN, dkim=(broken,)))
    assert "dkim_fail" not in _codes(_from("bob@example.org"), replace(CLEAN, dkim=(broken, *CLEAN.dkim)))


def test_arc_fail_is_flagged() -> None:
    auth = replace(CLEAN, arc=ArcResult("fail", 1, "Most recent ARC-Message-Signature did not validate"))
    assert "arc_fail" in _codes(_from("bob@example.org"), auth)


def test_dmarc_fail_with_applied_reject_quarantines() -> None:
    failed = replace(CLEAN.dmarc, result="fail", policy="reject", disposition="reject")
    report = assess(_from("bob@example.org"), OWN, "Hello.", replace(CLEAN, dmarc=failed))
    assert report.quarantine is True
    assert "dmarc_fail" in {s.code for s in report.signals}


@pytest.mark.parametrize("disposition", ["quarantine", "none"])
def test_dmarc_fail_without_an_applied_reject_does_not_quarantine(disposition: str) -> None:
    failed = replace(CLEAN.dmarc, result="fail", policy="reject", disposition=disposition)
    assert assess(_from("bob@example.org"), OWN, "Hello.", replace(CLEAN, dmarc=failed)).quarantine is False


def test_display_name_showing_our_address_from_elsewhere_is_spoofing() -> None:
    assert "display_name_spoof" in _codes(_from('"ceo@acme.com" <ceo.acme@gmail.example>'))


def test_unquoted_display_name_with_our_address_is_spoofing() -> None:
    assert "display_name_spoof" in _codes(_from("ceo@acme.com <ceo.acme@gmail.example>"))


def test_encoded_display_name_is_decoded_before_checking() -> None:
    # "=?UTF-8?B?...?=" is "Billing billing@acme.com"
    assert "display_name_spoof" in _codes(_from("=?UTF-8?B?QmlsbGluZyBiaWxsaW5nQGFjbWUuY29t?= <x@evil.example>"))


def test_our_own_address_in_our_own_display_name_is_fine() -> None:
    assert "display_name_spoof" not in _codes(_from('"alice@acme.com" <alice@acme.com>'))
    assert "display_name_spoof" not in _codes(_from("Alice <alice@mail.acme.com>"))


@pytest.mark.parametrize(
    "sender",
    ["billing@acne.com", "billing@acmee.com", "billing@acem.com", "billing@acrne.com", "billing@acm3.com"],
)
def test_lookalike_domains_of_ours_are_flagged(sender: str) -> None:
    assert "lookalike_domain" in _codes(_from(sender))


def test_punycode_homograph_of_our_domain_is_flagged() -> None:
    cyrillic_a = "xn--" + "аcme".encode("punycode").decode()  # first letter is Cyrillic U+0430
    assert "homograph_domain" in _codes(_from(f"billing@{cyrillic_a}.com"))


def test_unicode_homograph_in_the_from_header_is_flagged() -> None:
    assert "homograph_domain" in _codes(_from("billing@аcme.com"))  # converted to an A-label


def test_unrelated_domains_and_our_own_subdomains_are_not_lookalikes() -> None:
    for sender in ("a@example.org", "a@mail.acme.com", "a@acme.net", "a@zebra.com"):
        codes = _codes(_from(sender))
        assert not codes & {"lookalike_domain", "homograph_domain"}, sender


def test_short_labels_are_not_compared_by_edit_distance() -> None:
    codes = {signal.code for signal in assess(_from("a@ibn.com"), "ibm.com", "", CLEAN).signals}
    assert "lookalike_domain" not in codes


def test_missing_and_multiple_from_are_flagged() -> None:
    assert "from_unusable" in _codes(parse_from(b"Subject: x\r\n\r\nbody"))
    assert "from_multiple" in _codes(parse_from(b"From: a@example.org\r\nFrom: b@example.net\r\n\r\nx"))


def test_raw_utf8_from_header_is_read_as_utf8() -> None:
    author = parse_from("From: Billing <billing@аcme.com>\r\nSubject: x\r\n\r\nbody".encode())
    assert author.mailboxes[0].domain == "xn--cme-5cd.com"  # RFC 7489 §6.6.1 A-label
    assert "homograph_domain" in _codes(author)
