"""Every stored message carries LiteMX's `Received:` trace line (RFC 5321 §4.4), and adding it
does not break the sender's DKIM signature."""

from __future__ import annotations

import base64
import re
from email.utils import format_datetime

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.smtp import RawSmtp, delivered, host_project, live_mx, message, send


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


def _head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n")[0]


def test_a_single_recipient_message_is_stamped_from_by_with_id_for_and_date(services, hosted, clock):
    with live_mx(services) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        raw.command(b"MAIL FROM:<alice@sender.example>")
        raw.command(b"RCPT TO:<Support+Orders@project.dev>")
        raw.command(b"DATA")
        raw.send(message("Stamped") + b".\r\n")
        reply = raw.reply()[0]
        [row] = delivered(services, 1)
    txid = re.search(rb"id=(tx_[a-z0-9]+)", reply).group(1)  # type: ignore[union-attr]
    stored = services.infra.blobs.get(row["raw_key"])
    expected = (b"Received: from client.example ([127.0.0.1])\r\n"
                b"\tby mx.litemx.test (LiteMX) with ESMTP id " + txid + b"\r\n"
                b"\tfor <Support+Orders@project.dev>; " + format_datetime(clock.now()).encode() + b"\r\n")
    assert stored.startswith(expected)
    assert stored[len(expected):].startswith(b"From: alice@sender.example\r\n")


def test_several_recipients_are_not_named_in_the_trace(services, hosted):
    services.directory.create_mailbox(hosted, "sales@project.dev")
    with live_mx(services) as mx:
        send(mx.host, mx.port, message("Two boxes"), ["support@project.dev", "sales@project.dev"])
        found = delivered(services, 2)
    heads = {_head(services.infra.blobs.get(r["raw_key"])) for r in found}
    assert len(heads) == 1  # one stored blob for both mailboxes
    head = heads.pop()
    assert b"\tfor <" not in head and re.search(rb"with ESMTP id tx_[a-z0-9]+;\r\n\t\w{3}, ", head)


def test_a_hostile_helo_cannot_inject_a_header(services, hosted):
    with live_mx(services) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO evil\rX-Injected: yes (fake) <x>;")
        raw.command(b"MAIL FROM:<alice@sender.example>")
        raw.command(b"RCPT TO:<support@project.dev>")
        raw.command(b"DATA")
        raw.send(message("Hostile HELO") + b".\r\n")
        raw.reply()
        [row] = delivered(services, 1)
    first_line = services.infra.blobs.get(row["raw_key"]).split(b"\r\n")[0]
    assert first_line == b"Received: from evil?X-Injected:?yes??fake???x?? ([127.0.0.1])"


def test_a_dkim_signature_still_verifies_after_the_trace_header_is_added(services, hosted, dns):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    dns.set("sel._domainkey.sender.example", [("TXT", "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode())])
    body = message("Signed by the sender")
    signed = dkim.sign(body, b"sel", b"sender.example", private, include_headers=[b"From", b"To", b"Subject"]) + body
    with live_mx(services) as mx:
        send(mx.host, mx.port, signed)
        [row] = delivered(services, 1)
    stored = services.infra.blobs.get(row["raw_key"])
    assert stored.startswith(b"Received: ") and stored.endswith(signed)
    assert [(d["result"], d["domain"]) for d in row["auth"]["dkim"]] == [("pass", "sender.example")]
