"""DKIM key rows (table `dkim_keys`) and the domain listing the DNS re-check walks.

Key rows carry the sealed private key; callers render only the public columns (see
`service.domains_dns`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from litemx.storage.repo import add, many
from litemx.storage.schema import dkim_keys, domains

ACTIVE = "active"
RETIRING = "retiring"
RETIRED = "retired"
PUBLISHED = (ACTIVE, RETIRING)


def add_key(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, dkim_keys, values)


def keys_for_domain(conn: Connection, domain_id: str, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The domain's keys, oldest first; RSA before Ed25519 among keys made together."""
    stmt = select(dkim_keys).where(dkim_keys.c.domain_id == domain_id)
    if statuses is not None:
        stmt = stmt.where(dkim_keys.c.status.in_(list(statuses)))
    # "rsa" sorts after "ed25519": descending puts RSA, which every verifier knows, first.
    return many(conn, stmt.order_by(dkim_keys.c.created_at, dkim_keys.c.algorithm.desc(), dkim_keys.c.selector))


def selectors(conn: Connection, domain_id: str) -> list[str]:
    """Every selector the domain ever used, retired ones included (never reused)."""
    return [r["selector"] for r in many(conn, select(dkim_keys.c.selector).where(dkim_keys.c.domain_id == domain_id))]


def set_status(conn: Connection, key_id: str, status: str, at: datetime | None = None) -> None:
    """Move a key along active -> retiring -> retired; `at` stamps retired_at."""
    values: dict[str, Any] = {"status": status}
    if status == RETIRED:
        values["retired_at"] = at
    conn.execute(update(dkim_keys).where(dkim_keys.c.id == key_id).values(**values))


def domains_for_recheck(conn: Connection, after: str | None, limit: int) -> list[dict[str, Any]]:
    """One batch of the instance's enabled domains by name, after `after` (the background
    re-check's work list; batches keep memory flat however many domains there are)."""
    stmt = select(domains).where(domains.c.disabled_at.is_(None))
    if after is not None:
        stmt = stmt.where(domains.c.name > after)
    return many(conn, stmt.order_by(domains.c.name).limit(limit))
