"""A refused RCPT is an `inbound.rejected` audit event (SPEC §9), and one connection cannot
turn refusals into an unbounded stream of events."""

from __future__ import annotations

import pytest

from tests.support.smtp import RawSmtp, audit_rows, host_project, live_mx


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


def _rcpts(port: int, *addresses: bytes) -> list[bytes]:
    with RawSmtp("127.0.0.1", port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        raw.command(b"MAIL FROM:<alice@sender.example>")
        return [raw.command(b"RCPT TO:<" + a + b">")[0] for a in addresses]


def test_refusals_for_a_hosted_domain_are_audited_in_its_account(services, hosted, tenant):
    with live_mx(services, worker=False) as mx:
        replies = _rcpts(mx.port, b"nobody@project.dev", b"support@project.dev")
    assert replies[0].startswith(b"550 5.1.1") and replies[1].startswith(b"250 2.1.5")
    [event] = audit_rows(services, "inbound.rejected")
    assert {k: event[k] for k in ("account_id", "actor_type", "actor_id", "interface", "outcome", "ip",
                                  "resource_type", "resource_id")} == {
        "account_id": tenant.account["id"], "actor_type": "system", "actor_id": None, "interface": "smtp",
        "outcome": "denied", "ip": "127.0.0.1", "resource_type": "recipient", "resource_id": "nobody@project.dev"}
    assert event["details"] == {"rcpt": "nobody@project.dev", "reason": "unknown_user", "client_ip": "127.0.0.1"}


def test_a_relay_attempt_is_audited_without_an_account(services, hosted):
    with live_mx(services, worker=False) as mx:
        [reply] = _rcpts(mx.port, b"victim@elsewhere.example")
    assert reply.startswith(b"550 5.7.1 Relaying denied")
    [event] = audit_rows(services, "inbound.rejected")
    assert event["account_id"] is None
    assert event["details"] == {"rcpt": "victim@elsewhere.example", "reason": "relay_denied",
                                "client_ip": "127.0.0.1"}


def test_a_session_probing_addresses_is_cut_off_after_twenty_refusals(services, hosted):
    probes = [b"guess%d@project.dev" % i for i in range(25)]
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        raw.command(b"MAIL FROM:<alice@sender.example>")
        raw.send(b"".join(b"RCPT TO:<" + p + b">\r\n" for p in probes))  # pipelined, as a prober would
        replies = [raw.line() for _ in range(21)]
        assert raw.closed()
    assert all(r.startswith(b"550 5.1.1") for r in replies[:20])
    assert replies[20] == b"421 4.7.0 Too many rejected recipients, closing connection"
    assert len(audit_rows(services, "inbound.rejected")) == 20  # bounded per connection
