"""Real MTA test tools against the MX: swaks (plain, pipelined, 8-bit UTF-8) and Postfix's
smtp-source (parallel sessions). Every message they were told was accepted is delivered.

swaks 20201014 (Debian's) cannot send the SMTPUTF8 MAIL parameter; the SMTPUTF8 envelope is
covered with smtplib in test_smtp_protocol.py, and swaks sends UTF-8 headers (RFC 6532) here.
"""

from __future__ import annotations

import subprocess

import pytest

from litemx.storage.schema import inbound_queue
from tests.support.smtp import count, delivered, host_project, live_mx


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


def _swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.example",
                           "--from", "alice@sender.example", "--to", "support@project.dev", *args],
                          capture_output=True, text=True, timeout=30)


def test_swaks_plain_and_pipelined_messages_are_delivered(services, hosted):
    with live_mx(services) as mx:
        plain = _swaks(mx.port, "--header", "Subject: swaks plain", "--body", "first body")
        piped = _swaks(mx.port, "--pipeline", "--header", "Subject: swaks pipelined", "--body", "second body")
        found = delivered(services, 2)
    assert plain.returncode == 0 and piped.returncode == 0, plain.stdout + piped.stdout
    assert "250-PIPELINING" in piped.stdout and "250 2.0.0 OK id=tx_" in piped.stdout
    assert sorted(m["subject"] for m in found) == ["swaks pipelined", "swaks plain"]


def test_swaks_8bit_utf8_headers_and_body_are_delivered_intact(services, hosted):
    with live_mx(services) as mx:
        result = _swaks(mx.port, "--header", "Subject: Grüße – naïve café ✓",
                        "--add-header", "Content-Type: text/plain; charset=utf-8",
                        "--add-header", "Content-Transfer-Encoding: 8bit", "--body", "Ünïcödé body 👋")
        [row] = delivered(services, 1)
    assert result.returncode == 0, result.stdout
    assert row["subject"] == "Grüße – naïve café ✓" and "Ünïcödé body 👋" in row["text_body"]


def test_swaks_to_an_unknown_mailbox_is_refused_at_rcpt(services, hosted):
    with live_mx(services, worker=False) as mx:
        result = _swaks(mx.port, "--to", "nobody@project.dev")
    assert result.returncode == 24  # swaks: "RCPT TO: was rejected"
    assert "550 5.1.1" in result.stdout
    assert count(services, inbound_queue) == 0


def test_smtp_source_parallel_sessions_are_all_delivered_and_counted(services, hosted):
    # 5 parallel sessions, 50 messages of 5,000 bytes; -d keeps each session for several messages.
    with live_mx(services) as mx:
        result = subprocess.run(["/usr/sbin/smtp-source", "-s", "5", "-m", "50", "-l", "5000", "-d", "-c",
                                 "-M", "client.example", "-f", "alice@sender.example", "-t", "support@project.dev",
                                 f"127.0.0.1:{mx.port}"], capture_output=True, text=True, timeout=60)
        found = delivered(services, 50)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(found) == 50 and len({m["queue_id"] for m in found}) == 50
    assert all(m["size"] > 5000 and m["mailbox"] == "support@project.dev" for m in found)
    assert count(services, inbound_queue, inbound_queue.c.status == "done") == 50
