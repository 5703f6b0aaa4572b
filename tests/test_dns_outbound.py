"""The DNS plan and the outbound path meet (issue 5 "Done when"): a domain added through the API,
EXACTLY the records of its dns-plan published in the loopback DNS, a live `domains status`, and
then mail sent through the real outbound path (preflight, queue, signer, worker, SMTP to a
smarthost sink on loopback) verifies with dkimpy against that DNS. No DKIM record is built by
hand here: the only key in DNS is the one the plan printed. Also: the preflight follows the
readiness a real DNS check computed, and a rotation verifies with the new selector once its
plan is published."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import dkim
import pytest
from dkim.util import parse_tag_value

from litemx.adapters.dns_resolver import DnsResolver, dkimpy_dnsfunc
from litemx.adapters.outbound import SmtpRelayTransport
from tests.support.api import Api, assert_error
from tests.support.dns_server import LoopbackDnsServer
from tests.support.sending import DOMAIN, MAILBOX, SmtpSink, run_worker
from tests.test_domains_dns import publish

RECIPIENT = "bob@example.net"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(params=[False, True], ids=["rsa", "rsa+ed25519"])
def settings(settings, sink, request):
    # The smarthost comes from the settings, as in production (LITEMX_OUTBOUND=smtp://host:port);
    # with Ed25519 on, mail is dual-signed and the plan publishes both keys (RFC 8463 §3).
    return settings.with_(outbound=f"smtp://127.0.0.1:{sink.port}", dkim_ed25519=request.param)


@pytest.fixture
def api(client, tenant) -> Api:
    founder = Api(client, tenant.token)
    founder.domain(DOMAIN)
    founder.mailbox(MAILBOX)
    return founder


def plan_records(api: Api) -> list[dict[str, Any]]:
    return api.ok("GET", f"/api/domains/{DOMAIN}/dns-plan")["records"]  # type: ignore[no-any-return]


def check(api: Api) -> dict[str, Any]:
    return api.ok("GET", f"/api/domains/{DOMAIN}/status")


def send(api: Api, subject: str) -> Any:
    return api.call("POST", "/api/send", {"mailbox": MAILBOX, "to": [RECIPIENT], "subject": subject,
                                          "text": "Signed by LiteMX, verified against the published plan."})


def signatures(raw: bytes) -> list[dict[bytes, bytes]]:
    """The tags of every DKIM-Signature header (whitespace removed: s= and d= carry none)."""
    headers = message_from_bytes(raw).get_all("DKIM-Signature") or []
    return [parse_tag_value(re.sub(r"\s+", "", str(h)).encode()) for h in headers]


def verify(raw: bytes, dns: LoopbackDnsServer) -> list[bool]:
    """dkimpy's verdict on each signature, keys looked up in the loopback DNS through LiteMX's resolver."""
    checker = dkim.DKIM(raw)
    dnsfunc = dkimpy_dnsfunc(DnsResolver([dns.address]))
    return [checker.verify(idx=i, dnsfunc=dnsfunc) for i in range(len(signatures(raw)))]


def deliver_one(services: Any, sink: SmtpSink, api: Api, subject: str) -> bytes:
    """Send through the API and the outbound worker; returns the bytes the smarthost received."""
    response = send(api, subject)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    before = len(sink.received)
    assert run_worker(services) == 1
    [got] = sink.received[before:]
    assert got.rcpt_tos == [RECIPIENT]
    return got.data


def ready(api: Api, dns: LoopbackDnsServer) -> list[dict[str, Any]]:
    """Publish exactly the plan, check live (every record ok), approve the provider."""
    records = plan_records(api)
    publish(dns, records)
    report = check(api)
    assert {r["status"] for r in report["records"]} == {"ok"}, report
    assert report["readiness"]["inbound_ready"] and report["readiness"]["outbound_ready"]
    api.ok("PUT", f"/api/domains/{DOMAIN}/readiness", {"provider_approved": True})
    return records


def test_the_plans_dkim_record_verifies_mail_signed_by_the_outbound_path(api, services, dns, sink, settings):
    records = ready(api, dns)
    published = {r["selector"]: r for r in records if r["purpose"] == "dkim"}
    assert len(published) == (2 if settings.dkim_ed25519 else 1)
    raw = deliver_one(services, sink, api, "Order 1234")

    sigs = signatures(raw)
    assert [(s[b"d"].decode(), s[b"s"].decode()) for s in sigs] == [(DOMAIN, sel) for sel in published]
    dns_queries_before = len(dns.queries)
    assert verify(raw, dns) == [True] * len(published)
    # The verifier asked the loopback DNS for exactly the plan's DKIM hosts.
    asked = {name for name, qtype, _ in dns.queries[dns_queries_before:] if qtype == "TXT"}
    assert asked == {r["host"] for r in published.values()}
    # Sanity: without the plan's DKIM record the same message does not verify.
    for record in published.values():
        dns.remove(record["host"])
    assert verify(raw, dns) == [False] * len(published)


def test_after_rotate_dkim_and_the_new_plan_a_send_verifies_with_the_new_selector(api, services, dns, sink):
    ready(api, dns)
    first = deliver_one(services, sink, api, "Before the rotation")
    old = {s[b"s"].decode() for s in signatures(first)}

    rotated = api.ok("POST", f"/api/domains/{DOMAIN}/dkim/rotate")
    new = set(rotated["created"])
    assert new and not new & old and set(rotated["retiring"]) == old
    # The new selector is not published yet: sending waits for a check that finds it.
    blocked = assert_error(send(api, "Too early"), 403, "send_blocked")
    assert blocked["details"]["reasons"] == ["domain_not_ready"]

    records = plan_records(api)
    assert {r["selector"] for r in records if r["purpose"] == "dkim"} == old | new  # both published
    publish(dns, records)
    assert check(api)["readiness"]["outbound_ready"] is True
    second = deliver_one(services, sink, api, "After the rotation")
    assert {s[b"s"].decode() for s in signatures(second)} == new
    assert all(verify(second, dns))
    assert all(verify(first, dns))  # the retiring key still verifies mail signed before the rotation


def test_the_preflight_follows_readiness_computed_by_a_real_dns_check(api, services, dns, sink):
    api.ok("PUT", f"/api/domains/{DOMAIN}/readiness", {"provider_approved": True})
    records = plan_records(api)

    # Nothing published: every record missing, both flags false, the send is refused.
    report = check(api)
    assert {r["status"] for r in report["records"]} == {"missing"}
    assert report["readiness"] == {"inbound_ready": False, "outbound_ready": False, "provider_approved": True}
    error = assert_error(send(api, "Nothing published"), 403, "send_blocked")
    assert (error["details"]["reasons"], error["details"]["not_ready"]) == (
        ["domain_not_ready"], ["inbound_ready", "outbound_ready"])

    # Everything but the DKIM record: mail reaches us, but ours would leave unverifiable.
    publish(dns, [r for r in records if r["purpose"] != "dkim"])
    assert check(api)["readiness"] == {"inbound_ready": True, "outbound_ready": False, "provider_approved": True}
    error = assert_error(send(api, "No DKIM yet"), 403, "send_blocked")
    assert (error["details"]["reasons"], error["details"]["not_ready"]) == (["domain_not_ready"], ["outbound_ready"])
    assert sink.received == [] and run_worker(services) == 0

    # The whole plan: the same send is accepted, delivered and verifies.
    publish(dns, records)
    assert check(api)["readiness"] == {"inbound_ready": True, "outbound_ready": True, "provider_approved": True}
    raw = deliver_one(services, sink, api, "Published")
    assert all(verify(raw, dns))
