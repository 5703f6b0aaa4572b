"""The openspf RFC 7208 (and RFC 4408) test suites, run through litemx's SPF over the fake resolver.

The YAML files come from the pyspf 2.0.14 sdist. Each document is a scenario: `zonedata` (name ->
list of records, or the bare word TIMEOUT) and `tests` (host, mailfrom, helo, allowed results and
sometimes the expected explanation). We translate the zone the way the suite's own driver
(pyspf's test/testspf.py) does and assert our verdict is one of the allowed results.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from litemx.mailauth.spf import check_spf
from tests.support.corpora import sdist
from tests.support.fake_resolver import FakeResolver

_TYPES = ("TXT", "MX", "A", "AAAA", "PTR")

# Cases that cannot pass, each with its reason. Empty today: every case of both suites passes.
EXPECTED_FAILURES: dict[str, str] = {}


@cache
def _suite(name: str) -> list[dict[str, Any]]:
    path = sdist("pyspf", "2.0.14") / "test" / name
    with path.open("rb") as handle:
        return list(yaml.safe_load_all(handle))


def _cases(name: str) -> list[Any]:
    params = []
    for scenario in _suite(name):
        for case_id, case in scenario["tests"].items():
            marks = _marks(f"{name}:{case_id}")
            params.append(pytest.param(scenario["zonedata"], case, id=f"{name}:{case_id}", marks=marks))
    return params


def _marks(case_id: str) -> list[pytest.MarkDecorator]:
    reason = EXPECTED_FAILURES.get(case_id)
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


def _fake_zone(zonedata: dict[str, list[Any]]) -> FakeResolver:
    fake = FakeResolver()
    for name, records in zonedata.items():
        _load_name(fake, name, records)
    return fake


def _load_name(fake: FakeResolver, name: str, records: list[Any]) -> None:
    typed = [entry for entry in records if isinstance(entry, dict)]
    for entry in typed:
        for rtype, value in entry.items():
            _load_record(fake, name, rtype, value)
    # testspf.py: type SPF records double as TXT when the name lists no TXT record at all
    # (RFC 4408 era zones); type 99 itself is never queried (RFC 7208 §3.1).
    if not any("TXT" in entry for entry in typed):
        for entry in typed:
            if "SPF" in entry and entry["SPF"] != "NONE":
                _load_record(fake, name, "TXT", entry["SPF"])
    if "TIMEOUT" in records:
        # The suite's bare TIMEOUT: every type without data at this name times out.
        for rtype in _TYPES:
            if (name.lower(), rtype) not in fake.zone:
                fake.time_out(name, rtype)


def _load_record(fake: FakeResolver, name: str, rtype: str, value: Any) -> None:
    if value == "TIMEOUT":
        fake.time_out(name, rtype)
    elif rtype in ("TXT", "SPF"):
        if value != "NONE" and rtype == "TXT":
            # One record, possibly split into character-strings (RFC 7208 §3.3 joins them).
            fake.add(name, "TXT", "".join(value) if isinstance(value, list) else value)
    elif rtype == "MX":
        fake.add(name, "MX", (int(value[0]), value[1]))
    else:
        fake.add(name, rtype, value)


def _check(zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    fake = _fake_zone(zonedata)
    verdict = check_spf(
        fake, client_ip=case["host"], mail_from=case["mailfrom"], helo=case["helo"],
        default_explanation="DEFAULT",
    )
    allowed = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert verdict.result in allowed, f"{case.get('spec')}: {verdict}"
    if "explanation" in case:
        assert verdict.explanation == case["explanation"]


@pytest.mark.parametrize(("zonedata", "case"), _cases("rfc7208-tests.yml"))
def test_rfc7208_case_gets_an_allowed_result(zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    _check(zonedata, case)


@pytest.mark.parametrize(("zonedata", "case"), _cases("rfc4408-tests.yml"))
def test_rfc4408_case_gets_an_allowed_result(zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    _check(zonedata, case)


def test_suite_files_hold_the_documented_number_of_cases() -> None:
    assert sum(len(s["tests"]) for s in _suite("rfc7208-tests.yml")) == 203
    assert sum(len(s["tests"]) for s in _suite("rfc4408-tests.yml")) == 191


def test_lookups_only_reach_the_injected_resolver() -> None:
    fake = FakeResolver().add("example.org", "TXT", "v=spf1 a:mail.example.org -all")
    fake.add("mail.example.org", "A", "192.0.2.7")
    verdict = check_spf(fake, client_ip="192.0.2.7", mail_from="a@example.org", helo="h.example")
    assert verdict.result == "pass"
    assert fake.queries == [("example.org", "TXT"), ("mail.example.org", "A")]


def test_dns_timeout_is_temperror() -> None:
    fake = FakeResolver(timeouts={"example.org"})
    verdict = check_spf(fake, client_ip="192.0.2.7", mail_from="a@example.org", helo="h.example")
    assert verdict.result == "temperror"


def test_null_sender_checks_the_helo_identity() -> None:
    fake = FakeResolver().add("mx.example.org", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    verdict = check_spf(fake, client_ip="192.0.2.9", mail_from="", helo="mx.example.org")
    assert (verdict.result, verdict.scope, verdict.domain) == ("pass", "helo", "mx.example.org")


def test_invalid_client_address_is_permerror_not_a_crash() -> None:
    verdict = check_spf(FakeResolver(), client_ip="not-an-ip", mail_from="a@b.example", helo="x")
    assert verdict.result == "permerror"


def test_unbound_hook_fails_closed_instead_of_using_dnspython() -> None:
    import spf as pyspf

    check_spf(FakeResolver(), client_ip="192.0.2.1", mail_from="a@b.example", helo="x")
    with pytest.raises(pyspf.TempError):
        pyspf.DNSLookup("example.org", "TXT")


def test_corpus_path_exists() -> None:
    assert Path(sdist("pyspf", "2.0.14") / "test" / "rfc7208-tests.yml").is_file()


def test_concurrent_checks_on_two_threads_each_use_their_own_resolver() -> None:
    barrier = threading.Barrier(2, timeout=10)

    class Rendezvous(FakeResolver):
        def txt(self, name: str) -> list[str]:
            barrier.wait()  # both checks are inside pyspf at the same time
            return super().txt(name)

    allow = Rendezvous().add("example.org", "TXT", "v=spf1 +all")
    deny = Rendezvous().add("example.org", "TXT", "v=spf1 -all")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(check_spf, fake, client_ip="192.0.2.1", mail_from="a@example.org", helo="h")
                   for fake in (allow, deny)]
        results = [future.result(timeout=10).result for future in futures]
    assert results == ["pass", "fail"]


def test_message_without_an_smtp_client_address_is_none() -> None:
    verdict = check_spf(FakeResolver(), client_ip="", mail_from="a@example.org", helo="")
    assert (verdict.result, verdict.explanation) == ("none", "no SMTP client address")
