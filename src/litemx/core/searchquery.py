"""The search language of SPEC §5, parsed into a frozen AST and rendered safely for FTS5 / PostgreSQL.

Grammar (whitespace separates items; every item narrows the result — they are ANDed):

    word                 a free word
    "a phrase"           a phrase; an unclosed quote runs to the end of the query
    from:VALUE           sender name or address contains VALUE (a word or a "quoted phrase")
    to:VALUE             a recipient (the storage layer indexes To and Cc) contains VALUE
    subject:VALUE        the subject contains VALUE
    has:attachment       the message has a user-visible attachment
    after:YYYY-MM-DD     received on or after that day (00:00 UTC)
    before:YYYY-MM-DD    received before that day (00:00 UTC)

Keys are case-insensitive. An unknown `key:value` (2+ ASCII letters before the colon) raises
`InvalidQuery` naming the key, because an agent learns more from "unknown search key" than from
silently wrong results; quote the text (`"re:invoice"`) to search it literally. URLs
(`https://...`) and words like `10:30` or `C:` stay free words. There is no OR, NOT or
prefix search: `OR` and `-word` are plain words.

Raw user text in an FTS5 MATCH is a syntax error waiting to happen, so `to_fts5` quotes every
token (`"` doubled inside) and `to_tsquery_parts` returns data for bound parameters only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Literal

from litemx.errors import InvalidRequest

MAX_QUERY_LENGTH = 1000
MAX_ITEMS = 32
KEYS = ("from", "to", "subject", "has", "after", "before")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # Cc and lone surrogates: never searchable
_ITEM = re.compile(r'(?:(?P<key>[A-Za-z]{2,20}):)?(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+))')
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class InvalidQuery(InvalidRequest):
    """A query that cannot be parsed; `field` is the operator at fault ("after", "q"...)."""

    def __init__(self, field: str, message: str, token: str | None = None):
        super().__init__(message, {"field": "q", "operator": field, "token": token})
        self.field = field
        self.token = token


@dataclass(frozen=True)
class Term:
    """A field value: one word, or a phrase whose words must be adjacent."""

    text: str
    phrase: bool = False


@dataclass(frozen=True)
class Query:
    """Parsed search. Empty tuples / None mean "no condition"."""

    terms: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    from_: tuple[Term, ...] = ()
    to: tuple[Term, ...] = ()
    subject: tuple[Term, ...] = ()
    has_attachment: bool = False
    after: date | None = None
    before: date | None = None

    @property
    def is_empty(self) -> bool:
        return self == Query()

    @property
    def after_datetime(self) -> datetime | None:
        """Inclusive lower bound on received time (start of the `after` day, UTC)."""
        return datetime.combine(self.after, datetime.min.time(), UTC) if self.after else None

    @property
    def before_datetime(self) -> datetime | None:
        """Exclusive upper bound on received time (start of the `before` day, UTC)."""
        return datetime.combine(self.before, datetime.min.time(), UTC) if self.before else None


@dataclass(frozen=True)
class _Item:
    key: str | None
    text: str
    phrase: bool
    token: str


def parse_query(text: str) -> Query:
    """Parse a search string.

    Raises:
        InvalidQuery: unknown `key:`, a key without a value, `has:` other than attachment,
            a date that is not a real YYYY-MM-DD day, or a query that is too long.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery("q", f"search query longer than {MAX_QUERY_LENGTH} characters")
    query = Query()
    for count, item in enumerate(_items(_CONTROL.sub(" ", text)), start=1):
        if count > MAX_ITEMS:
            raise InvalidQuery("q", f"search query has more than {MAX_ITEMS} items", item.token)
        query = _apply(query, item)
    return query


def _items(text: str) -> Iterator[_Item]:
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        match = _ITEM.match(text, pos)
        if match is None:
            return
        pos = match.end()
        yield _item(match)


def _item(match: re.Match[str]) -> _Item:
    key, phrase, word = match["key"], match["phrase"], match["word"]
    if key is not None and word is not None and word.startswith("/"):  # a URL, not an operator
        key, word = None, f"{key}:{word}"
    if phrase is not None:
        return _Item(key.lower() if key else None, " ".join(phrase.split()), True, match[0])
    return _Item(key.lower() if key else None, word or "", False, match[0])


def _apply(query: Query, item: _Item) -> Query:
    """Fold one item into the query (dates intersect: the latest `after`, the earliest `before`)."""
    if item.key is None:
        return _free_text(query, item)
    if item.key not in KEYS:
        raise InvalidQuery(item.key, f'unknown search key "{item.key}:"; known keys: '
                           + ", ".join(f"{k}:" for k in KEYS) + "; quote text to search it literally",
                           item.token)
    if not item.text:
        raise InvalidQuery(item.key, f'"{item.key}:" needs a value', item.token)
    return _FIELD_HANDLERS[item.key](query, item)


def _free_text(query: Query, item: _Item) -> Query:
    if not item.text:
        return query
    bare_key = item.text[:-1].lower() if item.text.endswith(":") and not item.phrase else None
    if bare_key in KEYS:  # "from: alice" — the value must follow the colon directly
        raise InvalidQuery(bare_key, f'"{bare_key}:" needs a value directly after the colon', item.token)
    if item.phrase and " " in item.text:
        return replace(query, phrases=(*query.phrases, item.text))
    return replace(query, terms=(*query.terms, item.text))


def _address_or_subject(query: Query, item: _Item) -> Query:
    field = "from_" if item.key == "from" else item.key
    term = Term(item.text, item.phrase and " " in item.text)
    return replace(query, **{field: (*getattr(query, field), term)})


def _has(query: Query, item: _Item) -> Query:
    if item.text.lower() not in ("attachment", "attachments"):
        raise InvalidQuery("has", 'only "has:attachment" is supported', item.token)
    return replace(query, has_attachment=True)


def _date_bound(query: Query, item: _Item) -> Query:
    day = _parse_day(item)
    if item.key == "after":
        return replace(query, after=max(day, query.after) if query.after else day)
    return replace(query, before=min(day, query.before) if query.before else day)


def _parse_day(item: _Item) -> date:
    """Raises: InvalidQuery unless the value is a real calendar day written YYYY-MM-DD."""
    if _DATE.fullmatch(item.text.strip()):
        try:
            return date.fromisoformat(item.text.strip())
        except ValueError:
            pass
    raise InvalidQuery(str(item.key), f'"{item.key}:" needs a date written YYYY-MM-DD', item.token)


_FIELD_HANDLERS = {
    "from": _address_or_subject, "to": _address_or_subject, "subject": _address_or_subject,
    "has": _has, "after": _date_bound, "before": _date_bound,
}


# --------------------------------------------------------------------------- renderers


@dataclass(frozen=True)
class FtsColumns:
    """FTS5 column names the storage layer's index uses for each field."""

    subject: str = "subject"
    from_: str = "from_addr"
    to: str = "to_addr"


def searchable(text: str) -> bool:
    """True when the text holds a character the FTS tokenisers index (letters or digits).

    Punctuation-only tokens become empty phrases, which match nothing in FTS5 and are empty
    tsqueries in PostgreSQL, so both renderers skip them.
    """
    return any(ch.isalnum() for ch in text)


def fts5_string(text: str) -> str:
    """An FTS5 string literal: double quotes, with `"` doubled (SQLite FTS5 §3.1)."""
    return '"' + text.replace('"', '""') + '"'


def to_fts5(query: Query, columns: FtsColumns = FtsColumns()) -> str | None:
    """The MATCH expression for the text parts of `query`, or None when it has none.

    Every string is quoted, so user text is never FTS5 syntax; field terms use column
    filters (`{subject} : "..."`). has:/after:/before: are not FTS conditions: the storage
    layer applies them as SQL predicates.
    """
    parts = [fts5_string(t) for t in (*query.terms, *query.phrases) if searchable(t)]
    for column, terms in ((columns.from_, query.from_), (columns.to, query.to), (columns.subject, query.subject)):
        parts.extend(f"{{{column}}} : {fts5_string(t.text)}" for t in terms if searchable(t.text))
    return " AND ".join(parts) if parts else None


TsField = Literal["any", "from", "to", "subject"]
TsFunction = Literal["plainto_tsquery", "phraseto_tsquery"]


@dataclass(frozen=True)
class TsQueryPart:
    """One PostgreSQL full-text condition: `<function>(config, :text)` against `field`'s vector.

    `function` is one of two fixed names (never user text) for the storage layer to pick
    from its own table; `text` is always bound as a parameter. Parts are ANDed.
    """

    field: TsField
    function: TsFunction
    text: str


def to_tsquery_parts(query: Query) -> list[TsQueryPart]:
    """The text conditions of `query` as bindable PostgreSQL pieces (empty when there are none)."""
    parts = [TsQueryPart("any", "plainto_tsquery", t) for t in query.terms if searchable(t)]
    parts += [TsQueryPart("any", "phraseto_tsquery", p) for p in query.phrases if searchable(p)]
    fields: tuple[tuple[TsField, tuple[Term, ...]], ...] = (
        ("from", query.from_), ("to", query.to), ("subject", query.subject))
    for name, terms in fields:
        parts += [TsQueryPart(name, _ts_function(t), t.text) for t in terms if searchable(t.text)]
    return parts


def _ts_function(term: Term) -> TsFunction:
    return "phraseto_tsquery" if term.phrase else "plainto_tsquery"
