"""Inbound RFC 5322 / MIME messages parsed into plain, storable data — best-effort, never raising.

`parse_message(raw)` returns a `ParsedMessage` for any bytes at all: mail from the Internet is
routinely malformed (bare LF, NUL bytes, raw 8-bit headers, unknown charsets, broken base64,
missing boundaries, header floods) and the raw MIME is kept in the blob store anyway, so the
parsed view degrades instead of failing.

The stdlib's feed parser builds the MIME tree under the compat32 policy, with header values
left as parsed (`_RawHeaders`). We deliberately do *not* use `policy.default`'s convenience
layer:

- `iter_attachments()` + `get_content()` raises KeyError on nested multipart parts and
  LookupError on unknown charsets, so we walk the tree ourselves and decode payload bytes
  with our own charset chain (`decode_bytes`).
- its header objects turn raw 8-bit bytes into "unknown-8bit", have had parser bugs on
  hostile input, and were most of the parse's CPU (each part's Content-Type, with its unique
  boundary, went through the pure-Python header parser), so header *text* is decoded here
  from the raw values (RFC 6532 UTF-8, RFC 2047 encoded words, legacy 8-bit as latin-1).

Every string this module returns is free of NUL and lone surrogates, so both SQLite and
PostgreSQL can store it as text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
import types
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator, Generator
from email.message import Message
from email import feedparser
from email.feedparser import FeedParser
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO, StringIO
from itertools import islice
from typing import Any, NamedTuple, TypeVar

from litemx.core.html import html_to_text

# Subject normalisation lives with the thread logic that uses it; re-exported for callers here.
from litemx.core.threading import has_reply_prefix as has_reply_prefix
from litemx.core.threading import normalise_subject as normalise_subject

MAX_HEADERS = 500  # headers kept in ParsedMessage.headers; the rest stay in the raw blob
MAX_HEADER_VALUE = 8192  # characters per decoded header value
MAX_HEADER_NAME = 200
MAX_REFERENCES = 100  # msg-ids kept from References (the root plus the nearest ancestors)
MAX_PARTS = 1000  # MIME parts walked; a bomb of tiny parts stops here
MAX_DEFECTS = 50
MAX_FILENAME = 255

T = TypeVar("T")


class Address(NamedTuple):
    """One mailbox: display name (may be empty) and addr-spec with the domain lowercased."""

    name: str
    address: str


@dataclass(frozen=True)
class Attachment:
    """A non-body MIME leaf (or an attached message, as `.eml`) with its decoded bytes.

    `content_id` is stored without angle brackets, as `cid:` URLs spell it (RFC 2392).
    `disposition` is "inline" or "attachment" (anything else is read as "attachment").
    """

    filename: str
    content_type: str
    size: int
    content_id: str | None
    disposition: str
    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedMessage:
    """The storable view of one message. Strings are decoded; `html` is NOT sanitised."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str = ""
    from_: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    date: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()
    text: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    headers_truncated: bool = False
    # Every From field's value as the parser read it (still folded; 8-bit bytes as surrogates),
    # or None when no header block could be read: `mailauth.from_fields` turns it into what
    # `mailauth.parse_from(raw)` gives, without parsing the header block a second time.
    from_fields: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def has_attachments(self) -> bool:
        """True when a user would see an attachment: inline images referenced by cid don't count."""
        return any(a.disposition == "attachment" or a.content_id is None for a in self.attachments)


# --------------------------------------------------------------------------- charsets

# Labels seen in the wild that Python does not know, or knows only as a narrower charset.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949",
    "shift_jis": "cp932", "x-sjis": "cp932", "sjis": "cp932",
    "windows-874": "cp874", "x-mac-roman": "mac_roman",
    "iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6", "iso-8859-6-e": "iso-8859-6",
    "utf8mb4": "utf-8",
}
# Python codecs that are not MIME charsets: decoding mail with them is never what was meant.
_NOT_CHARSETS = {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "ascii"}
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_DECODE_ERRORS = (LookupError, ValueError, TypeError)  # UnicodeError is a ValueError


def _codec(charset: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when unknown / not a real declaration.

    us-ascii counts as "no declaration" (RFC 2045 §5.2 default) so 8-bit bytes under it fall
    through to the UTF-8 / latin-1 guesses instead of becoming replacement characters.
    """
    if not charset:
        return None
    label = charset.strip().strip("\"'").split("*", 1)[0].lower()  # RFC 2231 §5 language suffix
    label = _CHARSET_ALIASES.get(label, label)
    for candidate in (label, label.removeprefix("x-")):
        try:
            name = codecs.lookup(candidate).name
        except _DECODE_ERRORS:
            continue
        return None if name.replace("_", "-") in _NOT_CHARSETS else name
    return None


def _decode_with(data: bytes, codec: str, errors: str) -> str | None:
    try:
        return data.decode(codec, errors)
    except _DECODE_ERRORS:
        return None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text bytes, never raising.

    Order: the declared charset (strict); UTF-8 (strict); the declared charset with
    replacement characters; UTF-8 with replacement when the bytes contain valid multi-byte
    UTF-8 sequences (mostly-UTF-8 text with a stray byte); latin-1, which maps every byte.
    The result has no NUL characters.
    """
    codec = _codec(charset)
    if codec in (None, "utf-8") and data.isascii():
        return clean_text(data.decode("ascii"))  # what the strict UTF-8 attempt below gives
    attempts = [(codec, "strict"), ("utf-8", "strict"), (codec, "replace")]
    if _UTF8_SEQUENCE.search(data):
        attempts.append(("utf-8", "replace"))
    for name, errors in attempts:
        text = _decode_with(data, name, errors) if name else None
        if text is not None:
            return clean_text(text)
    return clean_text(data.decode("latin-1"))


def clean_text(text: str) -> str:
    """Drop NUL and replace lone surrogates, which neither SQLite text nor PostgreSQL accept."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


# --------------------------------------------------------------------------- header text

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _surrogate_bytes(raw: str) -> bytes:
    """BytesParser stores header bytes as ASCII + surrogateescape; undo that exactly."""
    try:
        return raw.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogatepass")


def header_text(raw: str) -> str:
    """Raw header value → unfolded text, without RFC 2047 decoding (addresses need that order).

    RFC 5322 §2.2.3: unfolding removes CRLF before whitespace; stray CR/LF become spaces.
    Raw 8-bit bytes are read as UTF-8 (RFC 6532) or latin-1.
    """
    text = clean_text(raw) if raw.isascii() else decode_bytes(_surrogate_bytes(raw), None)
    text = _FOLD.sub("", text)
    return text.replace("\r", " ").replace("\n", " ").strip()


def _decode_word(encoding: str, payload: str) -> bytes | None:
    """Bytes of one RFC 2047 §4 encoded-text, or None when it cannot be decoded."""
    data = payload.encode("utf-8")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)  # header=True: "_" is a space (RFC 2047 §4.2)
    data = data.rstrip(b"=")
    if len(data) % 4 == 1:  # one dangling sextet cannot form a byte
        data = data[:-1]
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error:
        return None


def decode_rfc2047(text: str) -> str:
    """Decode RFC 2047 encoded words, never raising.

    Adjacent encoded words in one charset are joined before decoding, because mailers split
    multi-byte characters across words; whitespace between encoded words is dropped
    (RFC 2047 §6.2). Undecodable words are kept verbatim.
    """
    out: list[str] = []
    run = _Run()
    pos, after_word = 0, False
    for match in _ENCODED_WORD.finditer(text):
        gap, charset = text[pos:match.start()], match[1].lower()
        data = _decode_word(match[2], match[3])
        if not (after_word and (gap == "" or gap.isspace())):
            run.flush(out)
            out.append(gap)
        elif data is None or charset != run.charset:
            run.flush(out)
        if data is None:
            out.append(match[0])
        else:
            run.add(charset, data)
        pos, after_word = match.end(), data is not None
    run.flush(out)
    out.append(text[pos:])
    return clean_text("".join(out))


@dataclass
class _Run:
    """Consecutive encoded-word bytes in one charset, decoded together."""

    charset: str | None = None
    data: bytearray = field(default_factory=bytearray)

    def add(self, charset: str, data: bytes) -> None:
        self.charset = charset
        self.data.extend(data)

    def flush(self, out: list[str]) -> None:
        if self.data:
            out.append(decode_bytes(bytes(self.data), self.charset))
        self.charset, self.data = None, bytearray()


# --------------------------------------------------------------------------- structured headers

_MSG_ID = re.compile(r"<([^<>\s]{1,996})>")  # RFC 5322 §3.6.4 msg-id, leniently


def normalise_message_id(value: str | None) -> str | None:
    """The first msg-id in a header value as `<id>`, or None. Brackets are added when missing."""
    if not value:
        return None
    match = _MSG_ID.search(value)
    if match:
        return f"<{match[1]}>"
    token = value.strip().split()[0].strip("<>") if value.strip() else ""
    return f"<{token}>" if token and "@" in token and len(token) <= 996 else None


def _message_ids(value: str | None) -> list[str]:
    """Every msg-id in References / In-Reply-To order, deduplicated (RFC 5322 §3.6.4)."""
    if not value:
        return []
    found = [f"<{m}>" for m in _MSG_ID.findall(value)]
    if not found:  # some mailers drop the brackets: fall back to bare id-looking tokens
        found = [f"<{t}>" for t in re.split(r"[\s,]+", value) if "@" in t and len(t) <= 996]
    return list(dict.fromkeys(found))


def _references(value: str | None) -> tuple[str, ...]:
    """References capped at the root plus the nearest ancestors, which threading cares about."""
    ids = _message_ids(value)
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1):]
    return tuple(ids)


def normalise_address(address: str) -> str:
    """Lowercase the domain only: the local part is case-sensitive (RFC 5321 §2.4).

    The domain is NFC-normalised and lowercased with `str.lower` (not casefold, which would
    turn an IDNA2008 "ß" into "ss"); A-labels and U-labels are kept as written.
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{unicodedata.normalize('NFC', domain).lower().rstrip('.')}"


def parse_addresses(raw: str | None) -> tuple[Address, ...]:
    """Address-list header → addresses. Split first, then RFC 2047-decode display names, so an
    encoded comma or bracket in a name cannot create a phantom address."""
    if not raw:
        return ()
    pairs = getaddresses([header_text(raw)])
    result = []
    for name, address in pairs:
        if not address or len(address) > 998:  # group syntax "undisclosed-recipients:;"
            continue
        result.append(Address(decode_rfc2047(name)[:998], clean_text(normalise_address(address))))
    return tuple(result)


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 §3.3 date → aware datetime, or None when unparseable.

    A zone of -0000 ("no zone information") yields a naive value from the stdlib; we read
    it as UTC, which is what the sender's clock meant.
    """
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- snippets

def snippet(text: str, n: int = 200) -> str:
    """A one-line preview of at most `n` characters, cut at a word boundary with "…"."""
    flat = " ".join(text.split())
    if len(flat) <= n:
        return flat
    cut = flat[: max(n - 1, 0)]
    if " " in cut[n // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


# --------------------------------------------------------------------------- best-effort guard


def _best_effort(step: str, defects: list[str], fn: Callable[[], T], fallback: T) -> T:
    """Run one top-level parse step; on any failure record a defect and use `fallback`.

    This is the module's one broad `except`: the stdlib parser and header machinery have a
    history of raising odd exceptions (IndexError, AttributeError, RecursionError...) on
    hostile input, and a message must still be stored when one step cannot be read.
    """
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - documented best-effort guard, see docstring
        defects.append(f"{step}: {type(exc).__name__}")
        return fallback


# --------------------------------------------------------------------------- top level


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw RFC 5322 bytes into a `ParsedMessage`. Never raises, whatever the input."""
    defects: list[str] = []
    msg = _best_effort("structure", defects, lambda: _parse_tree(raw, headers_only=False), None)
    if msg is None:  # e.g. RecursionError on thousands of nested multiparts
        msg = _best_effort("headers-only", defects, lambda: _parse_tree(raw, headers_only=True), None)
    from_fields = None if msg is None else tuple(str(v) for n, v in msg.raw_items() if n.lower() == "from")
    msg = Message() if msg is None else msg
    envelope = _best_effort("envelope", defects, lambda: _envelope(_first_headers(msg)), ParsedMessage())
    headers = _best_effort("headers", defects, lambda: tuple(_header_list(msg)), ())
    body = _Body()
    _best_effort("body", defects, lambda: _collect_body(msg, body, _linesep(raw), defects), None)
    text = _best_effort("text", defects, lambda: _body_text(body), "")
    defects.extend(_best_effort("defects", defects, lambda: _tree_defects(msg), []))
    return replace(
        envelope, headers=headers, text=text, html=_join(body.htmls), attachments=tuple(body.attachments),
        defects=tuple(defects[:MAX_DEFECTS]), headers_truncated=len(msg) > MAX_HEADERS, from_fields=from_fields,
    )


class _RawHeaders(policy.Compat32):
    """compat32 with header values handed out as parsed (8-bit bytes still surrogate-escaped)
    instead of as `Header` objects that turn them into U+FFFD: the values this module reads
    through the Message API (a filename, a charset) are decoded here, like all header text."""

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        return value


_PARSE_POLICY = _RawHeaders()


def _parse_tree(raw: bytes, *, headers_only: bool) -> Message:
    """What `BytesParser(policy=_PARSE_POLICY).parsebytes(raw, headers_only)` returns."""
    parser = _FeedParser(policy=_PARSE_POLICY)
    if headers_only:
        parser._set_headersonly()
    parser.feed(raw.decode("ascii", "surrogateescape"))
    return parser.close()


class _BoundaryPattern:
    """What the stdlib's boundary regex answers, without compiling one per boundary.

    email.feedparser compiles `(?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>...)?$`
    for every multipart it reads; boundaries are unique per message, so re's cache never hits
    and the compile (in pure Python) was a fifth of parse_message's CPU. The same answer: the
    line starts with the separator, and the fixed rest of the pattern matches after it.
    """

    __slots__ = ("separator",)

    def __init__(self, separator: str):
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        return _BOUNDARY_TAIL.match(line, len(self.separator)) if line.startswith(self.separator) else None


_BOUNDARY_TAIL = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
_BOUNDARY_SOURCE = re.compile(r"\(\?P<sep>(.*)\)" + re.escape(_BOUNDARY_TAIL.pattern), re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class _FeedParserRe:
    """The `re` module as our copy of FeedParser._parsegen sees it: a boundary pattern becomes
    a _BoundaryPattern; every other call goes to `re` itself (so a stdlib whose pattern
    differs simply compiles it, as before)."""

    def __getattr__(self, name: str) -> object:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: str, flags: int = 0) -> object:
        found = _BOUNDARY_SOURCE.fullmatch(pattern) if not flags else None
        if found is None:
            return re.compile(pattern, flags)
        return _BoundaryPattern(_ESCAPED.sub(r"\1", found[1]))  # re.escape only adds backslashes


def _fast_parsegen() -> Callable[..., Any] | None:
    """FeedParser._parsegen's own code under globals whose `re` is _FeedParserRe; None (the
    stdlib's as it is) if this Python's function cannot be rebuilt so (it has free variables).
    CPython 3.13 made the same change upstream (a fixed `boundaryendRE` plus `startswith`)."""
    code = FeedParser._parsegen.__code__
    if code.co_freevars:
        return None
    return types.FunctionType(code, {**vars(feedparser), "re": _FeedParserRe()}, "_parsegen")


class _FeedParser(FeedParser):
    """The stdlib FeedParser running its own parsing code, with `re` as _FeedParserRe: the
    function is the same code object under other globals, so the stdlib module is untouched."""

    _parsegen = _fast_parsegen() or FeedParser._parsegen


def _linesep(raw: bytes) -> str:
    return "\r\n" if b"\r\n" in raw[:65536] else "\n"


def _first_headers(msg: Message) -> dict[str, str]:
    """First occurrence of each header name (lowercased) → raw value."""
    first: dict[str, str] = {}
    for name, value in msg.raw_items():
        first.setdefault(str(name).strip().lower(), str(value))
    return first


def _header_list(msg: Message) -> Iterator[tuple[str, str]]:
    for name, value in islice(msg.raw_items(), MAX_HEADERS):
        yield header_text(str(name))[:MAX_HEADER_NAME], decode_rfc2047(header_text(str(value)))[:MAX_HEADER_VALUE]


def _envelope(first: dict[str, str]) -> ParsedMessage:
    """The envelope fields, from the first occurrence of each header (RFC 5322 §3.6)."""
    text = {name: header_text(value) for name, value in first.items() if name in _ENVELOPE_HEADERS}
    senders = parse_addresses(first.get("from"))
    return ParsedMessage(
        message_id=normalise_message_id(text.get("message-id")),
        in_reply_to=normalise_message_id(text.get("in-reply-to")),
        references=_references(text.get("references")),
        subject=decode_rfc2047(text.get("subject", ""))[:MAX_HEADER_VALUE],
        from_=senders[0] if senders else None,
        to=parse_addresses(first.get("to")),
        cc=parse_addresses(first.get("cc")),
        reply_to=parse_addresses(first.get("reply-to")),
        date=parse_date(text.get("date")),
    )


_ENVELOPE_HEADERS = {"message-id", "in-reply-to", "references", "subject", "date"}


def _tree_defects(msg: Message) -> list[str]:
    names: list[str] = []
    for part in _walk(msg, []):
        names.extend(type(d).__name__ for d in getattr(part[0], "defects", ()))
        if len(names) >= MAX_DEFECTS:
            break
    return names


# --------------------------------------------------------------------------- MIME tree


@dataclass
class _Body:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    taken: set[tuple[int | None, str]] = field(default_factory=set)


def _walk(root: Message, defects: list[str]) -> Iterator[tuple[Message, int | None]]:
    """Leaves in document order with the id of their nearest multipart/alternative ancestor.

    Iterative (not recursive) so deep nesting cannot overflow the stack; message/* parts are
    leaves because an attached message is kept whole as one `.eml` attachment.
    """
    stack: list[tuple[Message, int | None]] = [(root, None)]
    seen = 0
    while stack:
        part, group = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            defects.append("too many MIME parts")
            return
        if part.get_content_maintype() != "multipart" or not part.is_multipart():
            yield part, group
            continue
        if part.get_content_type() == "multipart/alternative":
            group = id(part)
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        stack.extend((child, group) for child in reversed(children))


def _collect_body(msg: Message, body: _Body, linesep: str, defects: list[str]) -> None:
    """Each leaf is its own best-effort step: one unreadable part must not cost the others."""
    for index, (part, group) in enumerate(_walk(msg, defects)):
        added = _best_effort("part", defects, lambda: _add_leaf(part, group, index, body, linesep), False)
        if not added:  # keep the undecoded bytes rather than lose the part
            body.attachments.append(_raw_attachment(part, index))


def _raw_attachment(part: Message, index: int) -> Attachment:
    """Fallback for a leaf whose headers could not be read: its payload as stored."""
    payload = part.get_payload()
    data = _surrogate_bytes(payload) if isinstance(payload, str) else b""
    return Attachment(filename=_default_filename("", index), content_type="application/octet-stream",
                      size=len(data), content_id=None, disposition="attachment",
                      sha256=hashlib.sha256(data).hexdigest(), data=data)


def _add_leaf(part: Message, group: int | None, index: int, body: _Body, linesep: str) -> bool:
    """Route one leaf to the text body, the HTML body or the attachments (RFC 2046 §5.1)."""
    ctype = part.get_content_type()
    if part.get_content_maintype() == "multipart":  # boundary missing: show the raw text
        ctype = "text/plain"
    if part.get_content_maintype() == "message":
        body.attachments.append(_message_attachment(part, index, linesep))
    elif ctype in ("text/plain", "text/html") and _is_body(part) and (group, ctype) not in body.taken:
        if group is not None:  # one rendering per type per alternative group (RFC 2046 §5.1.4)
            body.taken.add((group, ctype))
        text = decode_bytes(_payload_bytes(part), part.get_content_charset())
        (body.texts if ctype == "text/plain" else body.htmls).append(text)
    else:
        body.attachments.append(_leaf_attachment(part, ctype, index))
    return True


def _is_body(part: Message) -> bool:
    """Inline text without a filename is body; a named or attached text part is a file."""
    return part.get_content_disposition() != "attachment" and not part.get_filename()


def _payload_bytes(part: Message) -> bytes:
    """Transfer-decoded bytes (RFC 2045 §6); the stdlib decodes broken base64 leniently."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _leaf_attachment(part: Message, ctype: str, index: int) -> Attachment:
    data = _payload_bytes(part)
    filename = _clean_filename(part.get_filename()) or _default_filename(ctype, index)
    return _attachment(part, filename, ctype, data)


def _message_attachment(part: Message, index: int, linesep: str) -> Attachment:
    """An attached message/* part, kept whole (RFC 2046 §5.2): its bytes are the inner message."""
    payload = part.get_payload()
    inner = [m for m in payload if isinstance(m, Message)] if isinstance(payload, list) else []
    data = linesep.encode().join(_flatten(m, linesep) for m in inner) if inner else _payload_bytes(part)
    ctype = part.get_content_type()
    subject = _first_headers(inner[0]).get("subject") if inner else None
    named = _clean_filename(part.get_filename())
    if not named and subject and ctype in ("message/rfc822", "message/global"):
        named = _clean_filename(decode_rfc2047(header_text(subject))[:100] + ".eml")
    return _attachment(part, named or _default_filename(ctype, index), ctype, data)


def _flatten(msg: Message, linesep: str) -> bytes:
    """Re-serialise a parsed message; headers are written back as received (no refolding)."""
    out_policy = policy.default.clone(linesep=linesep, max_line_length=None)
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=out_policy).flatten(msg)
        return buffer.getvalue()
    except UnicodeEncodeError:
        # stdlib quirk: for a multipart whose boundary never appears, BytesGenerator writes
        # get_payload(), in which 8-bit bytes are already U+FFFD; the text generator copes.
        text = StringIO()
        Generator(text, mangle_from_=False, policy=out_policy).flatten(msg)
        return text.getvalue().encode("utf-8", "surrogateescape")


def _attachment(part: Message, filename: str, ctype: str, data: bytes) -> Attachment:
    raw_cid = _first_headers(part).get("content-id")
    cid = normalise_message_id(header_text(raw_cid)) if raw_cid else None
    disposition = _disposition(part.get_content_disposition(), has_cid=cid is not None)
    return Attachment(
        # Decoded like all header text: raw 8-bit bytes or a NUL in the type would otherwise reach
        # the database as text neither backend stores (a lone surrogate, a NUL), failing delivery.
        filename=filename, content_type=header_text(ctype), size=len(data),
        content_id=cid[1:-1] if cid else None, disposition=disposition,
        sha256=hashlib.sha256(data).hexdigest(), data=data,
    )


def _disposition(declared: str | None, *, has_cid: bool) -> str:
    """RFC 2183 leaves a missing disposition to us: a part with a Content-ID is there to be
    referenced from the HTML (inline), anything else is a file (attachment)."""
    if declared in ("inline", "attachment"):
        return declared
    return "inline" if declared is None and has_cid else "attachment"


# Control characters, and bidi overrides that make "invoice\u202efdp.exe" display as "...exe.pdf".
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")
_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "text/csv": ".csv",
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
    "application/pdf": ".pdf", "application/zip": ".zip", "message/rfc822": ".eml",
    "message/global": ".eml", "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt", "application/pgp-signature": ".asc",
}


def _clean_filename(name: str | None) -> str | None:
    """A display-safe base name: RFC 2231 is already decoded by the stdlib (RFC 2047 words in
    quoted names, an Outlook habit, are decoded here); paths and control characters go."""
    if not name:
        return None
    # Raw 8-bit bytes in a parameter (legacy mailers) arrive surrogate-escaped: header_text
    # decodes them as the header text is decoded (UTF-8, else the legacy fallbacks).
    name = decode_rfc2047(header_text(name)) if "=?" in name else header_text(name)
    name = _UNSAFE_FILENAME.sub(" ", name).replace("\\", "/").rsplit("/", 1)[-1].strip(" .")
    return name[-MAX_FILENAME:] or None


def _default_filename(ctype: str, index: int) -> str:
    base = "message" if ctype.startswith("message/") else "attachment"
    fallback = ".txt" if ctype.startswith("text/") else ".bin"
    return f"{base}-{index + 1}{_EXTENSIONS.get(ctype, fallback)}"


def _join(parts: list[str]) -> str | None:
    return "\n".join(parts) if parts else None


def _body_text(body: _Body) -> str:
    """text/plain preferred (blank text parts don't count); otherwise the HTML as text."""
    texts = [text for text in body.texts if text.strip()]
    if texts or not body.htmls:
        return "\n\n".join(texts)
    return html_to_text(_join(body.htmls) or "")
