"""parse_message builds its MIME tree with the stdlib's own FeedParser code, minus one compiled
regex per multipart boundary (core/mime.py `_FeedParser`): the tree must be exactly the one
`BytesParser` builds — same parts, preambles, epilogues, defects and bytes — on real and
crafted mail, whatever characters the boundary holds."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litemx.core import mime
from tests.support.corpora import cpython_email_data, sdist

CPYTHON_MESSAGES = sorted(cpython_email_data().glob("msg_*.txt"))
MAIL_PARSER_MESSAGES = [sdist("mail-parser", "4.8.0") / "tests" / "mails" / name
                        for name in [f"mail_test_{i}" for i in range(1, 20)] + ["mail_malformed_1", "mail_malformed_2",
                                                                                  "mail_malformed_3"]]


def _shape(msg: Message) -> Any:
    body = [_shape(p) for p in msg.get_payload()] if msg.is_multipart() else msg.get_payload()
    return (list(msg.raw_items()), msg.get_content_type(), msg.preamble, msg.epilogue,
            [type(d).__name__ for d in msg.defects], body)


def _flat(msg: Message) -> bytes | str:
    try:
        return msg.as_bytes()
    except (UnicodeError, LookupError) as exc:  # the stdlib generator's own quirks, on both trees alike
        return type(exc).__name__


def _assert_same_tree(raw: bytes, *, flat: bool = True) -> None:
    for headers_only in (False, True):
        ours = mime._parse_tree(raw, headers_only=headers_only)
        stdlib = BytesParser(policy=mime._PARSE_POLICY).parsebytes(raw, headersonly=headers_only)
        assert _shape(ours) == _shape(stdlib)
        assert not flat or _flat(ours) == _flat(stdlib)


@pytest.mark.parametrize("path", CPYTHON_MESSAGES + MAIL_PARSER_MESSAGES, ids=lambda p: p.name)
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_real_mail_gets_the_tree_the_stdlib_parser_builds(path: Path, newline: bytes) -> None:
    _assert_same_tree(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", newline))


BOUNDARY = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"'), min_size=1,
                   max_size=40)


@settings(max_examples=200, deadline=None)
@given(boundary=BOUNDARY, close=st.sampled_from(["--", "-- \t", "", "--x"]), tail=st.sampled_from(["\r\n", "\n", ""]),
       nested=st.booleans())
def test_any_boundary_splits_the_parts_as_the_stdlib_does(boundary: str, close: str, tail: str, nested: bool) -> None:
    inner = (f'Content-Type: multipart/mixed; boundary="in{boundary}"\n\n--in{boundary}\n\nnested\n'
             f"--in{boundary}--\n" if nested else "Content-Type: text/plain\n\none\n")
    raw = (f'From: a@b.example\nContent-Type: multipart/alternative; boundary="{boundary}"\n\npreamble\n'
           f"--{boundary}\n{inner}--{boundary} \t\nContent-Type: text/html\n\n<p>two</p>\n"
           f"--{boundary}{close}{tail}epilogue\n")
    # Not flattened: for a boundary that shows up in the content the generator picks a random one.
    _assert_same_tree(raw.encode(), flat=False)
    _assert_same_tree(raw.replace("\n", "\r\n").encode(), flat=False)


def test_the_fast_boundary_path_is_the_one_parsing_on_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the pinned Python the rebuilt _parsegen is in use and its boundaries take the fast
    path: a patch release that changes the stdlib pattern would silently lose it otherwise."""
    assert mime._FeedParser._parsegen is not mime.FeedParser._parsegen
    made: list[str] = []
    real = mime._BoundaryPattern.__init__

    def counting(self: Any, separator: str) -> None:
        made.append(separator)
        real(self, separator)

    monkeypatch.setattr(mime._BoundaryPattern, "__init__", counting)
    raw = (b"Content-Type: multipart/mixed; boundary=\"a.b(c)+\"\r\n\r\n--a.b(c)+\r\nContent-Type: text/plain\r\n\r\n"
           b"hello\r\n--a.b(c)+--\r\n")
    assert mime.parse_message(raw).text.strip() == "hello"
    assert made == ["--a.b(c)+"]
