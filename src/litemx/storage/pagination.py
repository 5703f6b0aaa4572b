"""Opaque cursors: base64url JSON of the last row's sort key. Clients never parse them."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from litemx.errors import invalid_field

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Page:
    limit: int
    after: Any = None  # decoded sort key of the last row of the previous page


@dataclass(frozen=True)
class PageResult:
    items: list[dict[str, Any]]
    next_cursor: str | None


def page(limit: int | None, cursor: str | None, kind: type | None = None) -> Page:
    """Raises: InvalidRequest naming `limit` or `cursor`.

    `kind` is the type the list's sort key has (str or int); a cursor decoding to anything else
    was not issued by this list and is refused instead of reaching the query.
    """
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_field("limit", f"limit must be between 1 and {MAX_LIMIT}")
    after = decode_cursor(cursor) if cursor else None
    if after is not None and kind is not None and not _is_kind(after, kind):
        raise invalid_field("cursor", "cursor is not one this server issued")
    return Page(limit, after)


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value < 2**63
    return isinstance(value, kind) and not isinstance(value, bool) and (kind is not str or "\x00" not in value)


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_field("cursor", "cursor is not one this server issued") from None


def finish(rows: list[dict[str, Any]], p: Page, key: str) -> PageResult:
    """Rows were fetched with limit+1: the extra row only proves another page exists."""
    more = len(rows) > p.limit
    rows = rows[: p.limit]
    return PageResult(rows, encode_cursor(rows[-1][key]) if more and rows else None)
