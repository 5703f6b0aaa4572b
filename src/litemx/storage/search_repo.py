"""Full-text search over the index migration 0002 builds (SPEC §5 search language).

SQLite: `message_fts MATCH :match` where the match expression comes from `to_fts5`, which
quotes every user token, and FTS5 `snippet()` marks the hits. PostgreSQL: `doc @@
plainto_tsquery/phraseto_tsquery('simple', :tN)` with every text bound as a parameter, and
`ts_headline` for the snippet. User text never becomes SQL or FTS syntax on either side.

Both backends apply the same scope conditions as every other read (account, mailbox grants,
quarantine) inside the one query, and skip messages whose content retention removed.

Results are newest first (by seq), not by rank: mail search is mostly "the recent message
about X", and a stable order gives simple, exact cursor pagination. On SQLite the order and
the cursor are written on `message_fts.rowid` (the same number as `messages.seq`): FTS5 then
walks its doclists newest first and stops after the page instead of materialising, snippeting
and sorting every match. A query with `after:`/`before:` and no words would have nothing to
walk but `seq`; on SQLite it reads the `(account_id, late, received_at)` index instead
(`_date_statement`: exact, with the argument), so its cost does not grow with the account.

Field semantics, identical on both databases except where noted:
- free words and phrases match subject, sender, recipients or body;
- `subject:` matches the subject only (SQLite: FTS5 column filter; PostgreSQL: the weight-A
  part of the vector via `ts_filter`);
- `from:` / `to:` match the words of the sender's name and address (To and Cc for `to:`),
  so `from:alice`, `from:sender.example` and `from:alice@sender.example` all work. On
  PostgreSQL the address is re-tokenised at query time (its parser keeps an e-mail address
  as one lexeme), so these two conditions do not use the GIN index.
Known difference: PostgreSQL's 'simple' configuration keeps diacritics (FTS5 folds them), and
a free word matches an address in the body or headers only as a whole address there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (ColumnElement, Connection, Integer, Select, String, bindparam, cast, false, func,
                        literal_column, select, text, true, union_all)
from sqlalchemy.sql import column, table

from litemx.core.searchquery import Query, to_fts5, to_tsquery_parts
from litemx.storage import lean_select
from litemx.storage.messages_repo import (LIST_COLUMNS, ORDER_SLACK, MessageScope, ScopeShape, bound_scope_conditions,
                                          scope_params, scope_shape)
from litemx.storage.schema import messages

HIT_START = "**"  # snippet highlight markers (Markdown bold: readable by people and agents)
HIT_END = "**"
HEADLINE_SOURCE_CHARS = 20_000  # ts_headline cost grows with the text; hits past this are rare

_SQLITE_FTS = table("message_fts", column("rowid"))
_PG_FTS = table("message_fts", column("seq"), column("doc"))
_SNIPPET = literal_column(f"snippet(message_fts, 1, '{HIT_START}', '{HIT_END}', '…', 24)")
_CONFIG = literal_column("'simple'::regconfig")
_HEADLINE_OPTIONS = f"StartSel={HIT_START}, StopSel={HIT_END}, MaxWords=35, MinWords=15, MaxFragments=2"
_TS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "plainto_tsquery": func.plainto_tsquery, "phraseto_tsquery": func.phraseto_tsquery}


@dataclass(frozen=True)
class SearchPage:
    """One page of hits (each a list row plus `hit_snippet`), and whether more follow."""

    rows: list[dict[str, Any]]
    more: bool


def has_text(query: Query) -> bool:
    """True when the query names any text to match (words, phrases or field values)."""
    return bool(query.terms or query.phrases or query.from_ or query.to or query.subject)


def search(conn: Connection, scope: MessageScope, query: Query, limit: int, before_seq: int | None) -> SearchPage:
    """Newest-first hits for `query` inside `scope`; `limit` rows at most.

    A query whose text is all punctuation (nothing either index can hold) finds nothing
    rather than everything. The statement is built once per shape (which conditions and text
    parts it has, see `_statement`) and executed with this query's values as parameters.
    """
    sqlite = conn.dialect.name == "sqlite"
    texts = _texts(query, sqlite)
    if texts is None:
        return SearchPage([], False)
    shape = _Shape(sqlite, scope_shape(scope), tuple((function, field) for function, field, _ in texts),
                   query.has_attachment, query.after_datetime is not None, query.before_datetime is not None,
                   before_seq is not None)
    params = {**scope_params(scope), "b_limit": limit + 1, "q_after": query.after_datetime,
              "q_before": query.before_datetime, "b_before": before_seq}
    params.update({f"t{i}": value for i, (_, _, value) in enumerate(texts)})
    if shape.sqlite and not shape.texts and (shape.after or shape.before):
        params["q_floor"] = _date_floor(conn, shape, params, limit + 1)
        stmt = _date_statement(shape)
    else:
        stmt = _statement(shape)
    rows = lean_select.rows(conn, stmt, params)
    return SearchPage(rows[:limit], len(rows) > limit)


@dataclass(frozen=True)
class _Shape:
    """What a search statement is made of; its values are parameters."""

    sqlite: bool
    scope: ScopeShape
    texts: tuple[tuple[str, str], ...]  # SQLite: (("match", "")) or (); PostgreSQL: (function, field) per part
    has_attachment: bool
    after: bool
    before: bool
    cursor: bool


def _texts(query: Query, sqlite: bool) -> list[tuple[str, str, str]] | None:
    """The text parameters (function, field, value) the statement binds as t0, t1...; None when
    the query names text and none of it is indexable (the query finds nothing)."""
    if sqlite:
        match = to_fts5(query)
        if match is not None:
            return [("match", "", match)]
    else:
        parts = to_tsquery_parts(query)
        if parts:
            return [(part.function, part.field, part.text) for part in parts]
    return None if has_text(query) else []


@functools.lru_cache(maxsize=256)
def _statement(shape: _Shape) -> Select[Any]:
    if not shape.texts:
        stmt, order = _plain_statement(), messages.c.seq
    elif shape.sqlite:
        stmt, order = _sqlite_statement(), _SQLITE_FTS.c.rowid
    else:
        stmt, order = _postgres_statement(shape.texts), messages.c.seq
    conds = [*_common_conditions(shape), *_cursor(shape, order)]
    return stmt.where(*conds).order_by(order.desc()).limit(bindparam("b_limit", type_=Integer))


def _common_conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    """Scope, retention and the non-text operators (has:, after:, before:) as SQL."""
    conds = [*bound_scope_conditions(shape.scope), messages.c.deleted_content_at.is_(None),
             messages.c.raw_key.is_not(None)]
    if shape.has_attachment:
        conds.append(messages.c.has_attachments.is_(True))
    if shape.after:
        conds.append(messages.c.received_at >= bindparam("q_after"))
    if shape.before:
        conds.append(messages.c.received_at < bindparam("q_before"))
    return conds


def _plain_statement() -> Select[Any]:
    return select(*LIST_COLUMNS, messages.c.snippet.label("hit_snippet"))


# --------------------------------------------------------------------------- dates, no words (SQLite)
# Walking (account_id, seq) from the newest message reads every message newer than the range;
# sorting the range by seq reads all of it. Instead, with k = the rows wanted:
#   1. walk (account_id, late, received_at) down from the range's end over the rows that are
#      not late and match everything else, and take the k-th one's received_at, R_k;
#   2. the candidates are the matching rows that are late, or not late with received_at at or
#      after R_k - ORDER_SLACK; return the newest k of them by seq.
# Exact, not a heuristic: a non-late row z with received_at below R_k - ORDER_SLACK has a
# smaller seq than each of the k rows found in step 1 (each has received_at >= R_k, and
# add_message only stores a later non-late row whose received_at is at least every earlier
# non-late row's minus ORDER_SLACK), so z cannot be in the newest k. Fewer than k rows in
# step 1 means every matching row is a candidate. Both steps read about k rows plus those
# within the slack of R_k plus the range's late rows, whatever the size of the account.
# SQLite only: there writers are serialised, which is what makes `late` exact.
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)


def _date_floor(conn: Connection, shape: _Shape, params: dict[str, Any], k: int) -> datetime:
    """Step 1: the lowest received_at a non-late row may have and still be in the newest k."""
    kth = conn.execute(_kth_in_order(shape), {**params, "b_offset": k - 1}).scalar()
    lowest = params["q_after"] or _EARLIEST
    return lowest if kth is None else max(lowest, kth - ORDER_SLACK)


@functools.lru_cache(maxsize=64)
def _kth_in_order(shape: _Shape) -> Select[Any]:
    conds = [*_common_conditions(shape), messages.c.late == false(), *_cursor(shape, messages.c.seq)]
    return (select(messages.c.received_at).where(*conds).order_by(messages.c.received_at.desc())
            .limit(1).offset(bindparam("b_offset", type_=Integer)))


@functools.lru_cache(maxsize=64)
def _date_statement(shape: _Shape) -> Select[Any]:
    """Step 2. The candidate subqueries read only the covering (account_id, late, received_at)
    index; the scope, retention and has: conditions apply to the few rows they name."""
    before = [messages.c.received_at < bindparam("q_before")] if shape.before else []
    after = [messages.c.received_at >= bindparam("q_after")] if shape.after else []
    account = messages.c.account_id == bindparam("s_account")
    candidates = union_all(
        select(messages.c.seq).where(account, messages.c.late == false(),
                                     messages.c.received_at >= bindparam("q_floor"), *before),
        select(messages.c.seq).where(account, messages.c.late == true(), *after, *before))
    conds = [*_common_conditions(shape), messages.c.seq.in_(candidates), *_cursor(shape, messages.c.seq)]
    return (_plain_statement().where(*conds).order_by(messages.c.seq.desc())
            .limit(bindparam("b_limit", type_=Integer)))


def _cursor(shape: _Shape, order: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    return [order < bindparam("b_before")] if shape.cursor else []


# --------------------------------------------------------------------------- SQLite FTS5


def _sqlite_statement() -> Select[Any]:
    """Ordered (and its cursor bound) on the FTS rowid, == messages.seq (see the module doc)."""
    return (select(*LIST_COLUMNS, _SNIPPET.label("hit_snippet"))
            .select_from(messages.join(_SQLITE_FTS, _SQLITE_FTS.c.rowid == messages.c.seq))
            .where(text("message_fts MATCH :t0").bindparams(bindparam("t0", type_=String))))


# --------------------------------------------------------------------------- PostgreSQL tsvector


def _postgres_statement(texts: tuple[tuple[str, str], ...]) -> Select[Any]:
    tsqueries = [_tsquery(function, f"t{i}") for i, (function, _) in enumerate(texts)]
    headline = func.ts_headline(_CONFIG, func.left(func.coalesce(messages.c.text_body, ""), HEADLINE_SOURCE_CHARS),
                                _and_all(tsqueries), _HEADLINE_OPTIONS)
    stmt = (select(*LIST_COLUMNS, headline.label("hit_snippet"))
            .select_from(messages.join(_PG_FTS, _PG_FTS.c.seq == messages.c.seq)))
    return stmt.where(*[_pg_condition(field, tsq, f"t{i}") for i, ((_, field), tsq) in enumerate(zip(texts, tsqueries,
                                                                                                    strict=True))])


def _tsquery(function: str, name: str) -> ColumnElement[Any]:
    """`plainto_tsquery('simple', :tN)`; the function comes from our table, never from input."""
    return _TS_FUNCTIONS[function](_CONFIG, bindparam(name, type_=String))


def _and_all(tsqueries: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    combined = tsqueries[0]
    for tsq in tsqueries[1:]:
        combined = combined.op("&&")(tsq)
    return combined


def _pg_condition(field: str, tsq: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    doc = _PG_FTS.c.doc
    if field == "any":
        return doc.op("@@")(tsq)
    if field == "subject":
        # The indexed test narrows with the GIN index; ts_filter keeps only subject (weight A) hits.
        return doc.op("@@")(tsq) & func.ts_filter(doc, literal_column("'{a}'::\"char\"[]")).op("@@")(tsq)
    return _address_words(field).op("@@")(_address_query(name))


def _address_words(field: str) -> ColumnElement[Any]:
    """The sender's (or recipients') words, split on anything not a letter or digit like FTS5."""
    if field == "from":
        source = func.coalesce(messages.c.from_name, "").op("||")(" ").op("||")(func.coalesce(messages.c.from_addr, ""))
    else:
        source = cast(messages.c.to_addrs, String).op("||")(" ").op("||")(cast(messages.c.cc_addrs, String))
    return func.to_tsvector(_CONFIG, func.regexp_replace(source, "[^[:alnum:]]+", " ", "g"))


def _address_query(name: str) -> ColumnElement[Any]:
    """The value's words as a phrase, split the same way as `_address_words`."""
    value = func.regexp_replace(bindparam(name, type_=String), "[^[:alnum:]]+", " ", "g")
    return func.phraseto_tsquery(_CONFIG, value)
