"""The MX speaks ESMTP as a sending MTA expects: extensions, replies, pipelining, STARTTLS."""

from __future__ import annotations

import re
import smtplib
import ssl
from pathlib import Path

import pytest

from litemx.adapters.smtp import tls_context, with_enhanced_code
from litemx.errors import InvalidRequest
from litemx.storage.schema import inbound_queue
from tests.support.smtp import RawSmtp, delivered, host_project, live_mx, message, rows, self_signed


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


ENHANCED = re.compile(rb"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


def test_ehlo_advertises_size_8bitmime_smtputf8_pipelining_and_enhanced_codes_but_no_auth(services, hosted):
    with live_mx(services, worker=False) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        code, _ = client.ehlo("client.example")
        features = client.esmtp_features
    assert code == 250
    assert features["size"] == str(services.infra.settings.max_message_bytes)  # RFC 1870
    assert {"8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"} <= set(features)
    assert "auth" not in features and "starttls" not in features and "help" not in features


def test_every_reply_after_the_greeting_carries_an_enhanced_status_code(services, hosted):
    commands = [b"NOOP", b"MAIL FROM:<a@sender.example>", b"HELP", b"VRFY support@project.dev", b"HELO",
                b"EHLO client.example", b"MAIL FROM:<a@sender.example> SIZE=999999999999",
                b"MAIL FROM:<a@sender.example> FOO=BAR", b"MAIL FROM:<<<>", b"RCPT TO:<support@project.dev>",
                b"DATA", b"MAIL FROM:<a@sender.example>", b"MAIL FROM:<b@sender.example>",
                b"RCPT TO:<nobody@project.dev>", b"RCPT TO:<x@elsewhere.example>", b"RCPT TO:<bad address>",
                b"RCPT TO:<support@project.dev> NOTIFY=NEVER", b"DATA", b"AUTH PLAIN AGFhAGI=", b"STARTTLS",
                b"EXPN staff", b"XYZZY", b"RSET", b"QUIT"]
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        assert raw.reply()[0].startswith(b"220 mx.litemx.test ")  # the greeting is exempt (RFC 2034 §3)
        replies = {c: raw.command(c) for c in commands}
    for command, lines in replies.items():
        if command.startswith(b"EHLO"):
            assert lines[-1] == b"250 ENHANCEDSTATUSCODES"
            continue
        assert all(ENHANCED.match(line) for line in lines), (command, lines)
    assert replies[b"AUTH PLAIN AGFhAGI="][0].startswith(b"502 5.5.1")
    assert replies[b"STARTTLS"][0].startswith(b"454 4.7.0")  # no certificate configured
    assert replies[b"MAIL FROM:<a@sender.example> SIZE=999999999999"][0].startswith(b"552 5.3.4")
    assert replies[b"RCPT TO:<nobody@project.dev>"][0].startswith(b"550 5.1.1")
    assert replies[b"RCPT TO:<x@elsewhere.example>"][0].startswith(b"550 5.7.1")
    assert replies[b"QUIT"][0].startswith(b"221 2.0.0")


def test_enhanced_codes_are_added_only_where_missing():
    assert with_enhanced_code("250 OK") == "250 2.0.0 OK"
    assert with_enhanced_code("503 Error: need RCPT command") == "503 5.5.1 Error: need RCPT command"
    assert with_enhanced_code("550 5.1.1 user unknown") == "550 5.1.1 user unknown"
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>") == "354 End data with <CR><LF>.<CR><LF>"
    assert with_enhanced_code("599 Odd") == "599 5.0.0 Odd"


def test_a_pipelined_transaction_gets_one_reply_per_command_in_order(services, hosted):
    # RFC 2920 §3.1: the client sends MAIL, every RCPT and DATA in one write and reads the replies.
    batch = (b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<support@project.dev>\r\n"
             b"RCPT TO:<nobody@project.dev>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<support+tag@project.dev>\r\n"
             b"DATA\r\n")
    with live_mx(services) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        raw.send(batch)
        codes = [raw.reply()[0][:9] for _ in range(6)]
        raw.send(message("Pipelined") + b".\r\n")
        done = raw.reply()[0]
        raw.command(b"QUIT")
        found = delivered(services, 1)
    assert codes == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"550 5.7.1", b"250 2.1.5", b"354 End d"]
    assert done.startswith(b"250 2.0.0 OK id=tx_")
    assert [m["subject"] for m in found] == ["Pipelined"]  # two RCPTs, one mailbox: one copy


def test_the_null_reverse_path_of_a_bounce_is_accepted_and_stored_empty(services, hosted):
    # RFC 5321 §4.5.5: delivery status notifications come from <>; an MX must take them.
    with live_mx(services) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        assert client.sendmail("", ["support@project.dev"], message("Undeliverable: hello")) == {}
        found = delivered(services, 1)
    assert found[0]["mail_from"] == "" and rows(services, inbound_queue)[0]["mail_from"] == ""


def test_an_smtputf8_transaction_with_utf8_addresses_and_headers_is_delivered(services, hosted):
    raw = ("From: Jörg <jörg@bücher.example>\r\nTo: support@project.dev\r\nSubject: Grüße aus Köln 👋\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Ünïcödé body ✓\r\n").encode()
    with live_mx(services) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        refused = client.sendmail("jörg@bücher.example", ["support@project.dev"], raw,
                                  mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        found = delivered(services, 1)
    assert refused == {}
    row = found[0]
    assert row["subject"] == "Grüße aus Köln 👋" and "Ünïcödé body ✓" in row["text_body"]
    assert row["mail_from"] == "jörg@bücher.example"
    stored = services.infra.blobs.get(row["raw_key"])
    assert b" with UTF8SMTP id " in stored.split(b"\r\n\r\n")[0]  # RFC 6531 §3.7.3
    assert stored.endswith(raw)


def test_a_non_ascii_address_without_smtputf8_is_refused_with_553_5_6_7(services, hosted):
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        reply = raw.command("MAIL FROM:<jörg@bücher.example>".encode())
        ok = raw.command("MAIL FROM:<jörg@bücher.example> SMTPUTF8".encode())
    assert reply[0].startswith(b"553 5.6.7") and ok[0].startswith(b"250 2.1.0")


def test_an_overlong_path_is_refused_with_501(services, hosted):
    with live_mx(services, worker=False) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        reply = raw.command(b"MAIL FROM:<" + b"a" * 250 + b"@sender.example>")
    assert reply[0].startswith(b"501 5.1.7 Path too long")  # RFC 5321 §4.5.3.1.3


def test_starttls_is_offered_with_a_certificate_and_the_message_is_stamped_esmtps(services, hosted, tmp_path: Path):
    cert, key = self_signed(tmp_path)
    client_context = ssl.create_default_context(cafile=str(cert))
    with live_mx(services, tls_cert=str(cert), tls_key=str(key)) as mx:
        with smtplib.SMTP(mx.host, mx.port, timeout=10, local_hostname="client.example") as client:
            client.ehlo()
            assert client.has_extn("starttls")
            code, _ = client.starttls(context=client_context)  # verified: 127.0.0.1 is in the SAN
            client.ehlo()
            assert code == 220 and not client.has_extn("starttls") and not client.has_extn("auth")
            assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
            client.sendmail("alice@sender.example", ["support@project.dev"], message("Over TLS"))
        found = delivered(services, 1)
    head = services.infra.blobs.get(found[0]["raw_key"]).split(b"\r\n\r\n")[0]
    assert b" with ESMTPS id " in head  # RFC 3848


def test_tls_needs_both_the_certificate_and_the_key(services, tmp_path: Path):
    cert, _ = self_signed(tmp_path)
    with pytest.raises(InvalidRequest) as err:
        tls_context(services.infra.settings.with_(tls_cert=str(cert)))
    assert err.value.details == {"field": "tls_key"}
    assert tls_context(services.infra.settings) is None
