"""Attachments a caller adds to a draft or a direct send, validated before anything is stored.

Input (REST, CLI and MCP alike): `{"filename", "content_type", "content_base64",
"content_id"?, "inline"?}`. Everything here is pure: the service stores the decoded bytes in
the blob store and the metadata in `draft_attachments`, and `compose.build_message` writes
them as MIME parts.

Rules (errors name the field, e.g. `attachments[1].filename`):
- filename: 1-255 characters, no control characters (CR, LF, NUL, TAB ...), no `/` or `\\`,
  not `.`/`..`, no bidi overrides (`invoice\\u202efdp.exe` would display as `...exe.pdf`).
  Non-ASCII is fine: it is written as an RFC 2231 parameter.
- content_type: `type/subtype` (RFC 6838 restricted names, stored lower-case, no parameters);
  `multipart/*` and `message/*` are refused (a leaf part cannot be multipart, and RFC 2046
  §5.2.1 forbids base64 for message/rfc822 — forwarding is a separate feature).
- content_base64: standard base64 (whitespace and line breaks ignored); anything else is
  `invalid_request`.
- content_id: optional, `local@domain` without spaces (RFC 2392; angle brackets accepted and
  dropped), unique within the message. `inline: true` needs one (HTML refers to `cid:<id>`).
- Size: a message may not exceed `max_message_bytes` once encoded. One attachment whose
  base64 form alone is over that, or all of them together with the bodies, is
  `413 payload_too_large` (details name the field and the limit). The exact size of the built
  and signed message is checked again at send time.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from litemx.core.compose import OutgoingAttachment
from litemx.errors import PayloadTooLarge, invalid_field

MAX_ATTACHMENTS = 50
MAX_FILENAME = 255
MAX_CONTENT_ID = 250
HEADER_ALLOWANCE = 16 * 1024  # headers, MIME boundaries and part headers, estimated generously
FIELDS = frozenset({"filename", "content_type", "content_base64", "content_id", "inline"})
_RESTRICTED_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(rf"^{_RESTRICTED_NAME}/{_RESTRICTED_NAME}$")
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+"
_CONTENT_ID = re.compile(rf"^{_ATOM}@{_ATOM}$")
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE = re.compile(r"[ \t\r\n]+")


def encoded_size(raw_size: int) -> int:
    """Bytes a part of `raw_size` bytes takes in the message: base64, 76-character lines + CRLF."""
    chars = 4 * ((raw_size + 2) // 3)
    return chars + 2 * ((chars + 75) // 76)


def estimated_message_size(sizes: Sequence[int], text: str | None, html: str | None) -> int:
    """A close estimate of the encoded message with attachments of `sizes` bytes; the send path
    measures the real bytes."""
    bodies = len((text or "").encode("utf-8")) + len((html or "").encode("utf-8"))
    return HEADER_ALLOWANCE + bodies + sum(encoded_size(size) + 512 for size in sizes)


def parse_attachments(items: Any, max_message_bytes: int, field: str = "attachments") -> list[OutgoingAttachment]:
    """Decode and validate the attachment list of a request.

    Raises: InvalidRequest naming the field (`attachments[i].<name>`); PayloadTooLarge when one
        attachment alone could not fit in a message of `max_message_bytes`.
    """
    if items is None:
        return []
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise invalid_field(field, "attachments must be a list of objects")
    if len(items) > MAX_ATTACHMENTS:
        raise invalid_field(field, f"at most {MAX_ATTACHMENTS} attachments per message")
    out = [_one(item, f"{field}[{i}]", max_message_bytes) for i, item in enumerate(items)]
    seen: set[str] = set()
    for i, a in enumerate(out):
        if a.content_id is not None:
            if a.content_id.lower() in seen:
                raise invalid_field(f"{field}[{i}].content_id", "two attachments have the same content_id")
            seen.add(a.content_id.lower())
    return out


def check_total(sizes: Sequence[int], text: str | None, html: str | None, max_message_bytes: int,
                field: str = "attachments") -> None:
    """Raises: PayloadTooLarge when a message with attachments of `sizes` bytes and these
    bodies would exceed `max_message_bytes` once encoded (no attachments: bodies are not
    limited here, as before)."""
    size = estimated_message_size(sizes, text, html)
    if sizes and size > max_message_bytes:
        raise PayloadTooLarge(f"the message with its attachments would be about {size} bytes; the limit is "
                              f"{max_message_bytes}", {"field": field, "limit": max_message_bytes, "size": size})


def _one(item: Any, field: str, max_message_bytes: int) -> OutgoingAttachment:
    if not isinstance(item, Mapping):
        raise invalid_field(field, "each attachment is an object with filename, content_type, content_base64")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise invalid_field(f"{field}.{unknown[0]}", f"unknown attachment field {unknown[0]!r}")
    filename = _filename(item.get("filename"), f"{field}.filename")
    content_type = _content_type(item.get("content_type"), f"{field}.content_type")
    inline = item.get("inline", False)
    if inline is None:
        inline = False
    if not isinstance(inline, bool):
        raise invalid_field(f"{field}.inline", "inline must be true or false")
    content_id = _content_id(item.get("content_id"), f"{field}.content_id")
    if inline and content_id is None:
        raise invalid_field(f"{field}.content_id", "an inline attachment needs a content_id (HTML refers to it "
                                                   "as cid:<content_id>)")
    data = _content(item.get("content_base64"), f"{field}.content_base64", max_message_bytes)
    return OutgoingAttachment(filename, content_type, data, content_id, inline)


def _filename(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(field, "a filename is required")
    if len(value) > MAX_FILENAME:
        raise invalid_field(field, f"the filename is longer than {MAX_FILENAME} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise invalid_field(field, "the filename must not contain control characters (CR, LF, NUL ...)")
    if "/" in value or "\\" in value or value.strip() in (".", ".."):
        raise invalid_field(field, "the filename must be a plain name, without / or \\")
    if any(c in _BIDI for c in value):
        raise invalid_field(field, "the filename must not contain bidirectional override characters")
    return value


def _content_type(value: Any, field: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _CONTENT_TYPE.match(text):
        raise invalid_field(field, "content_type must be type/subtype, e.g. application/pdf (no parameters)")
    if text.startswith(("multipart/", "message/")):
        raise invalid_field(field, "multipart/* and message/* cannot be attached; use application/octet-stream")
    return text


def _content_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_field(field, "content_id must be a string")
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if len(text) > MAX_CONTENT_ID or not _CONTENT_ID.match(text):
        raise invalid_field(field, "content_id must look like part1@example.com (RFC 2392), without spaces")
    return text


def _content(value: Any, field: str, max_message_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise invalid_field(field, "content_base64 (the file's bytes in base64) is required")
    compact = _WHITESPACE.sub("", value)
    if len(compact) > 2 * max_message_bytes:  # far over: refuse before decoding anything
        raise _too_large(field, (len(compact) // 4) * 3, max_message_bytes)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_field(field, "content_base64 is not valid base64") from None
    if encoded_size(len(data)) + HEADER_ALLOWANCE > max_message_bytes:
        raise _too_large(field, len(data), max_message_bytes)
    return data


def _too_large(field: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the attachment ({size} bytes) does not fit in a message of at most {limit} bytes "
                           "once base64-encoded", {"field": field, "limit": limit, "size": size})
