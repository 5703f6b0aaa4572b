"""Domains and DNS (SPEC §4): DKIM keys per domain, the plan, live checks against a real
loopback DNS server, readiness, rotation, the background re-check — response, database and
audit together, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import LargeBinary, select

from litemx.adapters.dns_resolver import DnsResolver, dkimpy_dnsfunc
from litemx.adapters.http.app import create_app
from litemx.app import Services, build_services
from litemx.core.dkimkeys import dkimpy_private_key, public_key_b64_from_pem
from litemx.errors import InvalidRequest
from litemx.settings import Settings
from litemx.storage.schema import dkim_keys, domains, metadata
from litemx.workers import DnsRecheckWorker
from tests.support.api import Api, assert_error, audit_since, last_audit_id, snapshot
from tests.support.dns_server import LoopbackDnsServer

DOMAIN = "acme.example"
MX_HOST = "mx.litemx.test"  # conftest's settings.hostname
MESSAGE = (b"From: Support <support@acme.example>\r\nTo: someone@elsewhere.example\r\n"
           b"Subject: DKIM through the plan\r\nMessage-ID: <m1@acme.example>\r\n\r\nHello there.\r\n")


@pytest.fixture
def api(client: TestClient, tenant: Any) -> Api:
    founder = Api(client, tenant.token)
    founder.domain(DOMAIN)
    return founder


def plan(api: Api, domain: str = DOMAIN, **params: str) -> dict[str, Any]:
    return api.ok("GET", f"/api/domains/{domain}/dns-plan", params=params)


def status(api: Api, domain: str = DOMAIN) -> dict[str, Any]:
    return api.ok("GET", f"/api/domains/{domain}/status")


def publish(dns: LoopbackDnsServer, records: list[dict[str, Any]]) -> None:
    """Serve exactly these planned records (grouped per host, as a DNS host would)."""
    by_host: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for r in records:
        value = f"{r['priority']} {r['value']}" if r["type"] == "MX" else r["value"]
        by_host[r["host"]].append((r["type"], value))
    for host, specs in by_host.items():
        dns.set(host, specs)


def by_key(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['type']} {r['host']}": r for r in report["records"]}


def domain_row(services: Services, name: str = DOMAIN) -> dict[str, Any]:
    with services.infra.db.read() as conn:
        return dict(conn.execute(select(domains).where(domains.c.name == name)).one()._mapping)


def key_rows(services: Services) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(dkim_keys).order_by(dkim_keys.c.created_at))]


@pytest.fixture
def outage(dns: LoopbackDnsServer) -> Iterator[Any]:
    """`outage(name)`: SERVFAIL for name during this test only (the DNS server outlives tests
    and its per-test reset clears records, not failures)."""
    names: list[str] = []

    def fail(name: str) -> None:
        names.append(name)
        dns.fail(name)

    yield fail
    for name in names:
        dns.fail(name, False)


@pytest.fixture
def variant(settings: Settings, clock: Any) -> Iterator[Any]:
    """Services over the same database with other settings (Ed25519 on, SES outbound)."""
    made: list[Services] = []

    def build(**changes: Any) -> tuple[Services, TestClient]:
        svc = build_services(settings.with_(**changes), clock=clock, migrate=False)
        made.append(svc)
        return svc, TestClient(create_app(svc), raise_server_exceptions=False)

    yield build
    for svc in made:
        svc.close()


# -- keys and the plan ----------------------------------------------------------------------

def test_adding_a_domain_creates_one_active_rsa_key_in_the_same_transaction(api, services):
    [key] = key_rows(services)
    assert (key["algorithm"], key["status"], key["retired_at"]) == ("rsa", "active", None)
    assert key["domain_id"] == domain_row(services)["id"]
    assert key["selector"].startswith("lmx") and key["selector"].endswith("r1")
    [(selector, algorithm, pem)] = services.domains_dns.private_key_for_signing(DOMAIN)
    assert (selector, algorithm) == (key["selector"], "rsa")
    assert public_key_b64_from_pem(pem) == key["public_key_b64"]
    assert "pem=<hidden>" in repr(services.domains_dns.private_key_for_signing(DOMAIN))


def test_a_refused_domain_leaves_no_keys_behind(api, services):
    assert_error(api.call("POST", "/api/domains", {"name": DOMAIN}), 409, "conflict")
    assert len(key_rows(services)) == 1


def test_the_dns_plan_lists_every_record_with_its_purpose(api, services):
    since = last_audit_id(services)
    body = plan(api)
    [key] = key_rows(services)
    assert body["domain"] == DOMAIN and "zone" not in body
    assert [(r["purpose"], r["type"], r["host"]) for r in body["records"]] == [
        ("inbound", "MX", DOMAIN), ("spf", "TXT", DOMAIN), ("dkim", "TXT", f"{key['selector']}._domainkey.{DOMAIN}"),
        ("dmarc", "TXT", f"_dmarc.{DOMAIN}"), ("mail_from", "MX", f"bounce.{DOMAIN}"),
        ("mail_from", "TXT", f"bounce.{DOMAIN}")]
    records = {(r["purpose"], r["type"]): r for r in body["records"]}
    assert records["inbound", "MX"] == {"type": "MX", "host": DOMAIN, "value": MX_HOST, "purpose": "inbound",
                                        "ttl": 3600, "priority": 10, "selector": None}
    assert records["spf", "TXT"]["value"] == f"v=spf1 a:{MX_HOST} ~all"
    assert records["dkim", "TXT"]["value"] == f"v=DKIM1; k=rsa; p={key['public_key_b64']}"
    assert records["dkim", "TXT"]["selector"] == key["selector"]
    assert records["dmarc", "TXT"]["value"] == "v=DMARC1; p=none"
    assert records["mail_from", "MX"]["value"] == MX_HOST
    assert records["mail_from", "TXT"]["value"] == f"v=spf1 a:{MX_HOST} ~all"
    [event] = audit_since(services, since)
    assert (event["action"], event["resource_type"], event["resource_id"], event["outcome"], event["details"]) == (
        "domain.dns_plan", "domain", DOMAIN, "ok", {"format": "json", "records": 6})


def test_the_zone_format_is_a_bind_snippet_beside_the_records(api):
    body = plan(api, format="zone")
    assert len(body["records"]) == 6
    lines = body["zone"].splitlines()
    assert lines[0] == f"; LiteMX records for {DOMAIN}"
    assert f"{DOMAIN}.\t3600\tIN\tMX\t10 {MX_HOST}." in lines
    assert f'_dmarc.{DOMAIN}.\t3600\tIN\tTXT\t"v=DMARC1; p=none"' in lines


def test_an_unknown_plan_format_is_refused_naming_format(api, services):
    since = last_audit_id(services)
    error = assert_error(api.call("GET", f"/api/domains/{DOMAIN}/dns-plan", params={"format": "xml"}),
                         422, "invalid_request")
    assert error["details"]["field"] == "format"
    [event] = audit_since(services, since)
    assert (event["action"], event["outcome"]) == ("domain.dns_plan", "error")


def test_with_ses_outbound_spf_authorises_amazonses(api, variant):
    _, ses_client = variant(outbound="ses")
    body = Api(ses_client, api.secret).ok("GET", f"/api/domains/{DOMAIN}/dns-plan")
    spf = [r["value"] for r in body["records"] if r["type"] == "TXT" and r["purpose"] in ("spf", "mail_from")]
    assert spf == ["v=spf1 include:amazonses.com ~all"] * 2


def test_the_ed25519_setting_adds_an_ed25519_key_published_beside_the_rsa_key(tenant, variant, services):
    ed_services, ed_client = variant(dkim_ed25519=True)
    ed_api = Api(ed_client, tenant.token)
    ed_api.domain(DOMAIN)
    dkim_records = [r for r in plan(ed_api)["records"] if r["purpose"] == "dkim"]
    assert [r["value"].split(";")[1].strip() for r in dkim_records] == ["k=rsa", "k=ed25519"]
    signing = ed_services.domains_dns.private_key_for_signing(DOMAIN)
    assert [k.algorithm for k in signing] == ["rsa", "ed25519"]
    assert [k.selector for k in signing] == [r["selector"] for r in dkim_records]


# -- signatures verify against the published plan ----------------------------------------

def sign(key: Any, domain: str = DOMAIN) -> bytes:
    algorithm = b"ed25519-sha256" if key.algorithm == "ed25519" else b"rsa-sha256"
    return dkim.sign(MESSAGE, key.selector.encode(), domain.encode(), dkimpy_private_key(key.pem),
                     signature_algorithm=algorithm, include_headers=[b"from", b"to", b"subject"])


def verifies(signature: bytes, dns: LoopbackDnsServer) -> bool:
    return bool(dkim.verify(signature + MESSAGE, dnsfunc=dkimpy_dnsfunc(DnsResolver([dns.address]))))


@pytest.mark.parametrize("ed25519", [False, True], ids=["rsa", "rsa+ed25519"])
def test_mail_signed_with_the_domains_keys_verifies_against_the_published_plan(tenant, variant, dns, ed25519):
    svc, http = variant(dkim_ed25519=ed25519)
    founder = Api(http, tenant.token)
    founder.domain(DOMAIN)
    publish(dns, plan(founder)["records"])
    keys = svc.domains_dns.private_key_for_signing(DOMAIN)
    assert len(keys) == (2 if ed25519 else 1)
    for key in keys:
        assert verifies(sign(key), dns), key.algorithm
        # The same key must not verify for a domain whose record it is not.
        assert not verifies(sign(key, "elsewhere.example"), dns)


def test_after_rotation_both_selectors_are_published_and_both_verify(api, services, dns):
    [old] = services.domains_dns.private_key_for_signing(DOMAIN)
    old_signature = sign(old)  # mail in flight when the key rotates
    rotated = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")
    [new] = services.domains_dns.private_key_for_signing(DOMAIN)
    assert new.selector != old.selector and rotated["created"] == [new.selector]
    records = plan(api)["records"]
    assert [r["selector"] for r in records if r["purpose"] == "dkim"] == [old.selector, new.selector]
    publish(dns, records)
    assert verifies(old_signature, dns)
    assert verifies(sign(new), dns)


# -- live status ----------------------------------------------------------------------------

def test_a_zone_matching_the_plan_is_ok_record_by_record_and_ready(api, services, dns, clock):
    publish(dns, plan(api)["records"])
    since = last_audit_id(services)
    report = status(api)
    assert {r["status"] for r in report["records"]} == {"ok"}
    assert all(r["hint"] is None and r["found"] for r in report["records"])
    mx = by_key(report)[f"MX {DOMAIN}"]
    assert (mx["expected"], mx["found"], mx["value"]) == (f"10 {MX_HOST}", [f"10 {MX_HOST}"], MX_HOST)
    assert report["readiness"] == {"inbound_ready": True, "outbound_ready": True, "provider_approved": False}
    assert report["checked_at"] == clock.now().isoformat().replace("+00:00", "Z")
    row = domain_row(services)
    assert (row["inbound_ready"], row["outbound_ready"], row["last_checked_at"]) == (True, True, clock.now())
    assert set(row["dns_status"].values()) == {"ok"} and len(row["dns_status"]) == 6
    [event] = audit_since(services, since)
    assert (event["action"], event["resource_id"], event["outcome"]) == ("domain.status", DOMAIN, "ok")
    assert event["details"] == {"inbound_ready": True, "outbound_ready": True, "changes": []}
    # The domain list shows the stored readiness.
    [listed] = api.ok("GET", "/api/domains")["items"]
    assert listed["readiness"]["outbound_ready"] is True


def test_removed_records_are_missing_and_readiness_flips_back(api, services, dns):
    records = plan(api)["records"]
    publish(dns, records)
    assert status(api)["readiness"]["inbound_ready"] is True
    dns.remove(DOMAIN, "MX")
    dns.remove(f"_dmarc.{DOMAIN}")
    report = status(api)
    checks = by_key(report)
    assert checks[f"MX {DOMAIN}"]["status"] == "missing"
    assert checks[f"MX {DOMAIN}"]["hint"] == f"add an MX record at {DOMAIN} pointing to {MX_HOST} (priority 10)"
    assert checks[f"TXT _dmarc.{DOMAIN}"]["status"] == "missing"
    assert checks[f"TXT {DOMAIN}"]["status"] == "ok"  # the SPF TXT beside the removed MX stays
    assert report["readiness"] == {"inbound_ready": False, "outbound_ready": False, "provider_approved": False}
    row = domain_row(services)
    assert (row["inbound_ready"], row["outbound_ready"]) == (False, False)
    [event] = api.audit(action="domain.status")[:1]  # newest first
    assert {(c["record"], c["from"], c["to"]) for c in event["details"]["changes"]} == {
        (f"MX {DOMAIN}", "ok", "missing"), (f"TXT _dmarc.{DOMAIN}", "ok", "missing")}


def test_wrong_values_are_mismatches_with_hints(api, dns):
    records = plan(api)["records"]
    publish(dns, records)
    [dkim_record] = [r for r in records if r["purpose"] == "dkim"]
    dns.set(DOMAIN, [("MX", "10 mail.other-host.example"), ("TXT", "v=spf1 include:_spf.other.example -all")])
    dns.set(dkim_record["host"], [("TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong")])
    report = status(api)
    checks = by_key(report)
    mx, spf, key = checks[f"MX {DOMAIN}"], checks[f"TXT {DOMAIN}"], checks[f"TXT {dkim_record['host']}"]
    assert (mx["status"], mx["found"]) == ("mismatch", ["10 mail.other-host.example"])
    assert "mail.other-host.example" in mx["hint"] and MX_HOST in mx["hint"]
    assert spf["status"] == "mismatch" and f"add a:{MX_HOST}" in spf["hint"]
    assert key["status"] == "mismatch" and "not LiteMX's key" in key["hint"]
    assert checks[f"TXT _dmarc.{DOMAIN}"]["status"] == "ok"
    assert report["readiness"]["inbound_ready"] is False and report["readiness"]["outbound_ready"] is False


def test_a_dns_outage_answers_503_and_changes_nothing(api, services, dns, outage):
    publish(dns, plan(api)["records"])
    status(api)
    outage(f"_dmarc.{DOMAIN}")
    before, since = snapshot(services), last_audit_id(services)
    error = assert_error(api.call("GET", f"/api/domains/{DOMAIN}/status"), 503, "unavailable")
    assert f"_dmarc.{DOMAIN}" in error["message"]
    assert snapshot(services) == before
    [event] = audit_since(services, since)
    assert (event["action"], event["outcome"], event["details"]["code"]) == ("domain.status", "error", "unavailable")


def test_a_retiring_key_missing_from_dns_does_not_block_sending(api, services, dns):
    old_records = plan(api)["records"]
    api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")
    assert domain_row(services)["outbound_ready"] is False  # the new selector is not verified yet
    new_records = plan(api)["records"]
    publish(dns, [r for r in new_records if r not in old_records or r["purpose"] != "dkim"])
    report = status(api)
    retiring = by_key(report)[f"TXT {old_records[2]['host']}"]
    assert retiring["status"] == "missing" and "retiring key" in retiring["warnings"][0]
    assert report["readiness"]["outbound_ready"] is True


# -- rotation -------------------------------------------------------------------------------

def test_rotation_lifecycle_active_retiring_retired(api, services, clock):
    [first] = key_rows(services)
    since = last_audit_id(services)
    one = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")
    second_selector = one["created"][0]
    assert (one["retiring"], one["retired"]) == ([first["selector"]], [])
    assert [(k["selector"], k["status"]) for k in one["keys"]] == [
        (first["selector"], "retiring"), (second_selector, "active")]
    assert [r["selector"] for r in one["records"]] == [first["selector"], second_selector]
    [event] = audit_since(services, since)
    assert (event["action"], event["resource_id"], event["details"]) == (
        "domain.dkim_rotate", DOMAIN, {"created": [second_selector], "retiring": [first["selector"]], "retired": []})

    clock.advance(days=7)
    two = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")
    third_selector = two["created"][0]
    assert (two["retiring"], two["retired"]) == ([second_selector], [first["selector"]])
    assert len({first["selector"], second_selector, third_selector}) == 3
    statuses = {k["selector"]: (k["status"], k["retired_at"]) for k in two["keys"]}
    assert statuses[first["selector"]] == ("retired", clock.now().isoformat().replace("+00:00", "Z"))
    assert [r["selector"] for r in plan(api)["records"] if r["purpose"] == "dkim"] == [second_selector,
                                                                                     third_selector]


def test_retire_ends_a_retiring_keys_grace_period_early(api, services):
    first = key_rows(services)[0]["selector"]
    active = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")["created"][0]
    error = assert_error(api.call("POST", f"/api/domains/{DOMAIN}/dkim/rotate", params={"retire": active}),
                         422, "invalid_request")
    assert error["details"]["field"] == "retire" and "rotate first" in error["message"]
    assert_error(api.call("POST", f"/api/domains/{DOMAIN}/dkim/rotate", params={"retire": "nope"}),
                 422, "invalid_request")
    done = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate", params={"retire": first})
    assert (done["created"], done["retired"]) == ([], [first])
    assert [r["selector"] for r in plan(api)["records"] if r["purpose"] == "dkim"] == [active]
    assert [k.selector for k in services.domains_dns.private_key_for_signing(DOMAIN)] == [active]


def test_rotation_needs_domains_write_and_a_token_for_every_mailbox(api, services):
    api.mailbox(f"support@{DOMAIN}")
    _, reader = api.token(["domains:read"])
    error = assert_error(api.call("POST", f"/api/domains/{DOMAIN}/dkim/rotate", secret=reader), 403, "forbidden")
    assert error["details"]["missing_scope"] == "domains:write"
    _, narrow = api.token(["domains:write"], [f"support@{DOMAIN}"])
    error = assert_error(api.call("POST", f"/api/domains/{DOMAIN}/dkim/rotate", secret=narrow), 403, "forbidden")
    assert error["details"]["missing_grant"] == "*"
    assert [k["status"] for k in key_rows(services)] == ["active"]


# -- the DMARC report address (rua=) ----------------------------------------------------------

def dmarc_value(api: Api, domain: str = DOMAIN) -> str:
    [record] = [r for r in plan(api, domain)["records"] if r["purpose"] == "dmarc"]
    return str(record["value"])


def test_a_report_address_given_when_adding_the_domain_is_the_plans_rua(api, services):
    since = last_audit_id(services)
    created = api.ok("POST", "/api/domains", {"name": "rua.example", "dmarc_report": " Reports@RUA.example "})
    assert created["dmarc_report"] == "reports@rua.example"
    assert domain_row(services, "rua.example")["dmarc_rua"] == "reports@rua.example"
    [event] = [e for e in audit_since(services, since) if e["action"] == "domain.create"]
    assert event["details"] == {"dmarc_report": "reports@rua.example"}
    assert dmarc_value(api, "rua.example") == "v=DMARC1; p=none; rua=mailto:reports@rua.example"  # RFC 7489 §6.3
    assert plan(api, "rua.example")["warnings"] == []  # the domain's own address needs no authorisation
    assert api.ok("GET", "/api/domains")["items"][0]["dmarc_report"] is None  # acme.example has none


@pytest.mark.parametrize("bad", ["not-an-address", "dmarc@", "", "jörg@acme.example"])
def test_an_invalid_report_address_is_refused_naming_the_field(api, services, bad):
    before, since = snapshot(services), last_audit_id(services)
    error = assert_error(api.call("POST", "/api/domains", {"name": "rua.example", "dmarc_report": bad}),
                         422, "invalid_request")
    assert error["details"]["field"] == "dmarc_report"
    error = assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": bad}),
                         422, "invalid_request")
    assert error["details"]["field"] == "report_address"
    assert snapshot(services) == before
    assert [(e["action"], e["outcome"]) for e in audit_since(services, since)] == [
        ("domain.create", "error"), ("domain.dmarc", "error")]
    assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": 5}), 422, "invalid_request")
    assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/dmarc", {}), 422, "invalid_request")


def test_setting_and_clearing_the_report_address_changes_the_plan_and_is_audited(api, services, dns):
    publish(dns, plan(api)["records"])
    assert status(api)["readiness"]["outbound_ready"] is True
    since = last_audit_id(services)
    body = api.ok("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": f"DMARC@{DOMAIN}"})
    rua = f"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}"
    assert (body["domain"], body["report_address"], body["warnings"]) == (DOMAIN, f"dmarc@{DOMAIN}", [])
    assert [(r["type"], r["host"], r["value"]) for r in body["records"]] == [("TXT", f"_dmarc.{DOMAIN}", rua)]
    [event] = audit_since(services, since)
    assert (event["action"], event["resource_type"], event["resource_id"], event["outcome"], event["details"]) == (
        "domain.dmarc", "domain", DOMAIN, "ok", {"from": None, "to": f"dmarc@{DOMAIN}"})
    assert dmarc_value(api) == rua

    # The old DMARC record (no rua) still counts, with a warning naming what to add.
    report = status(api)
    check = by_key(report)[f"TXT _dmarc.{DOMAIN}"]
    assert check["status"] == "ok" and report["readiness"]["outbound_ready"] is True
    assert check["warnings"] == [f"aggregate reports are not sent to dmarc@{DOMAIN}: "
                                 f"add rua=mailto:dmarc@{DOMAIN} to receive them"]
    publish(dns, plan(api)["records"])
    assert by_key(status(api))[f"TXT _dmarc.{DOMAIN}"]["warnings"] == []

    since = last_audit_id(services)
    cleared = api.ok("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": None})
    assert cleared["report_address"] is None and cleared["records"][0]["value"] == "v=DMARC1; p=none"
    [event] = audit_since(services, since)
    assert event["details"] == {"from": f"dmarc@{DOMAIN}", "to": None}
    assert dmarc_value(api) == "v=DMARC1; p=none" and domain_row(services)["dmarc_rua"] is None


def test_a_report_address_on_another_domain_names_its_rfc7489_authorisation_record(api, dns):
    auth_host = f"{DOMAIN}._report._dmarc.reports.example"
    body = api.ok("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": "agg@reports.example"})
    [warning] = body["warnings"]
    assert f'TXT {auth_host} "v=DMARC1"' in warning and "RFC 7489 §7.1" in warning
    zone_plan = plan(api, format="zone")
    assert zone_plan["warnings"] == [warning]
    # Not a planned record (it lives in reports.example's zone): a comment in the zone export.
    assert auth_host not in {r["host"] for r in zone_plan["records"]}
    assert f'; {auth_host}.\t3600\tIN\tTXT\t"v=DMARC1"' in zone_plan["zone"].splitlines()

    publish(dns, zone_plan["records"])
    report = status(api)
    dmarc_check = by_key(report)[f"TXT _dmarc.{DOMAIN}"]
    assert dmarc_check["status"] == "ok" and report["readiness"]["outbound_ready"] is True
    assert len(dmarc_check["warnings"]) == 1 and auth_host in dmarc_check["warnings"][0]
    dns.set(auth_host, [("TXT", "v=DMARC1")])
    assert by_key(status(api))[f"TXT _dmarc.{DOMAIN}"]["warnings"] == []

    # A subdomain shares the Organizational Domain: no authorisation needed.
    assert api.ok("PUT", f"/api/domains/{DOMAIN}/dmarc",
                  {"report_address": f"agg@reports.{DOMAIN}"})["warnings"] == []


def test_a_dns_outage_at_the_report_domain_is_a_warning_not_a_503(api, dns, outage):
    api.ok("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": "agg@reports.example"})
    publish(dns, plan(api)["records"])
    outage(f"{DOMAIN}._report._dmarc.reports.example")
    report = status(api)
    [warning] = by_key(report)[f"TXT _dmarc.{DOMAIN}"]["warnings"]
    assert warning.startswith("could not look up") and report["readiness"]["outbound_ready"] is True


def test_setting_the_report_address_needs_domains_write_and_every_mailbox(api, services):
    api.mailbox(f"support@{DOMAIN}")
    _, reader = api.token(["domains:read"])
    error = assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": None}, secret=reader),
                         403, "forbidden")
    assert error["details"]["missing_scope"] == "domains:write"
    _, narrow = api.token(["domains:write"], [f"support@{DOMAIN}"])
    error = assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": f"support@{DOMAIN}"},
                                  secret=narrow), 403, "forbidden")
    assert error["details"]["missing_grant"] == "*"
    assert domain_row(services)["dmarc_rua"] is None


# -- scopes, tenancy, readiness --------------------------------------------------------------

@pytest.mark.parametrize("path", ["status", "dns-plan"])
def test_a_token_without_domains_read_is_refused_naming_it(api, services, path):
    token_id, secret = api.token(["mailboxes:read"])
    since = last_audit_id(services)
    error = assert_error(api.call("GET", f"/api/domains/{DOMAIN}/{path}", secret=secret), 403, "forbidden")
    assert error["details"]["missing_scope"] == "domains:read" and "domains:read" in error["message"]
    [event] = audit_since(services, since)
    assert (event["outcome"], event["actor_id"]) == ("denied", token_id)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "status", None), ("GET", "dns-plan", None), ("PUT", "readiness", {"provider_approved": True}),
    ("POST", "dkim/rotate", None)])
def test_another_accounts_domain_is_not_found(api, other_tenant, client, services, method, path, body):
    other = Api(client, other_tenant.token)
    before = snapshot(services)
    missing = assert_error(other.call(method, f"/api/domains/ghost.example/{path}", body), 404, "not_found")
    foreign = assert_error(other.call(method, f"/api/domains/{DOMAIN}/{path}", body), 404, "not_found")
    assert foreign["message"] == missing["message"].replace("ghost.example", DOMAIN)
    assert snapshot(services) == before


def test_only_the_admin_token_sets_provider_approved(api, services):
    _, writer = api.token(["domains:write", "domains:read"])
    error = assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/readiness", {"provider_approved": True},
                                  secret=writer), 403, "forbidden")
    assert error["details"]["missing_scope"] == "admin"
    assert domain_row(services)["provider_approved"] is False
    since = last_audit_id(services)
    body = api.ok("PUT", f"/api/domains/{DOMAIN}/readiness", {"provider_approved": True})
    assert body["readiness"] == {"inbound_ready": False, "outbound_ready": False, "provider_approved": True}
    assert domain_row(services)["provider_approved"] is True
    [event] = audit_since(services, since)
    assert (event["action"], event["details"]) == ("domain.readiness", {"from": False, "to": True})
    assert status(api)["readiness"]["provider_approved"] is True  # a check keeps the operator's word
    assert_error(api.call("PUT", f"/api/domains/{DOMAIN}/readiness", {"provider_approved": "yes"}),
                 422, "invalid_request")


# -- secrets never leave ----------------------------------------------------------------------

def all_text_columns(services: Services) -> str:
    """Every non-binary column of every table, as text."""
    out: list[str] = []
    with services.infra.db.read() as conn:
        for table in metadata.sorted_tables:
            cols = [c for c in table.columns if not isinstance(c.type, LargeBinary)]
            out.extend(str(v) for row in conn.execute(select(*cols)) for v in row)
    return "\n".join(out)


def test_no_route_audit_row_or_log_line_carries_a_private_key(api, services, dns, caplog):
    caplog.set_level(logging.DEBUG)
    publish(dns, plan(api)["records"])
    responses = [api.call("GET", f"/api/domains/{DOMAIN}/dns-plan", params={"format": "zone"}),
                 api.call("GET", f"/api/domains/{DOMAIN}/status"),
                 api.call("POST", f"/api/domains/{DOMAIN}/dkim/rotate"),
                 api.call("GET", "/api/audit"), api.call("GET", "/api/domains"), api.call("GET", "/api/bootstrap")]
    services.domains_dns.recheck_all()
    sealed = [bytes(k["private_key_sealed"]) for k in key_rows(services)]
    pems = [k.pem for k in services.domains_dns.private_key_for_signing(DOMAIN)]
    secrets = ["PRIVATE KEY", *(f(s) for s in sealed for f in (bytes.hex, lambda b: base64.b64encode(b).decode()))]
    secrets += [line.decode() for pem in pems for line in pem.splitlines()[1:3]]  # PEM body lines
    haystacks = {"responses": "\n".join(r.text for r in responses), "database": all_text_columns(services),
                 "logs": caplog.text}
    for where, text in haystacks.items():
        assert not [s for s in secrets if s in text], where
    assert all(s.startswith(b"lmx1") and b"PRIVATE KEY" not in s for s in sealed)  # sealed, not stored plain


# -- the background re-check -----------------------------------------------------------------

def test_recheck_writes_one_dns_changed_event_per_change_and_none_otherwise(api, services, dns, clock):
    publish(dns, plan(api)["records"])
    assert services.domains_dns.recheck_all() == {"checked": 1, "changed": 0, "unavailable": 0}  # the baseline
    since = last_audit_id(services)
    clock.advance(hours=1)
    dns.set(f"_dmarc.{DOMAIN}", [("TXT", "v=DMARC1; p=bogus")])
    assert services.domains_dns.recheck_all()["changed"] == 1
    [event] = audit_since(services, since)
    assert (event["action"], event["actor_type"], event["actor_id"], event["interface"], event["outcome"]) == (
        "domain.dns_changed", "system", None, "system", "ok")
    assert (event["account_id"], event["resource_id"]) == (api.me()["account"]["id"], DOMAIN)
    assert event["details"]["changes"] == [{"record": f"TXT _dmarc.{DOMAIN}", "from": "ok", "to": "mismatch"}]
    assert event["details"]["outbound_ready"] is False
    assert domain_row(services)["outbound_ready"] is False
    assert domain_row(services)["last_checked_at"] == clock.now()

    since = last_audit_id(services)
    clock.advance(hours=1)
    assert services.domains_dns.recheck_all()["changed"] == 0
    assert audit_since(services, since) == []


def test_recheck_skips_a_domain_dns_cannot_answer_for(api, services, dns, outage):
    publish(dns, plan(api)["records"])
    services.domains_dns.recheck_all()
    outage(DOMAIN)
    before, since = snapshot(services), last_audit_id(services)
    assert services.domains_dns.recheck_all() == {"checked": 0, "changed": 0, "unavailable": 1}
    assert snapshot(services) == before and audit_since(services, since) == []


def test_the_recheck_worker_runs_a_pass_and_can_be_turned_off(api, services, dns):
    publish(dns, plan(api)["records"])

    async def scenario() -> tuple[Any, None]:
        summary = await DnsRecheckWorker(services, interval_seconds=3600).run_once()
        off = await asyncio.wait_for(DnsRecheckWorker(services, interval_seconds=0).run(), 5)
        return summary, off

    summary, off = asyncio.run(scenario())
    assert summary == {"checked": 1, "changed": 0, "unavailable": 0} and off is None
    assert domain_row(services)["inbound_ready"] is True



def test_two_nodes_share_one_recheck_schedule(api, services, dns):
    publish(dns, plan(api)["records"])

    async def scenario() -> list[Any]:
        first = DnsRecheckWorker(services, interval_seconds=3600, holder="node-a")
        second = DnsRecheckWorker(services, interval_seconds=3600, holder="node-b")
        return [await first.run_once(), await second.run_once(), await first.run_once()]

    ran = asyncio.run(scenario())
    assert ran[0] == {"checked": 1, "changed": 0, "unavailable": 0}
    assert ran[1:] == [None, None]  # the pass is done for this interval, whichever node asks

# -- settings -------------------------------------------------------------------------------

def test_the_new_settings_come_from_the_environment():
    loaded = Settings.load({"LITEMX_DKIM_ED25519": "1", "LITEMX_DNS_RECHECK_SECONDS": "60"})
    assert (loaded.dkim_ed25519, loaded.dns_recheck_seconds) == (True, 60)
    assert Settings.load({"LITEMX_DKIM_ED25519": "off"}).dkim_ed25519 is False
    assert (Settings().dkim_ed25519, Settings().dns_recheck_seconds) == (False, 3600)
    with pytest.raises(InvalidRequest):
        Settings.load({"LITEMX_DKIM_ED25519": "maybe"})
