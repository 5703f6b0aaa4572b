"""Outbound delivery end to end: a send is queued, signed, delivered by the worker to a real
SMTP server on loopback (smarthost and direct-MX modes), retried on 4xx, failed on 5xx; the
DKIM signature verifies with dkimpy AND Perl's Mail::DKIM against keys in the loopback DNS."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email import message_from_bytes

import pytest

from litemx.adapters.outbound import MxTransport, SesTransport, SmtpRelayTransport, build_transport
from litemx.core.delivery import OutboundItem, verp_delivery_id
from litemx.errors import Conflict, InvalidRequest, SendBlocked
from litemx.storage import sending_repo
from litemx.storage.schema import audit_events
from litemx.workers import OutboundWorker
from tests.support.live import free_port
from tests.support.sending import (
    DOMAIN,
    MAILBOX,
    SmtpSink,
    audit_actions,
    count,
    delivery_rows,
    hosted,
    message_status,
    run_worker,
    set_domain,
    verify_dkimpy,
    verify_perl,
)


@pytest.fixture
def settings(settings):
    # Every domain also gets an Ed25519 key, so mail is dual-signed (RFC 8463 §3).
    return settings.with_(dkim_ed25519=True)


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def relay(services, sink):
    services.outbound.transport = SmtpRelayTransport("127.0.0.1", sink.port, "mx.litemx.test", timeout=10)
    return sink


@pytest.fixture
def caller(services, tenant, dns):
    return hosted(services, tenant.token, dns)


def _send(services, caller, *to, subject="Order 1234", text="Your order has shipped."):
    return services.sending.send_direct(caller, MAILBOX, list(to), subject=subject, text=text)


def _audit_actions(services, prefix="send."):
    return audit_actions(services, prefix)


def test_a_send_reaches_the_smarthost_signed_with_a_verp_envelope(services, caller, relay, dns):
    sent = _send(services, caller, "Bob <bob@example.net>")
    assert sent["status"] == "queued" and [d["recipient"] for d in sent["deliveries"]] == ["bob@example.net"]
    assert run_worker(services) == 1
    [got] = relay.received
    assert got.rcpt_tos == ["bob@example.net"]
    assert got.mail_from.endswith(f"@bounce.{DOMAIN}") and verp_delivery_id(got.mail_from) == sent["deliveries"][0]["id"]
    msg = message_from_bytes(got.data)
    assert msg["Message-ID"] == sent["message_id_header"] and msg["Message-ID"].endswith(f"@{DOMAIN}>")
    assert msg["From"] == MAILBOX and msg["To"] == "Bob <bob@example.net>" and msg["Date"]
    assert "Bcc" not in msg
    assert verify_dkimpy(got.data, dns) == [True, True]
    perl = verify_perl(got.data, dns)
    # This machine's Mail::DKIM (1.20230212, Debian) has no Ed25519 module: it verifies the RSA
    # signature and skips the other as unsupported (RFC 6376 §6.1: ignored, not failed).
    assert "sig rsa-sha256 pass" in perl and "result pass" in perl
    assert "sig ed25519-sha256 pass" in perl or "unsupported algorithm ed25519-sha256" in perl
    [row] = delivery_rows(services)
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["last_reply"].startswith("250")
    assert message_status(services, sent["id"]) == "sent"
    assert _audit_actions(services) == ["send.accepted", "send.delivered"]


def test_direct_mx_delivery_uses_one_connection_per_domain(services, caller, sink, dns):
    for domain in ("example.net", "example.org"):
        dns.set(domain, [("MX", f"10 mx.{domain}")])
        dns.set(f"mx.{domain}", [("A", "127.0.0.1")])
    services.outbound.transport = build_transport(
        services.infra.settings.with_(outbound="mx", mx_port=sink.port), services.inbound.resolver)
    assert isinstance(services.outbound.transport, MxTransport)
    _send(services, caller, "a@example.net", "b@example.net", "c@example.org")
    assert run_worker(services) == 3
    assert sorted(r for got in sink.received for r in got.rcpt_tos) == ["a@example.net", "b@example.net",
                                                                       "c@example.org"]
    assert sink.handler.connections == 2  # one SMTP session per destination domain in the batch
    assert all(verify_dkimpy(got.data, dns) == [True, True] for got in sink.received)
    assert "result pass" in verify_perl(sink.received[0].data, dns)
    assert {r["status"] for r in delivery_rows(services)} == {"delivered"}


def test_a_451_is_retried_after_the_back_off_and_then_delivered(services, caller, relay, clock):
    relay.answer("bob@example.net", "451 4.7.1 Greylisted, try again later", "250 2.1.5 OK")
    _send(services, caller, "bob@example.net")
    assert run_worker(services) == 1
    [row] = delivery_rows(services)
    assert row["status"] == "deferred" and row["attempts"] == 1 and row["last_reply"].startswith("451")
    assert row["next_attempt_at"] > clock.now()
    assert run_worker(services) == 0  # not due yet: nothing is attempted
    clock.advance(minutes=2)
    assert run_worker(services) == 1
    [row] = delivery_rows(services)
    assert row["status"] == "delivered" and row["attempts"] == 2 and len(relay.received) == 1
    with services.infra.db.read() as conn:
        attempts = sending_repo.attempts_of(conn, row["id"])
    assert [(a["outcome"], a["code"]) for a in attempts] == [("deferred", 451), ("delivered", 250)]
    assert _audit_actions(services) == ["send.accepted", "send.deferred", "send.delivered"]


def test_a_550_fails_for_good_bounces_and_suppresses_the_recipient(services, caller, relay):
    relay.answer("gone@example.net", "550 5.1.1 No such user")
    sent = _send(services, caller, "gone@example.net")
    run_worker(services)
    [row] = delivery_rows(services)
    assert row["status"] == "failed" and row["attempts"] == 1
    with services.infra.db.read() as conn:
        events = sending_repo.events_of(conn, sent["id"])
        listed = sending_repo.suppressed_among(conn, caller.principal.account_id, ["gone@example.net"])
    assert [(e["type"], e["status"], e["source"]) for e in events] == [("bounce", "5.1.1", "smtp")]
    assert listed == ["gone@example.net"] and message_status(services, sent["id"]) == "failed"
    assert _audit_actions(services, "s") == ["send.accepted", "send.failed", "send.bounced", "suppression.add"]
    with pytest.raises(SendBlocked) as blocked:
        _send(services, caller, "gone@example.net")
    assert blocked.value.reasons == ["recipient_suppressed"]
    assert run_worker(services) == 0 and count(services, audit_events, audit_events.c.action == "send.blocked") == 1


def test_a_policy_refusal_fails_without_suppressing(services, caller, relay):
    relay.answer("strict@example.net", "550 5.7.1 Message refused by policy")
    _send(services, caller, "strict@example.net")
    run_worker(services)
    with services.infra.db.read() as conn:
        assert sending_repo.suppressed_among(conn, caller.principal.account_id, ["strict@example.net"]) == []
    assert delivery_rows(services)[0]["status"] == "failed"


def test_an_unreachable_relay_defers_and_a_dead_domain_fails(services, caller, dns):
    services.outbound.transport = SmtpRelayTransport("127.0.0.1", free_port(), "mx.litemx.test", timeout=5)
    _send(services, caller, "bob@example.net")
    run_worker(services)
    [row] = delivery_rows(services)
    assert row["status"] == "deferred" and "unreachable" in row["last_reply"]
    dns.set("nomail.example", [("MX", "0 .")])
    mx = MxTransport(services.inbound.resolver, free_port(), "mx.litemx.test", timeout=5)
    item = OutboundItem("dlv_x", "b@bounce.project.dev", "x@nomail.example", MAILBOX, b"x")
    [result] = asyncio.run(mx.deliver([item]))
    assert result.result == "failed" and result.code == 556  # RFC 7505 null MX


def test_a_delivery_queued_before_its_domain_was_disabled_is_held(services, caller, relay):
    _send(services, caller, "bob@example.net")
    set_domain(services, DOMAIN, disabled_at=datetime.now(timezone.utc))
    assert run_worker(services) == 0
    [row] = delivery_rows(services)
    assert row["status"] == "held" and relay.received == []
    assert "send.held" in _audit_actions(services)


def test_a_draft_is_sent_once_and_then_read_only(services, caller, relay):
    draft = services.drafts.create(caller, MAILBOX, ["bob@example.net"], subject="Hi", text="Hello")
    sent = services.sending.send_draft(caller, draft["id"])
    shown = services.drafts.show(caller, draft["id"])
    assert shown["status"] == "sent" and shown["message_id"] == sent["id"] and sent["draft_id"] == draft["id"]
    with pytest.raises(Conflict):
        services.sending.send_draft(caller, draft["id"])
    with pytest.raises(Conflict):
        services.drafts.update(caller, draft["id"], {"subject": "changed"})
    run_worker(services)
    assert len(relay.received) == 1


def test_ses_sends_the_raw_signed_message_through_sesv2(monkeypatch):
    """SES at the unit level, against moto's in-process SESv2 (no network)."""
    import boto3
    import moto

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    raw = b"From: support@project.dev\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
    items = [OutboundItem("dlv_a", "bounce+dlv_a@bounce.project.dev", "bob@example.net", MAILBOX, raw)]
    with moto.mock_aws():
        transport = SesTransport(region="us-east-1")
        [refused] = asyncio.run(transport.deliver(items))
        boto3.client("ses", region_name="us-east-1").verify_domain_identity(Domain=DOMAIN)
        [accepted] = asyncio.run(transport.deliver(items))
    assert refused.result == "failed" and "MessageRejected" in refused.reply
    assert accepted.result == "delivered" and accepted.provider_id


def test_the_outbound_setting_names_a_transport():
    from litemx.settings import Settings

    base = Settings.load({})
    assert isinstance(build_transport(base.with_(outbound="smtp://127.0.0.1:2526"), None), SmtpRelayTransport)
    assert isinstance(build_transport(base.with_(outbound="ses"), None), SesTransport)
    with pytest.raises(InvalidRequest):
        build_transport(base.with_(outbound="carrier-pigeon"), None)


def test_the_running_worker_is_woken_by_each_send(services, caller, relay):
    async def scenario() -> None:
        task = asyncio.create_task(OutboundWorker(services, poll_seconds=60).run())
        await asyncio.sleep(0)  # run() installs its wake-up hook before its first pass
        await asyncio.to_thread(_send, services, caller, "bob@example.net")
        for _ in range(500):  # bounded: the 60 s poll would be far too late
            if delivery_rows(services)[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert delivery_rows(services)[0]["status"] == "delivered" and len(relay.received) == 1
    assert services.sending.on_queue is None  # the hook goes with the worker
