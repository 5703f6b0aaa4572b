"""Inbound MIME parsing: real-world corpora, crafted malformed mail, and arbitrary bytes.

mail-parser's corpus carries real malware zips: these tests only read message bytes and
hash attachment bytes; nothing is ever extracted or run.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litemx.core.mime import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_REFERENCES,
    Address,
    ParsedMessage,
    decode_bytes,
    decode_rfc2047,
    has_reply_prefix,
    normalise_subject,
    parse_message,
    snippet,
)
from tests.support.corpora import cpython_email_data, sdist

CPYTHON_MESSAGES = sorted(cpython_email_data().glob("msg_*.txt"))


def _mail_parser_dir() -> Path:
    return sdist("mail-parser", "4.8.0") / "tests" / "mails"


MAIL_PARSER_NAMES = [f"mail_test_{i}" for i in range(1, 20)] + [f"mail_malformed_{i}" for i in (1, 2, 3)]


def assert_storable(parsed: ParsedMessage) -> None:
    """Every string is storable text (no NUL, no lone surrogate) and attachments are consistent."""
    strings = [parsed.subject, parsed.text, parsed.html or "", *[v for pair in parsed.headers for v in pair]]
    strings += [part for addr in (*parsed.to, *parsed.cc, *parsed.reply_to) for part in addr]
    for text in strings:
        assert "\x00" not in text
        text.encode("utf-8")
    assert len(parsed.headers) <= MAX_HEADERS
    strings += [parsed.message_id or "", parsed.in_reply_to or "", *parsed.references]
    strings += [s for a in parsed.attachments for s in (a.filename, a.content_type, a.content_id or "")]
    for text in strings:
        assert "\x00" not in text
        text.encode("utf-8")
    for attachment in parsed.attachments:
        assert attachment.size == len(attachment.data)
        assert attachment.sha256 == hashlib.sha256(attachment.data).hexdigest()
        assert attachment.filename and "/" not in attachment.filename
        assert attachment.disposition in ("inline", "attachment")
    assert parsed.date is None or parsed.date.tzinfo is not None


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


# --------------------------------------------------------------------------- corpora


def test_cpython_corpus_is_present() -> None:
    assert len(CPYTHON_MESSAGES) >= 40


@pytest.mark.parametrize("path", CPYTHON_MESSAGES, ids=lambda p: p.name)
def test_every_cpython_test_email_message_parses_to_storable_fields(path: Path) -> None:
    assert_storable(parse_message(path.read_bytes()))


def test_a_simple_message_yields_its_envelope() -> None:
    parsed = parse_message((cpython_email_data() / "msg_01.txt").read_bytes())
    assert parsed.subject == "This is a test message"
    assert parsed.from_ == Address("John X. Doe", "bbb@ddd.com")
    assert parsed.to == (Address("", "bbb@zzz.org"),)
    assert parsed.message_id == "<15090.61304.110929.45684@aaa.zzz.org>"
    assert parsed.date == datetime(2001, 5, 4, 14, 5, 44, tzinfo=timezone(timedelta(hours=-4)))
    assert parsed.text.strip() == "Hi,\n\nDo you like this message?\n\n-Me"


def test_a_digest_keeps_every_enclosed_message_as_an_eml_attachment() -> None:
    parsed = parse_message((cpython_email_data() / "msg_02.txt").read_bytes())
    messages = [a for a in parsed.attachments if a.content_type == "message/rfc822"]
    assert len(messages) == 5
    assert messages[0].filename == "[Ppp] testing #1.eml"
    assert all(a.filename.endswith(".eml") for a in messages)
    assert b"Subject: [Ppp] testing #5" in messages[4].data
    assert "Send Ppp mailing list submissions" in parsed.text


def test_a_nested_rfc822_message_is_one_attachment_with_its_bytes() -> None:
    parsed = parse_message((cpython_email_data() / "msg_11.txt").read_bytes())
    (enclosed,) = parsed.attachments
    assert enclosed.filename == "An enclosed message.eml"
    assert enclosed.content_type == "message/rfc822"
    assert enclosed.data.startswith(b"Subject: An enclosed message")
    assert b"Here is the body of the message." in enclosed.data


def test_an_attached_message_reparses_to_the_same_message() -> None:
    outer = crlf("""\
Subject: fwd
Content-Type: multipart/mixed; boundary=o

--o
Content-Type: text/plain

see attached
--o
Content-Type: message/rfc822

""") + crlf(MULTIPART) + b"\r\n--o--\r\n"
    (enclosed,) = parse_message(outer).attachments
    assert enclosed.filename == "Café order.eml"
    inner = parse_message(enclosed.data)
    assert (inner.subject, inner.message_id, len(inner.attachments)) == ("Café order", "<abc@example.com>", 3)


def test_an_attached_message_with_a_lost_boundary_and_8bit_body_keeps_its_bytes() -> None:
    raw = "Content-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=b\n\ncafé\n".encode()
    parsed = parse_message(raw)
    (enclosed,) = parsed.attachments
    assert enclosed.content_type == "message/rfc822" and b"boundary=b" in enclosed.data
    assert not [d for d in parsed.defects if d.startswith("part:")]


def test_a_bounce_keeps_delivery_status_and_the_returned_message() -> None:
    parsed = parse_message((cpython_email_data() / "msg_16.txt").read_bytes())
    types = [a.content_type for a in parsed.attachments]
    assert types == ["message/delivery-status", "message/rfc822"]
    assert b"Original-envelope-id: 0GK500B4HD0888@cougar.noc.ucla.edu" in parsed.attachments[0].data
    assert "This report relates to a message you sent" in parsed.text


def test_a_binary_attachment_is_decoded_from_base64() -> None:
    parsed = parse_message((cpython_email_data() / "msg_07.txt").read_bytes())
    (gif,) = parsed.attachments
    assert (gif.filename, gif.content_type, gif.disposition) == ("dingusfish.gif", "image/gif", "attachment")
    assert gif.data.startswith(b"GIF87a") and gif.size == len(gif.data)


def test_rfc2231_encoded_header_parameters_do_not_disturb_the_body() -> None:
    parsed = parse_message((cpython_email_data() / "msg_29.txt").read_bytes())
    assert "Do you like this message?" in parsed.text


def test_a_multipart_without_its_start_boundary_still_shows_its_text() -> None:
    parsed = parse_message((cpython_email_data() / "msg_15.txt").read_bytes())
    assert parsed.defects  # StartBoundaryNotFoundDefect is recorded, not raised
    assert parsed.subject == "XX"


@pytest.mark.parametrize("name", MAIL_PARSER_NAMES)
def test_every_mail_parser_real_world_message_parses(name: str) -> None:
    assert_storable(parse_message((_mail_parser_dir() / name).read_bytes()))


def test_legacy_cyrillic_names_and_an_attachment_filename_are_decoded() -> None:
    parsed = parse_message((_mail_parser_dir() / "mail_test_1").read_bytes())
    assert parsed.subject == "письмо уведом-е"
    assert parsed.from_ == Address("служба ФНС Даниил Суворов", "suvorov.s@nalg.ru")
    assert "Информируем Вас" in parsed.text
    (archive,) = parsed.attachments
    assert archive.filename == "ФНС_РФ558.zip" and archive.size > 1000


def test_rfc2047_encoded_filenames_in_quoted_parameters_are_decoded() -> None:
    parsed = parse_message((_mail_parser_dir() / "mail_test_11").read_bytes())
    (document,) = parsed.attachments
    assert document.filename.startswith("Prokuratura Rejonowa Warszawa-Śródmieście")
    assert document.filename.endswith(".pdf")


def test_rfc2231_continued_filenames_are_joined_and_decoded() -> None:
    parsed = parse_message((_mail_parser_dir() / "mail_test_5").read_bytes())
    names = [a.filename for a in parsed.attachments]
    assert "mailingassets_d68799cd6301c7f5731a3c42946e528bcb78eb84.jpg" in names


def test_gb2312_subjects_decode_through_the_gb18030_superset() -> None:
    parsed = parse_message((_mail_parser_dir() / "mail_test_12").read_bytes())
    assert parsed.subject == "代开各地增值税发票"
    assert parsed.from_ is not None and parsed.from_.name == "张先生"


def test_an_encoded_comma_in_a_display_name_does_not_split_the_address() -> None:
    parsed = parse_message((_mail_parser_dir() / "mail_test_18").read_bytes())
    assert parsed.from_ == Address("LastßlName, FirstName", "comma.name@example.com")


# --------------------------------------------------------------------------- structure


MULTIPART = """\
From: "Alice Example" <Alice.Smith@Example.COM>
To: support@project.dev, "Bob, Jr." <bob@EXAMPLE.org>
Cc: undisclosed-recipients:;
Reply-To: replies@example.com
Subject: =?utf-8?q?Caf=C3=A9?= order
Date: Tue, 5 Mar 2024 10:00:00 +0100
Message-ID: <abc@example.com>
In-Reply-To: <parent@example.com> (the parent)
References: <root@example.com>
 <parent@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Plain café body
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>HTML <img src="cid:logo@x"></p>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt
Content-Type: text/calendar; method=REQUEST

BEGIN:VCALENDAR
--alt--
--outer
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--outer--
"""


def test_a_typical_multipart_message_splits_into_bodies_and_attachments() -> None:
    parsed = parse_message(crlf(MULTIPART))
    assert parsed.subject == "Café order"
    assert parsed.from_ == Address("Alice Example", "Alice.Smith@example.com")
    assert parsed.to == (Address("", "support@project.dev"), Address("Bob, Jr.", "bob@example.org"))
    assert parsed.cc == ()
    assert parsed.reply_to == (Address("", "replies@example.com"),)
    assert parsed.in_reply_to == "<parent@example.com>"
    assert parsed.references == ("<root@example.com>", "<parent@example.com>")
    assert parsed.date == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert parsed.text.strip() == "Plain café body"
    assert parsed.html is not None and '<img src="cid:logo@x">' in parsed.html
    logo, calendar, pdf = parsed.attachments
    assert (logo.content_type, logo.content_id, logo.disposition) == ("image/png", "logo@x", "inline")
    assert logo.data == b"\x89PNG\r\n\x1a\n"
    assert calendar.content_type == "text/calendar" and calendar.filename.endswith(".ics")
    assert (pdf.filename, pdf.data) == ("€ rates.pdf", b"%PDF-1.4")
    assert parsed.has_attachments
    assert ("Subject", "Café order") in parsed.headers


def test_an_html_only_message_gets_a_text_body_from_inscriptis() -> None:
    raw = b"Subject: x\nContent-Type: text/html\n\n<html><body><h1>Title</h1><p>Para <b>bold</b></p></body></html>"
    parsed = parse_message(raw)
    assert parsed.text == "Title\n\nPara bold"
    assert parsed.html is not None and "<h1>" in parsed.html


def test_a_named_inline_text_part_is_a_file_not_body() -> None:
    raw = crlf("""\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

body text
--b
Content-Type: text/plain
Content-Disposition: inline; filename="notes.txt"

file text
--b--
""")
    parsed = parse_message(raw)
    assert parsed.text.strip() == "body text"
    assert [(a.filename, a.data.strip()) for a in parsed.attachments] == [("notes.txt", b"file text")]


def test_inline_cid_images_are_not_counted_as_user_visible_attachments() -> None:
    raw = crlf("""\
Content-Type: multipart/related; boundary=b

--b
Content-Type: text/html

<img src="cid:a@b">
--b
Content-Type: image/gif
Content-ID: <a@b>

GIF
--b--
""")
    parsed = parse_message(raw)
    assert len(parsed.attachments) == 1 and not parsed.has_attachments


def test_a_filename_cannot_smuggle_a_path() -> None:
    raw = crlf("""\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="../../etc/passwd"

x
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="C:\\\\evil\\\\a.exe"

y
--b--
""")
    assert [a.filename for a in parse_message(raw).attachments] == ["passwd", "a.exe"]


def test_message_ids_are_normalised_to_angle_brackets() -> None:
    raw = b"Message-ID: abc@example.com\nIn-Reply-To: <p@x> <q@x>\nReferences: r@x, p@x\n\nbody"
    parsed = parse_message(raw)
    assert parsed.message_id == "<abc@example.com>"
    assert parsed.in_reply_to == "<p@x>"
    assert parsed.references == ("<r@x>", "<p@x>")


def test_a_message_without_message_id_has_none() -> None:
    assert parse_message(b"Subject: x\n\nbody").message_id is None


def test_references_are_capped_keeping_the_root_and_the_nearest_ancestors() -> None:
    ids = " ".join(f"<m{i}@x>" for i in range(5000))
    parsed = parse_message(f"References: {ids}\n\nbody".encode())
    assert len(parsed.references) == MAX_REFERENCES
    assert parsed.references[0] == "<m0@x>" and parsed.references[-1] == "<m4999@x>"


@pytest.mark.parametrize("value", ["not a date", "Tue, 45 Foo 2024 99:99:99 +0100", "Mon, 1 Jan 99999 00:00 +0000",
                                   "Mon, 1 Jan 2024 00:00 +9999", ""])
def test_an_unparseable_date_is_none(value: str) -> None:
    assert parse_message(f"Date: {value}\n\nbody".encode()).date is None


def test_a_date_without_zone_information_is_read_as_utc() -> None:
    parsed = parse_message(b"Date: Mon, 1 Jan 2024 10:00:00 -0000\n\nbody")
    assert parsed.date == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def test_address_domains_are_lowercased_but_local_parts_are_not() -> None:
    parsed = parse_message("From: Ünï <Mixed.Case@BÜCHER.Example>\n\nx".encode())
    assert parsed.from_ == Address("Ünï", "Mixed.Case@bücher.example")


# --------------------------------------------------------------------------- malformed input


def test_bare_lf_line_endings_parse_like_crlf() -> None:
    lf, crlf_parsed = parse_message(MULTIPART.encode()), parse_message(crlf(MULTIPART))
    assert (lf.subject, lf.text.strip(), len(lf.attachments)) == (
        crlf_parsed.subject, crlf_parsed.text.strip(), len(crlf_parsed.attachments))


def test_nul_bytes_never_reach_the_parsed_strings() -> None:
    raw = b"Subject: a\x00b\nFrom: x\x00@y.z\nContent-Type: text/html\n\n<p>he\x00llo</p>"
    parsed = parse_message(raw)
    assert parsed.subject == "ab"
    assert parsed.html == "<p>hello</p>" and parsed.text == "hello"
    assert_storable(parsed)


def test_raw_utf8_and_latin1_headers_are_decoded() -> None:
    utf8 = parse_message("Subject: Grüße aus Köln\nFrom: Zoë <z@x.y>\n\nb".encode())
    assert utf8.subject == "Grüße aus Köln" and utf8.from_ == Address("Zoë", "z@x.y")
    latin1 = parse_message("Subject: Grüße\n\nb".encode("latin-1"))
    assert latin1.subject == "Grüße"


def test_a_missing_closing_boundary_keeps_the_parts_seen() -> None:
    raw = crlf("""\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

first
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename=a.bin
Content-Transfer-Encoding: base64

AAEC
""")
    parsed = parse_message(raw)
    assert parsed.text.strip() == "first"
    assert parsed.attachments[0].data == b"\x00\x01\x02"


def test_a_multipart_without_a_boundary_parameter_shows_its_raw_text() -> None:
    parsed = parse_message(b"Content-Type: multipart/mixed\n\nsome text\n--x\nmore\n")
    assert "some text" in parsed.text and parsed.defects


def test_broken_base64_is_decoded_leniently() -> None:
    raw = crlf("""\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

aGVsbG8gd29y!!bGQ
--b
Content-Type: application/pdf
Content-Disposition: attachment; filename=x.pdf
Content-Transfer-Encoding: base64

%%%%
--b--
""")
    parsed = parse_message(raw)
    assert parsed.text.startswith("hello wor")
    assert parsed.attachments[0].filename == "x.pdf"


def test_an_unknown_charset_falls_back_without_raising() -> None:
    raw = "Subject: =?x-klingon?q?qapla=E2=80=99?=\nContent-Type: text/plain; charset=x-klingon\n\nqaplà".encode()
    parsed = parse_message(raw)
    assert parsed.subject == "qapla’"
    assert parsed.text == "qaplà"


def test_a_non_text_codec_named_as_charset_is_not_used() -> None:
    parsed = parse_message(b"Content-Type: text/plain; charset=base64\n\naGVsbG8=")
    assert parsed.text == "aGVsbG8="


def test_two_thousand_byte_lines_are_kept_whole() -> None:
    long = "x" * 2000
    parsed = parse_message(f"Subject: {long}\nX-Long: {long}\n\n{long}\n".encode())
    assert parsed.subject == long and parsed.text.strip() == long


def test_a_header_flood_is_capped() -> None:
    flood = "".join(f"X-Flood-{i}: {'v' * (20_000 if i % 100 == 0 else 100)}\n" for i in range(10_000))
    parsed = parse_message(f"Subject: real\n{flood}\nbody".encode())
    assert parsed.subject == "real"
    assert len(parsed.headers) == MAX_HEADERS and parsed.headers_truncated
    assert all(len(value) <= MAX_HEADER_VALUE for _, value in parsed.headers)
    assert ("X-Flood-0", "v" * MAX_HEADER_VALUE) in parsed.headers
    assert parsed.text.strip() == "body"


def test_thousands_of_nested_multiparts_fall_back_to_headers_and_text() -> None:
    raw = b"Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    raw += b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(3000))
    parsed = parse_message(raw)
    assert parsed.subject == "deep"
    assert any("RecursionError" in d for d in parsed.defects)


def test_too_many_parts_stop_at_the_part_limit() -> None:
    parts = "".join("--b\nContent-Type: application/octet-stream\n\nx\n" for _ in range(3000))
    parsed = parse_message(f"Content-Type: multipart/mixed; boundary=b\n\n{parts}--b--\n".encode())
    assert len(parsed.attachments) < 1000 and "too many MIME parts" in parsed.defects


@pytest.mark.parametrize("raw", [b"", b"\n\n", b"\x00" * 100, b"\xff\xfe" * 50, b"From: \n\n", b":\n\n",
                                 b"Content-Type: message/rfc822\n\n", b"Content-Type: ;;;\n\n\xff"])
def test_degenerate_inputs_parse(raw: bytes) -> None:
    assert_storable(parse_message(raw))


# --------------------------------------------------------------------------- helpers


def test_decode_bytes_prefers_declared_then_utf8_then_latin1() -> None:
    assert decode_bytes("é".encode("cp1252"), "windows-1252") == "é"
    assert decode_bytes("é".encode(), None) == "é"
    assert decode_bytes(b"caf\xe9", "utf-8") == "caf\ufffd"
    assert decode_bytes(b"caf\xe9", None) == "café"
    assert decode_bytes("日本".encode() + b"\xff", None) == "日本\ufffd"
    assert decode_bytes("テスト".encode("shift_jis"), "Shift_JIS") == "テスト"


def test_rfc2047_words_split_inside_a_multibyte_character_are_joined() -> None:
    encoded = base64.b64encode("é".encode()).decode()
    first, second = base64.b64encode(b"\xc3").decode(), base64.b64encode(b"\xa9").decode()
    assert decode_rfc2047(f"=?utf-8?b?{encoded}?=") == "é"
    assert decode_rfc2047(f"=?utf-8?b?{first}?= =?utf-8?b?{second}?=") == "é"
    assert decode_rfc2047("=?utf-8?q?a?= b =?utf-8?q?c?=") == "a b c"
    assert decode_rfc2047("=?utf-8?q?a_b?=  =?utf-8?q?c?=") == "a bc"
    assert decode_rfc2047("=?utf-8?b?###?=") == "=?utf-8?b?###?="


@pytest.mark.parametrize(("subject", "expected"), [
    ("Re: Hello", "Hello"), ("RE: Re: FW: Fwd: Hello", "Hello"), ("AW: SV: WG: Hallo", "Hallo"),
    ("[support] Re: [ops] Outage", "Outage"), ("Re[3]: x y", "x y"), ("Re(2): x", "x"),
    ("回复：你好", "你好"), ("Regarding: the plan", "Regarding: the plan"), ("Re:   spaced   out ", "spaced out"),
    ("", ""), ("Re:", ""),
])
def test_normalise_subject_strips_reply_markers_and_list_tags(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


def test_has_reply_prefix_sees_markers_after_list_tags_only() -> None:
    assert has_reply_prefix("[list] Re: x") and has_reply_prefix("Fwd: x")
    assert not has_reply_prefix("[list] x") and not has_reply_prefix("Reply needed")


def test_snippet_is_one_line_cut_at_a_word() -> None:
    assert snippet("Hello\n\n  world") == "Hello world"
    cut = snippet("word " * 100, n=50)
    assert len(cut) <= 50 and cut.endswith("word…")


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_always_parse(raw: bytes) -> None:
    assert_storable(parse_message(raw))


_HEADER_LINES = st.sampled_from([
    "Content-Type: multipart/mixed; boundary=b", "Content-Type: multipart/alternative; boundary=b",
    "Content-Type: text/plain; charset=x-unknown", "Content-Type: text/html; charset=utf-8",
    "Content-Type: message/rfc822", "Content-Type: message/delivery-status", "Content-Type: image/png",
    "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
    "Content-Transfer-Encoding: x-uuencode", "Content-Disposition: attachment; filename*=utf-8''%FF%E2",
    "Content-Disposition: inline; filename=\"=?utf-8?b?####?=\"", "Content-ID: <x@y>", "Subject: =?utf-8?q?=FF?=",
    "From: =?utf-8?b?IiI8Pg==?= <a@b>, @,", "Date: Mon, 1 Jan 2024 00:00 +2500", "References: <a@b> <",
    "Content-Type: text/plain; charset*=bogus''x", "Message-ID: <>",
])
_BODY_LINES = st.one_of(_HEADER_LINES, st.sampled_from(["", "--b", "--b--", "aGVsbG8=", "=E2=82", "<p>x</p>"]),
                        st.text(max_size=40))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_HEADER_LINES, max_size=6), st.lists(_BODY_LINES, max_size=30), st.sampled_from(["\n", "\r\n"]))
def test_mime_shaped_garbage_always_parses(headers: list[str], body: list[str], newline: str) -> None:
    raw = newline.join([*headers, "", *body]).encode("utf-8", "surrogatepass")
    assert_storable(parse_message(raw))


_CONTENT_TYPES_WITH_RAW_BYTES = [b"application/x-\xe9", b"text/plain\xe9; charset=utf-8", b"message/rfc822\xe9",
                                 b"application/pdf\x00x", b"image/\xff\xfepng", b"text/html\x00"]


def _with_part_type(ctype: bytes) -> bytes:
    return (b"From: a@b.example\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
            b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: " + ctype +
            b"\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\nDATA\r\n--b--\r\n")


@pytest.mark.parametrize("ctype", _CONTENT_TYPES_WITH_RAW_BYTES)
def test_a_part_type_with_raw_8bit_bytes_or_a_nul_is_storable_text(ctype: bytes) -> None:
    # Header values reach us as parsed (surrogate-escaped bytes): a type read through the Message
    # API must be decoded like every header text, or neither database can store the attachment.
    parsed = parse_message(_with_part_type(ctype))
    assert_storable(parsed)
    assert len(parsed.attachments) == 1 and parsed.text.strip() == "hello"
