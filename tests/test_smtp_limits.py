"""The MX holds its limits against clients that push them: connections, silence, command
floods, recipients, size, memory and hang-ups — and keeps serving everyone else."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from typing import Any

import pytest

from litemx.storage.schema import inbound_queue
from tests.support.live import wait_for
from tests.support.smtp import RawSmtp, count, delivered, host_project, live_mx, message, send


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


def _ehlo(raw: RawSmtp) -> None:
    assert raw.reply()[0].startswith(b"220 ")
    raw.command(b"EHLO client.example")


def _open_transaction(raw: RawSmtp, rcpt: bytes = b"support@project.dev") -> None:
    _ehlo(raw)
    assert raw.command(b"MAIL FROM:<alice@sender.example>")[0].startswith(b"250")
    assert raw.command(b"RCPT TO:<" + rcpt + b">")[0].startswith(b"250")


def test_a_connection_over_the_limit_is_answered_421_and_closed(services, hosted):
    with live_mx(services, worker=False, smtp_max_connections=2) as mx:
        first, second = RawSmtp(mx.host, mx.port), RawSmtp(mx.host, mx.port)
        assert first.reply()[0].startswith(b"220 ") and second.reply()[0].startswith(b"220 ")
        with RawSmtp(mx.host, mx.port) as third:
            assert third.line().startswith(b"421 4.7.0 mx.litemx.test Too many connections")
            assert third.closed()
        first.command(b"QUIT")
        first.close()

        def a_new_client_is_served() -> bool:
            with RawSmtp(mx.host, mx.port) as again:
                return again.line().startswith(b"220 ")

        wait_for(a_new_client_is_served)  # the freed slot is taken by the next client
        second.close()


def test_a_silent_client_is_told_421_4_4_2_and_disconnected(services, hosted):
    with live_mx(services, worker=False, smtp_idle_timeout=1) as mx, RawSmtp(mx.host, mx.port) as raw:
        _ehlo(raw)
        assert raw.line().startswith(b"421 4.4.2 mx.litemx.test Error: timeout exceeded")
        assert raw.closed()


def test_a_client_that_stalls_inside_data_is_timed_out_and_nothing_is_stored(services, hosted):
    with live_mx(services, worker=False, smtp_idle_timeout=1) as mx, RawSmtp(mx.host, mx.port) as raw:
        _open_transaction(raw)
        assert raw.command(b"DATA")[0].startswith(b"354")
        raw.send(b"Subject: half\r\n\r\nand then silence")
        assert raw.line().startswith(b"421 4.4.2")
        assert raw.closed()
    assert count(services, inbound_queue) == 0


def test_a_command_flood_ends_the_session_at_the_per_command_budget(services, hosted):
    with live_mx(services, worker=False, smtp_max_commands=5) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        replies = [raw.command(b"NOOP")[0] for _ in range(6)]
        assert raw.closed()
    assert replies[:5] == [b"250 2.0.0 OK"] * 5
    assert replies[5] == b"421 4.7.0 NOOP sent too many times"


def test_a_thousand_recipients_get_the_first_hundred_accepted_and_452_for_the_rest(services, hosted):
    # RFC 5321 §4.5.3.1.8 / §4.5.3.1.10: at least 100 per transaction; over that 452, and the
    # client sends the rest in another transaction.
    recipients = [f"support+{i}@project.dev" for i in range(1000)]
    with live_mx(services) as mx:
        refused = send(mx.host, mx.port, message("Many"), recipients)
        found = delivered(services, 1)
    assert set(refused) == set(recipients[100:])
    assert set(refused.values()) == {(452, b"4.5.3 Too many recipients")}
    queued = [r["rcpt"] for r in found]
    assert queued == ["support+0@project.dev"]  # 100 plus-addresses of one mailbox: one copy


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(services, hosted):
    with live_mx(services, worker=False, max_message_bytes=10_000) as mx, RawSmtp(mx.host, mx.port) as raw:
        _ehlo(raw)
        assert raw.command(b"MAIL FROM:<alice@sender.example> SIZE=10001")[0].startswith(b"552 5.3.4")  # RFC 1870
        assert raw.command(b"MAIL FROM:<alice@sender.example> SIZE=10000")[0].startswith(b"250 2.1.0")


def test_an_oversized_message_is_refused_after_data_and_the_session_goes_on(services, hosted):
    with live_mx(services, max_message_bytes=10_000) as mx, RawSmtp(mx.host, mx.port) as raw:
        _open_transaction(raw)
        raw.command(b"DATA")
        raw.send(message("Too big", "x" * 20_000) + b".\r\n")
        assert raw.reply()[0].startswith(b"552 5.3.4")
        assert count(services, inbound_queue) == 0
        _ = raw.command(b"MAIL FROM:<alice@sender.example>"), raw.command(b"RCPT TO:<support@project.dev>")
        raw.command(b"DATA")
        raw.send(message("Small") + b".\r\n")
        assert raw.reply()[0].startswith(b"250 2.0.0")
        assert [m["subject"] for m in delivered(services, 1)] == ["Small"]


def test_an_endless_line_past_the_size_limit_is_drained_without_being_buffered(services, hosted):
    # aiosmtpd 1.4 keeps every piece of a CRLF-less line until the line ends; the MX must not.
    chunk, chunks = b"y" * 65536, 128  # 8 MiB on one line against a 100 kB limit
    with live_mx(services, worker=False, max_message_bytes=100_000) as mx, RawSmtp(mx.host, mx.port) as raw:
        _open_transaction(raw)
        raw.command(b"DATA")
        tracemalloc.start()
        try:
            for _ in range(chunks):
                raw.send(chunk)
            raw.send(b"\r\n.\r\n")
            reply = raw.reply()[0]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert reply.startswith(b"552 5.3.4")
    assert peak < 2 * 1024 * 1024, peak  # a small multiple of the limit, not the 8 MiB sent


def test_a_client_hanging_up_mid_data_stores_nothing_and_the_server_keeps_serving(services, hosted):
    with live_mx(services) as mx:
        with RawSmtp(mx.host, mx.port) as raw:
            _open_transaction(raw)
            raw.command(b"DATA")
            raw.send(b"Subject: cut off\r\n\r\nfirst line\r\nsecond li")
        assert send(mx.host, mx.port, message("After the hang-up")) == {}
        found = delivered(services, 1)
    assert [m["subject"] for m in found] == ["After the hang-up"]
    assert count(services, inbound_queue) == 1


def test_stopping_the_listener_tells_an_idle_session_421_4_3_2(services, hosted):
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        _ehlo(raw)
        mx.run(mx.listener.aclose()).result(10)
        assert raw.line().startswith(b"421 4.3.2 mx.litemx.test Service shutting down")  # RFC 5321 §3.8
        assert raw.closed()


def test_stopping_the_listener_lets_a_message_being_stored_get_its_250_first(services, hosted, monkeypatch):
    storing, release = threading.Event(), threading.Event()
    accept = services.inbound.accept_async  # what the MX awaits for a small message

    async def slow_accept(*args: Any, **kwargs: Any) -> int:
        storing.set()
        assert await asyncio.to_thread(release.wait, 10)
        return await accept(*args, **kwargs)

    monkeypatch.setattr(services.inbound, "accept_async", slow_accept)
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        _open_transaction(raw)
        raw.command(b"DATA")
        raw.send(message("In flight at shutdown") + b".\r\n")
        assert storing.wait(10)
        stopping = mx.run(mx.listener.aclose())
        release.set()
        assert raw.line().startswith(b"250 2.0.0 OK id=tx_")
        assert raw.line().startswith(b"421 4.3.2")
        assert raw.closed()
        stopping.result(10)
    assert count(services, inbound_queue) == 1
