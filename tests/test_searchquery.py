"""Search query language (SPEC §5) and its FTS5 / PostgreSQL renderings, checked on real FTS5."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litemx.core.searchquery import (
    FtsColumns,
    InvalidQuery,
    Query,
    Term,
    TsQueryPart,
    parse_query,
    to_fts5,
    to_tsquery_parts,
)
from litemx.errors import InvalidRequest

ROWS = [
    ("Invoice for March", "Please pay the attached invoice by Friday.", "Alice Smith <alice@example.com>",
     "billing@project.dev"),
    ("Re: Server down", "The database server is down again, see logs.", "Bob <bob@ops.example>",
     "support@project.dev"),
    ('He said "hi"', "quote\"inside and AND OR NOT NEAR words", "Carol <carol@example.org>", "hello@project.dev"),
]


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE docs USING fts5(subject, body, from_addr, to_addr)")
    conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", ROWS)
    yield conn
    conn.close()


def matching_subjects(conn: sqlite3.Connection, text: str) -> list[str]:
    expression = to_fts5(parse_query(text))
    assert expression is not None
    rows = conn.execute("SELECT subject FROM docs WHERE docs MATCH ? ORDER BY rowid", (expression,))
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- parsing


def test_words_phrases_and_fields_parse_into_the_ast() -> None:
    query = parse_query('invoice "pay the" from:alice@example.com to:"Support Desk" subject:March '
                        "has:attachment after:2024-01-01 before:2024-02-01")
    assert query == Query(
        terms=("invoice",), phrases=("pay the",), from_=(Term("alice@example.com"),),
        to=(Term("Support Desk", phrase=True),), subject=(Term("March"),), has_attachment=True,
        after=date(2024, 1, 1), before=date(2024, 2, 1),
    )
    assert query.after_datetime == datetime(2024, 1, 1, tzinfo=UTC)
    assert query.before_datetime == datetime(2024, 2, 1, tzinfo=UTC)


def test_keys_are_case_insensitive() -> None:
    assert parse_query("FROM:bob Subject:x HAS:Attachment").from_ == (Term("bob"),)


def test_an_unbalanced_quote_makes_the_rest_a_phrase() -> None:
    assert parse_query('report "server is down').phrases == ("server is down",)
    assert parse_query('subject:"server down').subject == (Term("server down", phrase=True),)


def test_repeated_dates_intersect() -> None:
    query = parse_query("after:2024-01-01 after:2024-03-01 before:2024-06-01 before:2024-05-01")
    assert (query.after, query.before) == (date(2024, 3, 1), date(2024, 5, 1))


def test_urls_times_and_single_letter_prefixes_are_free_words() -> None:
    assert parse_query("https://example.com/a 10:30 C:").terms == ("https://example.com/a", "10:30", "C:")


def test_an_empty_query_is_empty() -> None:
    assert parse_query("   ").is_empty and to_fts5(parse_query("")) is None


def test_control_characters_are_dropped() -> None:
    assert parse_query("a\x00b\x1fc").terms == ("a", "b", "c")


@pytest.mark.parametrize(("text", "field"), [
    ("label:inbox", "label"), ("is:unread", "is"), ("from: alice", "from"), ('subject:""', "subject"),
    ("has:pdf", "has"), ("after:2024-13-01", "after"), ("before:yesterday", "before"),
    ("after:20240101", "after"), ("before:2024-02-30", "before"), ("x" * 1001, "q"),
    (" ".join(["w"] * 40), "q"),
])
def test_invalid_queries_name_the_operator_and_token(text: str, field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query(text)
    assert info.value.field == field
    assert isinstance(info.value, InvalidRequest) and info.value.code == "invalid_request"
    assert info.value.details["field"] == "q" and info.value.details["operator"] == field


def test_an_unknown_key_says_how_to_search_it_literally() -> None:
    with pytest.raises(InvalidQuery, match='unknown search key "label:".*quote'):
        parse_query("label:inbox")
    assert parse_query('"label:inbox"').terms == ("label:inbox",)


# --------------------------------------------------------------------------- FTS5


def test_fts5_rendering_quotes_every_token() -> None:
    query = parse_query('say "he said" subject:x from:a"b')
    assert to_fts5(query) == '"say" AND "b" AND "he said" AND {from_addr} : "a" AND {subject} : "x"'


def test_fts5_rendering_doubles_embedded_quotes_and_uses_custom_columns() -> None:
    query = Query(terms=('a"b',), subject=(Term("q"),))
    assert to_fts5(query, FtsColumns(subject="subj")) == '"a""b" AND {subj} : "q"'


def test_non_text_conditions_render_no_fts5_expression() -> None:
    assert to_fts5(parse_query("has:attachment after:2024-01-01")) is None
    assert to_fts5(parse_query("!!! ---")) is None


def test_free_words_match_any_column(fts: sqlite3.Connection) -> None:
    assert matching_subjects(fts, "invoice friday") == ["Invoice for March"]
    assert matching_subjects(fts, "bob") == ["Re: Server down"]


def test_phrases_need_adjacent_words(fts: sqlite3.Connection) -> None:
    assert matching_subjects(fts, '"database server"') == ["Re: Server down"]
    assert matching_subjects(fts, '"server database"') == []


def test_field_filters_search_only_their_column(fts: sqlite3.Connection) -> None:
    assert matching_subjects(fts, "subject:server") == ["Re: Server down"]
    assert matching_subjects(fts, "subject:database") == []
    assert matching_subjects(fts, "from:alice@example.com") == ["Invoice for March"]
    assert matching_subjects(fts, 'to:"hello@project.dev"') == ['He said "hi"']


def test_fts5_operators_in_user_text_are_just_words(fts: sqlite3.Connection) -> None:
    assert matching_subjects(fts, "AND OR NOT NEAR") == ['He said "hi"']
    assert matching_subjects(fts, 'quote"inside') == ['He said "hi"']
    assert matching_subjects(fts, "* ( ) : ^ {subject} -x") == []


# --------------------------------------------------------------------------- PostgreSQL


def test_tsquery_parts_are_bindable_data() -> None:
    query = parse_query('pay "the attached invoice" from:alice subject:"for march" has:attachment ???')
    assert to_tsquery_parts(query) == [
        TsQueryPart("any", "plainto_tsquery", "pay"),
        TsQueryPart("any", "phraseto_tsquery", "the attached invoice"),
        TsQueryPart("from", "plainto_tsquery", "alice"),
        TsQueryPart("subject", "phraseto_tsquery", "for march"),
    ]


# --------------------------------------------------------------------------- properties


def assert_parses_and_renders_safely(conn: sqlite3.Connection, text: str) -> None:
    try:
        query = parse_query(text)
    except InvalidQuery:
        return
    expression = to_fts5(query)
    if expression is not None:
        conn.execute("SELECT count(*) FROM docs WHERE docs MATCH ?", (expression,)).fetchone()
    for part in to_tsquery_parts(query):
        assert "\x00" not in part.text and part.text.strip()


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_invalid_query_and_fts5_accepts_the_rendering(
    fts: sqlite3.Connection, text: str
) -> None:
    assert_parses_and_renders_safely(fts, text)


_QUERYISH = st.lists(st.one_of(
    st.sampled_from(['"', "from:", "to:", "subject:", "has:attachment", "after:2024-01-01", "AND", "OR",
                     "NEAR(", ")", "*", "^", "-", "{", "}", ":", "'", "\\", "subject:\"", "a\"b"]),
    st.text(max_size=8)), max_size=12).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(_QUERYISH)
def test_query_shaped_text_never_produces_an_fts5_syntax_error(fts: sqlite3.Connection, text: str) -> None:
    assert_parses_and_renders_safely(fts, text)

