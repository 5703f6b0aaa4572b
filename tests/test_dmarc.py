"""DMARC verdicts: authheaders 0.16.3's test messages and our own cases, through evaluate()."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dkim
import pytest

from litemx.mailauth import evaluate, parse_from
from litemx.mailauth.dmarc import DmarcSyntaxError, check_dmarc, organizational_domain, parse_record
from litemx.mailauth.headers import FromHeader, from_values
from litemx.mailauth.results import AuthResults, DkimResult, SpfResult
from litemx.mailauth.signals import assess
from tests.support.corpora import sdist
from tests.support.fake_resolver import FakeResolver

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
CLIENT = "192.0.2.25"


@pytest.fixture(scope="module")
def corpus() -> Path:
    return sdist("authheaders", "0.16.3") / "authheaders" / "test"


def _authheaders_zone(corpus: Path) -> FakeResolver:
    """authheaders' test DNS (test_authentication.py), as data; "" there means no record."""
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", (corpus / "test.txt").read_text().strip())
    fake.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc.reports@valimail.com")
    fake.add("_dmarc.example.org", "TXT", "v=DMARC1; p=none")
    fake.add("_dmarc.example.net", "TXT", "v=DMARC1; p=none; sp=reject")
    fake.add("_dmarc.example.biz", "TXT", "v=DMARC1; p=none; sp=quarantine; np=reject")
    fake.add("_dmarc.nop.example.org", "TXT", "v=DMARC1; sp=quarantine; np=reject")
    fake.add("_dmarc.bad.example.com", "TXT", "v=DMARC1; p=none; reject")
    fake.add("_dmarc.gov", "TXT", "v=DMARC1; p=reject; sp=none; np=reject; psd=y")
    # RFC 9091 §2.4 existence: sub2.example.biz has an address, sub.example.biz has nothing.
    return fake.add("sub2.example.biz", "A", "192.0.2.80")


def _evaluate(raw: bytes, fake: FakeResolver, mail_from: str = "bounce@elsewhere.example") -> AuthResults:
    return evaluate(raw, client_ip=CLIENT, helo="mx.elsewhere.example", mail_from=mail_from, resolver=fake, now=NOW)


@pytest.mark.parametrize(
    ("name", "result", "policy", "from_domain"),
    [
        ("test.message_signed", "pass", "reject", "example.com"),
        ("testcomma.message", "pass", "reject", "example.com"),
        ("test.message", "fail", "reject", "example.com"),
        ("test.message_multi", "fail", "reject", "example.com"),
        ("test.message_multi2", "fail", "reject", "example.com"),
        ("test.message_sub", "fail", "reject", "sub.example.net"),
        ("test.message_np1", "fail", "reject", "sub.example.biz"),
        ("test.message_np2", "fail", "quarantine", "sub2.example.biz"),
        ("test_nop.message", "none", "none", "nop.example.org"),
        ("test.bad.message", "permerror", "none", "bad.example.com"),
        ("test.nofrom.message", "permerror", "none", ""),
        # authheaders reaches "fail" only with dmarcbis=True (PSD tree walk); RFC 7489 finds no
        # record for example.gov, and RFC 9091 PSD lookups are not implemented (see dmarc.py).
        ("test.gov.message", "none", "none", "example.gov"),
    ],
)
def test_authheaders_message_gets_the_expected_verdict(
    corpus: Path, name: str, result: str, policy: str, from_domain: str
) -> None:
    auth = _evaluate((corpus / name).read_bytes(), _authheaders_zone(corpus))
    dmarc = auth.dmarc
    assert (dmarc.result, dmarc.policy, dmarc.from_domain) == (result, policy, from_domain), dmarc


def test_multiple_from_domains_record_the_reason(corpus: Path) -> None:
    auth = _evaluate((corpus / "test.message_multi").read_bytes(), _authheaders_zone(corpus))
    assert "multiple From domains: example.org, example.com" in auth.dmarc.reason


def test_signed_authheaders_message_renders_a_dmarc_pass_header(corpus: Path) -> None:
    auth = _evaluate((corpus / "test.message_signed").read_bytes(), _authheaders_zone(corpus))
    header = auth.header("mx.litemx.test")
    assert header.startswith("Authentication-Results: mx.litemx.test; spf=none")
    assert "dkim=pass header.d=example.com header.i=@example.com" in header
    assert "dmarc=pass (p=reject dis=none) header.from=example.com policy.dmarc=reject" in header


# --- our own cases, on unit inputs ---------------------------------------------------------------


def _spf(result: str = "none", domain: str = "example.com") -> SpfResult:
    return SpfResult(result, domain, "mailfrom", CLIENT)  # type: ignore[arg-type]


def _sig(domain: str, result: str = "pass") -> DkimResult:
    return DkimResult(result, domain=domain, selector="s1", algorithm="rsa-sha256")  # type: ignore[arg-type]


def _author(*addresses: str) -> FromHeader:
    return from_values([", ".join(addresses)])


def _zone(record: str, at: str = "example.com") -> FakeResolver:
    return FakeResolver().add(f"_dmarc.{at}", "TXT", record)


def test_aligned_dkim_pass_is_dmarc_pass() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf("fail"), [_sig("example.com")], _zone("v=DMARC1; p=reject"))
    assert (verdict.result, verdict.dkim_aligned, verdict.spf_aligned) == ("pass", True, False)
    assert verdict.disposition == "none"


def test_aligned_spf_pass_is_dmarc_pass() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf("pass", "bounce.example.com"), [], _zone("v=DMARC1; p=reject"))
    assert (verdict.result, verdict.spf_aligned) == ("pass", True)


def test_strict_spf_alignment_needs_the_exact_domain() -> None:
    verdict = check_dmarc(
        _author("a@example.com"), _spf("pass", "bounce.example.com"), [], _zone("v=DMARC1; p=reject; aspf=s")
    )
    assert (verdict.result, verdict.aspf, verdict.disposition) == ("fail", "s", "reject")


def test_strict_dkim_alignment_needs_the_exact_domain() -> None:
    zone = _zone("v=DMARC1; p=quarantine; adkim=s")
    assert check_dmarc(_author("a@example.com"), _spf(), [_sig("mail.example.com")], zone).result == "fail"
    assert check_dmarc(_author("a@example.com"), _spf(), [_sig("example.com")], zone).result == "pass"


def test_relaxed_alignment_uses_the_organizational_domain() -> None:
    verdict = check_dmarc(_author("a@news.example.co.uk"), _spf(), [_sig("mail.example.co.uk")],
                          _zone("v=DMARC1; p=reject", at="example.co.uk"))
    assert (verdict.result, verdict.org_domain) == ("pass", "example.co.uk")


def test_signature_from_an_unrelated_domain_does_not_align() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf("pass", "other.example"), [_sig("other.example")],
                          _zone("v=DMARC1; p=reject"))
    assert (verdict.result, verdict.policy) == ("fail", "reject")


def test_subdomain_falls_back_to_the_org_record_and_uses_sp() -> None:
    verdict = check_dmarc(_author("a@mail.example.com"), _spf(), [], _zone("v=DMARC1; p=none; sp=quarantine"))
    assert (verdict.result, verdict.record_domain, verdict.policy) == ("fail", "example.com", "quarantine")


def test_subdomain_without_sp_inherits_p() -> None:
    verdict = check_dmarc(_author("a@mail.example.com"), _spf(), [], _zone("v=DMARC1; p=reject"))
    assert verdict.policy == "reject"


def test_record_at_the_author_subdomain_wins_over_the_org_record() -> None:
    fake = _zone("v=DMARC1; p=reject").add("_dmarc.mail.example.com", "TXT", "v=DMARC1; p=none")
    verdict = check_dmarc(_author("a@mail.example.com"), _spf(), [], fake)
    assert (verdict.record_domain, verdict.policy) == ("mail.example.com", "none")


def test_np_applies_only_to_non_existent_subdomains() -> None:
    fake = _zone("v=DMARC1; p=none; sp=quarantine; np=reject").add("real.example.com", "MX", (10, "mx.example.com"))
    assert check_dmarc(_author("a@ghost.example.com"), _spf(), [], fake).policy == "reject"
    assert check_dmarc(_author("a@real.example.com"), _spf(), [], fake).policy == "quarantine"


def test_no_record_anywhere_is_none() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf(), [], FakeResolver())
    assert (verdict.result, verdict.reason) == ("none", "no DMARC record")


def test_non_dmarc_txt_records_are_ignored() -> None:
    fake = _zone("v=spf1 -all").add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    assert check_dmarc(_author("a@example.com"), _spf(), [], fake).policy == "reject"


def test_two_dmarc_records_stop_discovery() -> None:
    fake = _zone("v=DMARC1; p=reject").add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    verdict = check_dmarc(_author("a@example.com"), _spf(), [], fake)
    assert (verdict.result, verdict.reason) == ("none", "multiple DMARC records at example.com")


def test_record_without_p_but_with_rua_acts_as_p_none() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf(), [], _zone("v=DMARC1; rua=mailto:r@example.com"))
    assert (verdict.result, verdict.policy) == ("fail", "none")


def test_pct_zero_downgrades_reject_to_quarantine() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf(), [], _zone("v=DMARC1; p=reject; pct=0"), sample=42)
    assert (verdict.policy, verdict.disposition, verdict.pct) == ("reject", "quarantine", 0)


def test_pct_samples_by_the_given_value() -> None:
    zone = _zone("v=DMARC1; p=reject; pct=50")
    assert check_dmarc(_author("a@example.com"), _spf(), [], zone, sample=49).disposition == "reject"
    assert check_dmarc(_author("a@example.com"), _spf(), [], zone, sample=50).disposition == "quarantine"


def test_dns_timeout_on_the_policy_lookup_is_temperror() -> None:
    fake = FakeResolver().time_out("_dmarc.example.com", "TXT")
    verdict = check_dmarc(_author("a@example.com"), _spf(), [], fake)
    assert verdict.result == "temperror"


def test_dns_timeout_on_the_aligned_dkim_key_is_temperror_not_fail() -> None:
    verdict = check_dmarc(_author("a@example.com"), _spf(), [_sig("example.com", "temperror")],
                          _zone("v=DMARC1; p=reject"))
    assert verdict.result == "temperror"


def test_dns_timeout_on_the_np_existence_check_is_temperror() -> None:
    fake = _zone("v=DMARC1; p=none; np=reject").time_out("ghost.example.com", "A")
    assert check_dmarc(_author("a@ghost.example.com"), _spf(), [], fake).result == "temperror"


def test_multiple_from_fields_apply_the_strictest_failing_policy() -> None:
    raw = b"From: a@example.org\r\nFrom: b@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    fake = _zone("v=DMARC1; p=none", at="example.org").add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    verdict = check_dmarc(parse_from(raw), _spf(), [_sig("example.org")], fake)
    assert (verdict.result, verdict.from_domain, verdict.policy) == ("fail", "example.com", "reject")
    assert verdict.reason.startswith("multiple From domains: example.org, example.com")


def test_missing_from_is_permerror_with_the_reason() -> None:
    verdict = check_dmarc(parse_from(b"Subject: x\r\n\r\nbody\r\n"), _spf(), [], FakeResolver())
    assert (verdict.result, verdict.reason) == ("permerror", "no From header field")


def test_syntax_error_in_the_record_is_permerror() -> None:
    with pytest.raises(DmarcSyntaxError):
        parse_record("v=DMARC1; p=none; reject")
    assert check_dmarc(_author("a@example.com"), _spf(), [], _zone("v=DMARC1; p")).result == "permerror"


def test_organizational_domain_follows_the_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("Mail.Example.COM.") == "example.com"
    assert organizational_domain("co.uk") == "co.uk"


# --- end to end: evaluate() + signals --------------------------------------------------------------


def _signed_message(corpus: Path, from_domain: str = "example.com") -> bytes:
    message = (
        f"From: Alice <alice@{from_domain}>\r\nTo: team@litemx.test\r\nSubject: hello\r\n"
        "Message-ID: <1@example.com>\r\n\r\nHello there.\r\n"
    ).encode()
    return dkim.sign(message, b"test", b"example.com", (corpus / "test.private").read_bytes()) + message


def test_p_reject_failure_quarantines_the_message(corpus: Path) -> None:
    raw = _signed_message(corpus).replace(b"Hello there.", b"Send the invoice.")  # breaks the body hash
    auth = _evaluate(raw, _authheaders_zone(corpus))
    report = assess(parse_from(raw), "litemx.test", "Send the invoice.", auth)
    assert auth.dmarc.result == "fail"
    assert report.quarantine is True
    assert "dmarc_fail" in {signal.code for signal in report.signals}


def test_aligned_spf_pass_end_to_end_passes_without_dkim(corpus: Path) -> None:
    fake = _authheaders_zone(corpus).add("example.com", "TXT", f"v=spf1 ip4:{CLIENT} -all")
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    auth = _evaluate(raw, fake, mail_from="bounce@example.com")
    assert (auth.spf.result, auth.dmarc.result, auth.dmarc.spf_aligned) == ("pass", "pass", True)


def test_dns_failure_everywhere_is_temperror_not_fail(corpus: Path) -> None:
    raw = _signed_message(corpus)
    fake = FakeResolver(timeouts={"example.com", "_dmarc.example.com", "test._domainkey.example.com"})
    auth = _evaluate(raw, fake, mail_from="bounce@example.com")
    results = (auth.spf.result, auth.dkim[0].result, auth.dmarc.result)
    assert results == ("temperror", "temperror", "temperror")
    assert auth.errors == ()


def test_malformed_message_never_raises_and_stores_as_json(corpus: Path) -> None:
    auth = _evaluate(b"\x00\xff not a message \r\n\r\n", _authheaders_zone(corpus))
    data = auth.to_dict()
    assert data["dmarc"]["result"] == "permerror"
    assert data["dkim"] == []
    assert data["arc"]["result"] == "none"
    assert data["evaluated_at"] == NOW.isoformat()


def test_an_internal_bug_in_one_stage_is_recorded_and_the_others_still_run(corpus: Path) -> None:
    class Broken(FakeResolver):
        def txt(self, name: str) -> list[str]:
            if name.startswith("_dmarc."):
                return super().txt(name)
            raise RuntimeError("resolver bug")

    fake = Broken().add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    auth = _evaluate(_signed_message(corpus), fake, mail_from="bounce@example.com")
    assert auth.errors == ("spf: RuntimeError", "dkim: RuntimeError")
    assert (auth.spf.result, auth.dkim[0].result) == ("temperror", "permerror")
    # The stand-in SPF verdict is temperror for an aligned domain, so DMARC cannot fail finally.
    assert (auth.dmarc.result, auth.dmarc.policy) == ("temperror", "reject")


def test_internationalised_author_domain_is_looked_up_as_an_a_label() -> None:
    fake = _zone("v=DMARC1; p=reject", at="xn--bcher-kva.example")
    verdict = check_dmarc(_author("a@bücher.example"), _spf(), [], fake)
    assert (verdict.from_domain, verdict.policy) == ("xn--bcher-kva.example", "reject")
