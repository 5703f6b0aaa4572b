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
and sorting every match.

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, String, bindparam, cast, func, literal_column, select, text
from sqlalchemy.sql import column, table

from litemx.core.searchquery import Query, TsQueryPart, to_fts5, to_tsquery_parts
from litemx.storage.messages_repo import LIST_COLUMNS, MessageScope, scope_conditions
from litemx.storage.repo import many
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
    rather than everything.
    """
    if conn.dialect.name == "sqlite":
        stmt, order = _sqlite_statement(query)
    else:
        stmt, order = _postgres_statement(query), messages.c.seq
    if stmt is None:
        return SearchPage([], False)
    conds = _common_conditions(scope, query)
    if before_seq is not None:
        conds.append(order < before_seq)
    rows = many(conn, stmt.where(*conds).order_by(order.desc()).limit(limit + 1))
    return SearchPage(rows[:limit], len(rows) > limit)


def _common_conditions(scope: MessageScope, query: Query) -> list[ColumnElement[bool]]:
    """Scope, retention and the non-text operators (has:, after:, before:) as SQL."""
    conds = [*scope_conditions(scope), messages.c.deleted_content_at.is_(None), messages.c.raw_key.is_not(None)]
    if query.has_attachment:
        conds.append(messages.c.has_attachments.is_(True))
    if query.after_datetime is not None:
        conds.append(messages.c.received_at >= query.after_datetime)
    if query.before_datetime is not None:
        conds.append(messages.c.received_at < query.before_datetime)
    return conds


def _plain_statement() -> Select[Any]:
    return select(*LIST_COLUMNS, messages.c.snippet.label("hit_snippet"))


# --------------------------------------------------------------------------- SQLite FTS5


def _sqlite_statement(query: Query) -> tuple[Select[Any] | None, ColumnElement[Any]]:
    """The statement and the column that orders it (and carries the cursor): the FTS rowid
    when words are matched (== messages.seq, see the module doc), else messages.seq."""
    match = to_fts5(query)
    if match is None:
        return (None if has_text(query) else _plain_statement()), messages.c.seq
    stmt = (select(*LIST_COLUMNS, _SNIPPET.label("hit_snippet"))
            .select_from(messages.join(_SQLITE_FTS, _SQLITE_FTS.c.rowid == messages.c.seq))
            .where(text("message_fts MATCH :match").bindparams(bindparam("match", match, type_=String))))
    return stmt, _SQLITE_FTS.c.rowid


# --------------------------------------------------------------------------- PostgreSQL tsvector


def _postgres_statement(query: Query) -> Select[Any] | None:
    parts = to_tsquery_parts(query)
    if not parts:
        return None if has_text(query) else _plain_statement()
    tsqueries = [_tsquery(part, f"t{i}") for i, part in enumerate(parts)]
    headline = func.ts_headline(_CONFIG, func.left(func.coalesce(messages.c.text_body, ""), HEADLINE_SOURCE_CHARS),
                                _and_all(tsqueries), _HEADLINE_OPTIONS)
    stmt = (select(*LIST_COLUMNS, headline.label("hit_snippet"))
            .select_from(messages.join(_PG_FTS, _PG_FTS.c.seq == messages.c.seq)))
    return stmt.where(*[_pg_condition(part, tsq, f"t{i}") for i, (part, tsq) in enumerate(zip(parts, tsqueries, strict=True))])


def _tsquery(part: TsQueryPart, name: str) -> ColumnElement[Any]:
    """`plainto_tsquery('simple', :tN)`; the function comes from our table, never from input."""
    return _TS_FUNCTIONS[part.function](_CONFIG, bindparam(name, part.text, type_=String))


def _and_all(tsqueries: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    combined = tsqueries[0]
    for tsq in tsqueries[1:]:
        combined = combined.op("&&")(tsq)
    return combined


def _pg_condition(part: TsQueryPart, tsq: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    doc = _PG_FTS.c.doc
    if part.field == "any":
        return doc.op("@@")(tsq)
    if part.field == "subject":
        # The indexed test narrows with the GIN index; ts_filter keeps only subject (weight A) hits.
        return doc.op("@@")(tsq) & func.ts_filter(doc, literal_column("'{a}'::\"char\"[]")).op("@@")(tsq)
    return _address_words(part.field).op("@@")(_address_query(part, name))


def _address_words(field: str) -> ColumnElement[Any]:
    """The sender's (or recipients') words, split on anything not a letter or digit like FTS5."""
    if field == "from":
        source = func.coalesce(messages.c.from_name, "").op("||")(" ").op("||")(func.coalesce(messages.c.from_addr, ""))
    else:
        source = cast(messages.c.to_addrs, String).op("||")(" ").op("||")(cast(messages.c.cc_addrs, String))
    return func.to_tsvector(_CONFIG, func.regexp_replace(source, "[^[:alnum:]]+", " ", "g"))


def _address_query(part: TsQueryPart, name: str) -> ColumnElement[Any]:
    """The value's words as a phrase, split the same way as `_address_words`."""
    value = func.regexp_replace(bindparam(f"{name}a", part.text, type_=String), "[^[:alnum:]]+", " ", "g")
    return func.phraseto_tsquery(_CONFIG, value)
