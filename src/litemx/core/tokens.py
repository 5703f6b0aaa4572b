"""Bearer secrets: `lmx_` + 43 base64url chars of 32 random bytes.

Only SHA-256(secret) is stored. The first PREFIX_LEN characters after `lmx_` are stored in
clear and indexed so authentication is one index probe followed by a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_MARK = "lmx_"
PREFIX_LEN = 12


@dataclass(frozen=True)
class NewSecret:
    secret: str
    prefix: str
    digest: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"NewSecret(prefix={self.prefix!r})"


def generate() -> NewSecret:
    secret = TOKEN_MARK + secrets.token_urlsafe(32)
    return NewSecret(secret, prefix_of(secret) or "", digest(secret))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def prefix_of(secret: str) -> str | None:
    """The lookup prefix, or None when the string cannot be one of our tokens."""
    if not secret.startswith(TOKEN_MARK) or len(secret) < len(TOKEN_MARK) + PREFIX_LEN + 8:
        return None
    return secret[len(TOKEN_MARK) : len(TOKEN_MARK) + PREFIX_LEN]


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
