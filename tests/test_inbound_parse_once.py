"""The inbound pipeline reads each message's header block once: DMARC's From fields come from
`mime.parse_message`, DKIM and ARC skip dkimpy's whole-message parse when the header block
holds no signature, and ASCII text skips the charset guessing. Each shortcut must give exactly
what the long way gives, for real-world mail and for arbitrary bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litemx import mailauth
from litemx.core import mime
from litemx.mailauth import dkim as dkim_stage
from tests.support.corpora import cpython_email_data, sdist
from tests.support.fake_resolver import FakeResolver

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _corpus() -> list[Path]:
    mail_parser = sdist("mail-parser", "4.8.0") / "tests" / "mails"
    authheaders = sdist("authheaders", "0.16.3") / "authheaders" / "test"
    dkimpy = sdist("dkimpy", "1.1.8") / "dkim" / "tests" / "data"
    return sorted([*cpython_email_data().glob("msg_*.txt"), *mail_parser.glob("mail_*"),
                   *authheaders.glob("test*.message"), *dkimpy.glob("test*.message"),
                   *dkimpy.glob("rfc6376.*msg")])


def _long_way_dkim(raw: bytes) -> tuple[object, object]:
    """DKIM and ARC verdicts with the shortcut off (as if the header block were unreadable)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(dkim_stage, "_header_names", lambda raw: None)
        resolver = FakeResolver()
        return dkim_stage.verify_dkim(raw, resolver, now=NOW), dkim_stage.verify_arc(raw, resolver)


def _assert_same_as_the_long_way(raw: bytes) -> None:
    parsed = mime.parse_message(raw)
    assert parsed.from_fields is not None
    assert mailauth.from_fields(parsed.from_fields) == mailauth.parse_from(raw)
    resolver = FakeResolver()
    shortcut = dkim_stage.verify_dkim(raw, resolver, now=NOW), dkim_stage.verify_arc(raw, resolver)
    assert shortcut == _long_way_dkim(raw)


def test_the_corpora_are_present() -> None:
    assert len(_corpus()) >= 70


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_real_mail_gets_the_same_from_dkim_and_arc_read_once(path: Path, newline: bytes) -> None:
    raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", newline)
    _assert_same_as_the_long_way(raw)


_LINES = st.sampled_from([
    "From: Alice <alice@example.com>", "From: =?utf-8?b?w6lsaXNl?= <e@example.org>, bob@example.net",
    "from: bare@example.com", "From: <@>", "From:", "From café <x@y>", "From mbox-line Mon Jan 1",
    "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=x; b=y",
    "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.com; s=s; b=z", "arc-authentication-results: i=1; x",
    "Subject: hi", " folded continuation", "\tanother fold", "no colon here", "", "\r", "X:\x00y",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(_LINES, st.text(max_size=30)), max_size=12),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), tail=st.binary(max_size=64))
def test_header_shaped_garbage_gets_the_same_verdicts_read_once(lines: list[str], newline: str, tail: bytes) -> None:
    _assert_same_as_the_long_way(newline.join(lines).encode("utf-8", "surrogatepass") + tail)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_get_the_same_verdicts_read_once(raw: bytes) -> None:
    _assert_same_as_the_long_way(raw)


@given(data=st.binary(max_size=200).map(lambda b: bytes(c & 0x7F for c in b)),
       charset=st.sampled_from([None, "utf-8", "UTF8"]))
def test_ascii_text_decodes_as_the_utf8_attempt_does(data: bytes, charset: str | None) -> None:
    assert mime.decode_bytes(data, charset) == mime.clean_text(data.decode("utf-8"))


def test_a_header_parse_that_fails_leaves_dmarc_to_read_the_from_field_itself(monkeypatch) -> None:
    monkeypatch.setattr(mime, "_parse_tree", lambda raw, headers_only: 1 / 0)

    parsed = mime.parse_message(b"From: a@example.com\r\n\r\nbody\r\n")

    assert parsed.from_fields is None
    assert mailauth.parse_from(b"From: a@example.com\r\n\r\nbody\r\n").domains == ("example.com",)


def test_evaluate_uses_the_author_it_is_given() -> None:
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    resolver = FakeResolver().add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    given_author = mailauth.parse_from(raw)

    with_author = mailauth.evaluate(raw, client_ip="192.0.2.1", helo="h.example", mail_from="a@example.com",
                                    resolver=resolver, now=NOW, author=given_author)
    read_here = mailauth.evaluate(raw, client_ip="192.0.2.1", helo="h.example", mail_from="a@example.com",
                                  resolver=resolver, now=NOW)

    assert with_author == read_here and with_author.dmarc.result == "fail"
