"""Public identifiers: a type prefix plus a time-ordered random part (sortable, unguessable)."""

from __future__ import annotations

import base64
import secrets
import time

_ALPHABET_PAD = "="


def new_id(prefix: str) -> str:
    """`prefix_` + 26 base32 chars: 48 bits of milliseconds then 80 random bits.

    Time first so ids sort by creation, which keeps B-tree inserts local and cursors simple.
    """
    raw = int(time.time() * 1000).to_bytes(6, "big") + secrets.token_bytes(10)
    body = base64.b32encode(raw).decode("ascii").rstrip(_ALPHABET_PAD).lower()
    return f"{prefix}_{body}"
