"""Be liberal in what the MX accepts (RFC 5321 §4.5.3.1.6 lines, bare LF, NUL, header floods):
store the bytes as sent, let the parser make the best of them — and be exact about where DATA
ends, so nothing smuggled inside a message becomes a second one."""

from __future__ import annotations

from typing import Any

import pytest

from litemx.app import Services
from tests.support.smtp import RawSmtp, delivered, host_project, live_mx


@pytest.fixture
def hosted(services, tenant):
    return host_project(services, tenant.token)


def _deliver_raw(services: Services, data: bytes, expected: int = 1) -> list[dict[str, Any]]:
    """Send `data` (already dot-stuffed, without the terminator) in one transaction."""
    with live_mx(services) as mx, RawSmtp(mx.host, mx.port) as raw:
        raw.reply()
        raw.command(b"EHLO client.example")
        raw.command(b"MAIL FROM:<alice@sender.example>")
        raw.command(b"RCPT TO:<support@project.dev>")
        assert raw.command(b"DATA")[0].startswith(b"354")
        raw.send(data + b"\r\n.\r\n")
        assert raw.reply()[0].startswith(b"250 2.0.0"), "message refused"
        assert raw.command(b"QUIT")[0].startswith(b"221")
        return delivered(services, expected)


def _stored(services: Services, row: dict[str, Any]) -> bytes:
    """The stored raw message without the Received: line LiteMX prepended."""
    raw = services.infra.blobs.get(row["raw_key"])
    assert raw.startswith(b"Received: from client.example ([127.0.0.1])")
    eol = b"\n" if b"\r\n" not in raw[:200] else b"\r\n"
    return raw[raw.index(eol, raw.index(b"\tfor <")) + len(eol):]


def test_a_line_far_over_998_octets_is_stored_as_sent(services, hosted):
    long_line = b"word " * 2000  # 10,000 octets
    data = b"Subject: long line\r\n\r\n" + long_line + b"\r\nend"
    [row] = _deliver_raw(services, data)
    assert _stored(services, row) == data + b"\r\n"
    assert row["subject"] == "long line" and row["text_body"].count("word") == 2000


def test_a_header_flood_is_stored_and_the_message_still_reads(services, hosted):
    flood = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 60) for i in range(5000))  # ~360 kB of headers
    data = b"From: alice@sender.example\r\nSubject: flooded\r\n" + flood + b"\r\nbody text"
    [row] = _deliver_raw(services, data)
    assert _stored(services, row) == data + b"\r\n"
    assert row["subject"] == "flooded" and "body text" in row["text_body"]


def test_a_bare_lf_message_is_stored_with_a_matching_trace_header(services, hosted):
    data = b"From: alice@sender.example\nSubject: unix newlines\n\nline one\nline two"
    [row] = _deliver_raw(services, data)
    body = _stored(services, row)
    trace = services.infra.blobs.get(row["raw_key"])[:-len(body)]
    assert body == data + b"\r\n" and trace.endswith(b"\n") and b"\r" not in trace
    assert row["subject"] == "unix newlines" and "line two" in row["text_body"]


def test_nul_bytes_are_stored_raw_and_dropped_from_the_text_columns(services, hosted):
    data = b"Subject: nul\x00 inside\r\n\r\nbefore\x00after"
    [row] = _deliver_raw(services, data)
    assert _stored(services, row) == data + b"\r\n"
    assert "\x00" not in row["subject"] and "beforeafter" in row["text_body"].replace(" ", "")


def test_dot_stuffing_is_undone(services, hosted):
    # RFC 5321 §4.5.2: the client doubles a leading dot; the server removes one.
    data = b"Subject: dots\r\n\r\n..leading dot\r\n...\r\n.x"
    [row] = _deliver_raw(services, data)
    assert _stored(services, row) == b"Subject: dots\r\n\r\n.leading dot\r\n..\r\nx\r\n"


def test_bare_lf_dot_sequences_inside_data_do_not_end_the_message(services, hosted):
    # Only CRLF.CRLF ends DATA (RFC 5321 §4.1.1.4). Anything else is content, so an attacker
    # cannot smuggle a second transaction past a filter that frames messages differently.
    smuggled = (b"Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@sender.example>\n"
                b"\r\n.\nRCPT TO:<support@project.dev>\r.\r\nDATA\n.\r\nSubject: inner\r\n\r\nsmuggled")
    [row] = _deliver_raw(services, smuggled)
    assert row["subject"] == "outer"
    # A line starting with a dot loses it (RFC 5321 §4.5.2) and stays content.
    assert _stored(services, row) == smuggled.replace(b"\r\n.\nRCPT", b"\r\n\nRCPT") + b"\r\n"
