"""Token scopes (SPEC §2). Read never implies send."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    MAILBOXES_READ = "mailboxes:read"
    MESSAGES_READ = "messages:read"
    MESSAGES_SEARCH = "messages:search"
    DRAFTS_WRITE = "drafts:write"
    EMAIL_SEND = "email:send"
    AUDIT_READ = "audit:read"
    DOMAINS_READ = "domains:read"
    DOMAINS_WRITE = "domains:write"
    MAILBOXES_WRITE = "mailboxes:write"
    TOKENS_WRITE = "tokens:write"


ALL_SCOPES: frozenset[str] = frozenset(s.value for s in Scope)
ALL_MAILBOXES = "*"


def parse_scopes(values: list[str]) -> frozenset[str]:
    """Raises: ValueError naming the first unknown scope."""
    unknown = [v for v in values if v not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}")
    return frozenset(values)
