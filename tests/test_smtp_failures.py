"""When LiteMX itself fails, the sender hears `451 4.3.0` (retry later), never a Python error,
nothing half-stored is queued, and the session and the worker carry on afterwards."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from litemx.service import inbound as inbound_module
from litemx.storage.schema import inbound_queue
from tests.support.smtp import count, delivered, host_project, live_mx, message


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


TEMPFAIL = (451, b"4.3.0 Temporary local problem, please try again later")


def _boom(*_: Any, **__: Any) -> Any:
    raise OSError("disk on fire: /secret/path")


def _db_down(*_: Any, **__: Any) -> Any:
    raise OperationalError("INSERT INTO inbound_queue", {}, Exception("server closed the connection"))


def _data_reply(client: smtplib.SMTP, subject: str, body: str = "Hello") -> tuple[int, bytes]:
    client.ehlo_or_helo_if_needed()
    client.mail("alice@sender.example")
    client.rcpt("support@project.dev")
    try:
        return client.data(message(subject, body))
    except smtplib.SMTPDataError as refused:
        return refused.smtp_code, refused.smtp_error


# Small messages wait in their queue row (the blob store is not on their `250` path); a message
# over INLINE_RAW_BYTES goes to the blob store before its row is committed.
LARGE = "x" * (inbound_module.INLINE_RAW_BYTES + 1)


@pytest.mark.parametrize("target, name, fault, body", [
    ("blobs", "put", _boom, LARGE), ("repo", "enqueue", _db_down, "Hello"), ("repo", "enqueue", _db_down, LARGE)],
    ids=["blob-store-fails", "database-fails", "database-fails-large"])
def test_a_storage_failure_answers_451_and_queues_nothing_and_the_session_goes_on(
        services, hosted, monkeypatch, target, name, fault, body):
    owner = services.infra.blobs if target == "blobs" else inbound_module.inbound_repo
    with live_mx(services) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, fault)
            failed = _data_reply(client, "First try", body)
        assert count(services, inbound_queue) == 0
        retried = _data_reply(client, "Second try")  # same session, storage back
        found = delivered(services, 1)
    assert failed == TEMPFAIL
    assert retried[0] == 250 and retried[1].startswith(b"2.0.0 OK id=tx_")
    assert [m["subject"] for m in found] == ["Second try"]


def test_a_routing_failure_at_rcpt_answers_451(services, hosted, monkeypatch):
    monkeypatch.setattr(services.routing, "resolve", _db_down)
    with live_mx(services, worker=False) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("alice@sender.example")
        code, text = client.rcpt("support@project.dev")
    assert (code, text) == TEMPFAIL


def test_the_worker_survives_a_failed_pass_and_delivers_on_the_next(services, hosted, monkeypatch):
    real = services.inbound.process_due
    calls: list[int] = []

    def flaky(limit: int = 20, *, lease_ahead: bool = False) -> int:
        calls.append(limit)
        if len(calls) == 1:
            _db_down()
        return real(limit, lease_ahead=lease_ahead)

    monkeypatch.setattr(services.inbound, "process_due", flaky)
    with live_mx(services) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        client.sendmail("alice@sender.example", ["support@project.dev"], message("Despite the outage"))
        found = delivered(services, 1)
    assert found[0]["subject"] == "Despite the outage" and len(calls) >= 2
