"""Domains, mailboxes, aliases and catchalls: the address directory routing reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from litemx.storage.db import Database
from litemx.storage.pagination import Page, PageResult, finish
from litemx.storage.repo import add, by_column, many, one
from litemx.storage.schema import alias_targets, aliases, catchalls, domains, mailboxes, messages, routing_version


def domain_by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    return by_column(conn, domains, "name", name)


def add_domain(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, domains, values)


def list_domains(conn: Connection, account_id: str, p: Page, names: frozenset[str] | None) -> PageResult:
    conds = [domains.c.account_id == account_id]
    if names is not None:
        conds.append(domains.c.name.in_(sorted(names)))
    if p.after is not None:
        conds.append(domains.c.name > p.after)
    stmt = select(domains).where(*conds).order_by(domains.c.name).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "name")


def update_domain(conn: Connection, domain_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(domains).where(domains.c.id == domain_id).values(**values))


def mailbox_by_address(conn: Connection, address: str) -> dict[str, Any] | None:
    return by_column(conn, mailboxes, "address", address)


def mailbox_by_id(conn: Connection, mailbox_id: str) -> dict[str, Any] | None:
    return by_column(conn, mailboxes, "id", mailbox_id)


def add_mailbox(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, mailboxes, values)


def list_mailboxes(conn: Connection, account_id: str, p: Page, only: frozenset[str] | None,
                   domain_id: str | None = None) -> PageResult:
    conds = [mailboxes.c.account_id == account_id]
    if only is not None:
        conds.append(mailboxes.c.address.in_(sorted(only)))
    if domain_id is not None:
        conds.append(mailboxes.c.domain_id == domain_id)
    if p.after is not None:
        conds.append(mailboxes.c.address > p.after)
    stmt = select(mailboxes).where(*conds).order_by(mailboxes.c.address).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "address")


def update_mailbox(conn: Connection, mailbox_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(**values))


def mailbox_has_messages(conn: Connection, mailbox_id: str) -> bool:
    return one(conn, select(messages.c.seq).where(messages.c.mailbox_id == mailbox_id).limit(1)) is not None


def delete_mailbox(conn: Connection, mailbox_id: str) -> None:
    """Remove a mailbox and every route into it; an alias left with no target goes too."""
    alias_ids = [r["alias_id"] for r in many(conn, select(alias_targets).where(alias_targets.c.mailbox_id == mailbox_id))]
    conn.execute(delete(alias_targets).where(alias_targets.c.mailbox_id == mailbox_id))
    conn.execute(delete(catchalls).where(catchalls.c.mailbox_id == mailbox_id))
    for alias_id in alias_ids:
        if one(conn, select(alias_targets).where(alias_targets.c.alias_id == alias_id)) is None:
            conn.execute(delete(aliases).where(aliases.c.id == alias_id))
    conn.execute(delete(mailboxes).where(mailboxes.c.id == mailbox_id))


def alias_by_address(conn: Connection, address: str) -> dict[str, Any] | None:
    row = by_column(conn, aliases, "address", address)
    if row is not None:
        row["targets"] = alias_target_mailboxes(conn, row["id"])
    return row


def alias_target_mailboxes(conn: Connection, alias_id: str) -> list[dict[str, Any]]:
    stmt = (select(mailboxes).join(alias_targets, alias_targets.c.mailbox_id == mailboxes.c.id)
            .where(alias_targets.c.alias_id == alias_id).order_by(mailboxes.c.address))
    return many(conn, stmt)


def add_alias(conn: Connection, values: dict[str, Any], mailbox_ids: list[str]) -> None:
    add(conn, aliases, values)
    for mailbox_id in mailbox_ids:
        add(conn, alias_targets, {"alias_id": values["id"], "mailbox_id": mailbox_id})


def list_aliases(conn: Connection, account_id: str, p: Page, only: frozenset[str] | None) -> PageResult:
    conds = [aliases.c.account_id == account_id]
    if only is not None:  # aliases whose every target is visible (a list must not name hidden mailboxes)
        hidden = (select(alias_targets.c.alias_id).join(mailboxes, mailboxes.c.id == alias_targets.c.mailbox_id)
                  .where(mailboxes.c.address.not_in(sorted(only))))
        conds.append(aliases.c.id.not_in(hidden))
    if p.after is not None:
        conds.append(aliases.c.address > p.after)
    result = finish(many(conn, select(aliases).where(*conds).order_by(aliases.c.address).limit(p.limit + 1)),
                    p, "address")
    for row in result.items:
        row["targets"] = alias_target_mailboxes(conn, row["id"])
    return result


def delete_alias(conn: Connection, alias_id: str) -> None:
    conn.execute(delete(alias_targets).where(alias_targets.c.alias_id == alias_id))
    conn.execute(delete(aliases).where(aliases.c.id == alias_id))


def catchall_for(conn: Connection, domain_id: str) -> dict[str, Any] | None:
    stmt = (select(mailboxes).join(catchalls, catchalls.c.mailbox_id == mailboxes.c.id)
            .where(catchalls.c.domain_id == domain_id))
    return one(conn, stmt)


def set_catchall(conn: Connection, domain_id: str, mailbox_id: str | None, at: Any) -> None:
    conn.execute(delete(catchalls).where(catchalls.c.domain_id == domain_id))
    if mailbox_id is not None:
        add(conn, catchalls, {"domain_id": domain_id, "mailbox_id": mailbox_id, "updated_at": at})


_ROUTING_VERSION = select(routing_version.c.version).where(routing_version.c.id == 1)
# The same statement as plain SQL, for Database.peek (no SQLAlchemy connection on that path).
_ROUTING_VERSION_SQL = str(_ROUTING_VERSION.compile(compile_kwargs={"literal_binds": True}))


def current_routing_version(conn: Connection) -> int | None:
    """The directory's routing version (bumped by triggers, migration 0009); None if unseeded."""
    return _version(conn.execute(_ROUTING_VERSION).scalar_one_or_none())


def peek_routing_version(db: Database) -> int | None:
    """current_routing_version without a pooled transaction (Database.peek); None when the
    database has no such cheap path (PostgreSQL) or the row is missing."""
    return _version(db.peek(_ROUTING_VERSION_SQL))


def _version(value: Any) -> int | None:
    return None if value is None else int(value)
