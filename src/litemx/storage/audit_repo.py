"""The append-only audit log: insert and filtered, paginated reads (newest first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select

from litemx.storage.lean_insert import LeanInsert
from litemx.storage.pagination import Page, PageResult, finish
from litemx.storage.repo import many
from litemx.storage.schema import audit_events as t


@dataclass(frozen=True)
class AuditFilter:
    account_id: str
    mailbox: str | None = None
    action: str | None = None
    resource_type: str | None = None
    # Restrict to these mailboxes (a scoped token's grants) plus the token's own
    # account-level events; None means every event of the account.
    visible_mailboxes: frozenset[str] | None = None
    own_token_id: str | None = None


_LEAN_INSERT = LeanInsert(t)
_APPEND = insert(t).returning(t.c.id)  # built once: executed with parameters it hits the compiled cache


def append(conn: Connection, event: dict[str, Any]) -> int:
    return int(conn.execute(_APPEND, event).scalar_one())


def append_many(conn: Connection, events: list[dict[str, Any]]) -> list[None]:
    """Several events in one executemany (the group-committed audit writer's batch, and every
    read's event: storage/lean_insert.py)."""
    _LEAN_INSERT.many(conn, events)
    return [None] * len(events)


def list_events(conn: Connection, f: AuditFilter, p: Page) -> PageResult:
    conds = [t.c.account_id == f.account_id]
    for column, value in (("mailbox", f.mailbox), ("action", f.action), ("resource_type", f.resource_type)):
        if value is not None:
            conds.append(t.c[column] == value)
    if f.visible_mailboxes is not None:
        mine = and_(t.c.actor_id == f.own_token_id, t.c.mailbox.is_(None))
        conds.append(or_(t.c.mailbox.in_(sorted(f.visible_mailboxes)), mine))
    if p.after is not None:
        conds.append(t.c.id < int(p.after))
    stmt = select(t).where(*conds).order_by(t.c.id.desc()).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "id")
