"""Accounts and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from litemx.storage.pagination import Page, PageResult, finish
from litemx.storage.repo import add, by_column, many
from litemx.storage.schema import accounts, tokens


def add_account(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, accounts, values)


def get_account(conn: Connection, account_id: str) -> dict[str, Any] | None:
    return by_column(conn, accounts, "id", account_id)


def add_token(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    return add(conn, tokens, values)


def token_by_prefix(conn: Connection, prefix: str) -> dict[str, Any] | None:
    return by_column(conn, tokens, "prefix", prefix)


# Every request authenticates: one indexed probe, built once (executed with a parameter it
# hits the compiled cache instead of being rebuilt and re-keyed per request).
_CREDENTIAL = (select(tokens, accounts.c.plan.label("account_plan"),
                      accounts.c.disabled_at.label("account_disabled_at"))
               .join(accounts, accounts.c.id == tokens.c.account_id)
               .where(tokens.c.prefix == bindparam("b_prefix")))


def credential(conn: Connection, prefix: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The token with this prefix and the facts of its account that authentication needs
    (id, plan, disabled_at), in one query; None when there is no such token."""
    found = conn.execute(_CREDENTIAL, {"b_prefix": prefix}).first()
    if found is None:
        return None
    row = dict(found._mapping)
    account = {"id": row["account_id"], "plan": row.pop("account_plan"),
               "disabled_at": row.pop("account_disabled_at")}
    return row, account


def token_in_account(conn: Connection, account_id: str, token_id: str) -> dict[str, Any] | None:
    row = by_column(conn, tokens, "id", token_id)
    return row if row is not None and row["account_id"] == account_id else None


def list_tokens(conn: Connection, account_id: str, p: Page) -> PageResult:
    conds = [tokens.c.account_id == account_id]
    if p.after is not None:
        conds.append(tokens.c.id > p.after)
    stmt = select(tokens).where(*conds).order_by(tokens.c.id).limit(p.limit + 1)
    return finish(many(conn, stmt), p, "id")


def revoke_token(conn: Connection, token_id: str, at: datetime) -> None:
    conn.execute(update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=at))
