"""Search (SPEC §5) through GET /api/messages/search on SQLite FTS5 and PostgreSQL tsvector:
every operator, combinations, hostile input, grant scoping, snippets, pagination, retention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from litemx.storage import messages_repo
from litemx.storage.schema import messages
from tests.support.api import Api, assert_error, audit_since, last_audit_id
from tests.support.inbox import Mail, message_row, send

SUPPORT = "support@acme.example"
BILLING = "billing@acme.example"
CORPUS = {
    "invoice": (datetime(2026, 3, 1, 12, tzinfo=UTC), Mail(
        sender="Carol Finance <carol@vendor.example>", subject="Invoice 2041 overdue",
        text="Please pay the attached invoice before Friday.", files=[("invoice.pdf", "application/pdf", b"%PDF")])),
    "parcel": (datetime(2026, 3, 5, 12, tzinfo=UTC), Mail(
        subject="Where is my parcel", text="My parcel tracking number is 77812 and it never arrived.")),
    "refund": (datetime(2026, 3, 10, 12, tzinfo=UTC), Mail(
        sender="Bob Stone <bob@customer.example>", cc="legal@acme.example", subject="Refund request",
        text="I would like a refund for order 5531, the blue kettle arrived broken.")),
    "copy": (datetime(2026, 3, 12, 12, tzinfo=UTC), Mail(
        sender="Carol Finance <carol@vendor.example>", to=BILLING, subject="Invoice copy",
        text="Copy of invoice 2041 for your records.", files=[("copy.pdf", "application/pdf", b"%PDF")])),
    "unicode": (datetime(2026, 3, 15, 12, tzinfo=UTC), Mail(
        sender="Zoë Ångström <zoe@nordic.example>", subject="Grüße aus Köln",
        text="Die Rechnung für März ist da. Das Büro in Tokio grüßt.")),
}
NEWEST_FIRST = sorted(CORPUS, key=lambda name: CORPUS[name][0], reverse=True)


@pytest.fixture
def corpus(api, services, clock) -> dict[str, str]:
    """name -> message id, each received at its CORPUS time."""
    ids = {}
    for name, (at, mail) in CORPUS.items():
        clock.current = at
        ids[name] = send(services, mail)
    return ids


def _search(api: Api, q: str, secret: str | None = None, **params: Any) -> dict[str, Any]:
    response = api.call("GET", "/api/messages/search", params={"q": q, **params}, secret=secret)
    assert response.status_code == 200, response.text
    return response.json()


def _names(corpus: dict[str, str], result: dict[str, Any]) -> list[str]:
    by_id = {v: k for k, v in corpus.items()}
    return [by_id[item["id"]] for item in result["items"]]


QUERIES = {
    "parcel": {"parcel"},
    "PARCEL": {"parcel"},
    "invoice 2041": {"invoice", "copy"},
    '"blue kettle"': {"refund"},
    '"kettle blue"': set(),
    "from:carol": {"invoice", "copy"},
    "from:carol@vendor.example": {"invoice", "copy"},
    "from:vendor.example": {"invoice", "copy"},
    'from:"Bob Stone"': {"refund"},
    "from:bob subject:refund": {"refund"},
    "to:billing": {"copy"},
    "to:legal@acme.example": {"refund"},
    "subject:invoice": {"invoice", "copy"},
    "subject:friday": set(),
    'subject:"invoice copy"': {"copy"},
    "has:attachment": {"invoice", "copy"},
    "after:2026-03-10": {"refund", "copy", "unicode"},
    "before:2026-03-05": {"invoice"},
    "after:2026-03-02 before:2026-03-11": {"parcel", "refund"},
    "invoice has:attachment before:2026-03-11": {"invoice"},
    "from:carol subject:copy records": {"copy"},
    "Köln": {"unicode"},
    "grüße": {"unicode"},
    "zoë": {"unicode"},
    "nothing-like-this": set(),
    "*": set(),
    '"" -': set(),
}


def test_each_operator_and_combination_finds_exactly_the_expected_messages(api, corpus):
    failures = []
    for q, expected in QUERIES.items():
        found = _names(corpus, _search(api, q))
        if set(found) != expected or found != [n for n in NEWEST_FIRST if n in expected]:
            failures.append(f"{q!r}: {found} != {sorted(expected)}")
    assert not failures, "\n".join(failures)


def test_hits_carry_snippets_marking_the_match(api, corpus):
    (hit,) = _search(api, "kettle")["items"]
    assert "**kettle**" in hit["snippet"] and "broken" in hit["snippet"]
    (plain,) = _search(api, "has:attachment after:2026-03-11")["items"]
    assert plain["snippet"] == "Copy of invoice 2041 for your records."  # no words: the stored preview


def test_results_paginate_newest_first_with_a_cursor(api, corpus):
    first = _search(api, "from:carol", limit=1)
    second = _search(api, "from:carol", limit=1, cursor=first["next_cursor"])
    assert _names(corpus, first) == ["copy"] and _names(corpus, second) == ["invoice"]
    assert second["next_cursor"] is None


def test_a_search_leaves_its_audit_event_with_the_query_and_count(api, services, corpus):
    since = last_audit_id(services)
    _search(api, "invoice", mailbox=SUPPORT)
    (event,) = audit_since(services, since)
    assert (event["action"], event["mailbox"], event["outcome"]) == ("message.search", SUPPORT, "ok")
    assert event["details"]["query"] == "invoice" and event["details"]["count"] == 1


def test_a_mailbox_scoped_token_never_finds_mail_outside_its_mailboxes(api, corpus):
    _, secret = api.token(["messages:search"], [SUPPORT])
    assert _names(corpus, _search(api, "invoice", secret=secret)) == ["invoice"]
    assert _names(corpus, _search(api, "to:billing", secret=secret)) == []
    assert _names(corpus, _search(api, "from:carol records", secret=secret)) == []
    assert_error(api.call("GET", "/api/messages/search", params={"q": "invoice", "mailbox": BILLING},
                          secret=secret), 404, "not_found")
    assert _names(corpus, _search(api, "invoice", mailbox=BILLING)) == ["copy"]


def test_another_account_finds_nothing(client, other_tenant, corpus):
    other = Api(client, other_tenant.token)
    assert _search(other, "invoice")["items"] == [] and _search(other, "has:attachment")["items"] == []


def test_content_removed_by_retention_is_not_found(api, services, corpus):
    seq = message_row(services, corpus["invoice"])["seq"]
    with services.infra.db.write() as conn:  # what the retention job does to one message's content
        messages_repo.unindex_message(conn, seq)
        conn.execute(update(messages).where(messages.c.seq == seq).values(
            raw_key=None, text_body=None, html_body=None, deleted_content_at=datetime(2026, 5, 1, tzinfo=UTC)))
    assert _names(corpus, _search(api, "friday")) == []
    assert _names(corpus, _search(api, "from:carol")) == ["copy"]
    assert _names(corpus, _search(api, "has:attachment")) == ["copy"]


INVALID = {"colour:red": "colour", "after:2026-13-01": "after", "has:pictures": "has", "from:": "from", "   ": "q"}


def test_an_invalid_query_is_refused_naming_q_and_audited(api, services):
    for q, operator in INVALID.items():
        since = last_audit_id(services)
        error = assert_error(api.call("GET", "/api/messages/search", params={"q": q}), 422, "invalid_request")
        assert (error["details"]["field"], error["details"].get("operator", "q")) == ("q", operator), q
        (event,) = audit_since(services, since)
        assert (event["action"], event["outcome"], event["details"]["field"]) == ("message.search", "error", "q")


HOSTILE = ['"', '""', '"unclosed', "*", "a*", "NEAR(a b)", "NEAR", "a OR b", "a AND NOT b", "-a", "(", ")",
           "((a)", "a:b:c", "{subject}: x", "subject:(x)", "^a", "a + b", "\\", "'", "%_", "\x00", "\u202e",
           "東京", "🙂", "a" * 1000, "from:\"a", "to:*", "subject:\"\"", "'; DROP TABLE messages; --"]


def test_fts_hostile_input_never_fails_the_server(api, corpus):
    for q in HOSTILE:
        response = api.call("GET", "/api/messages/search", params={"q": q})
        assert response.status_code in (200, 422), (q, response.text)
    assert _search(api, "parcel")["items"]  # and the index is intact afterwards


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(alphabet=st.sampled_from(list('abc "*()-:^{}+~\\\'%_NEARORTü東\u00a0\t')) | st.characters(exclude_categories=("Cs",)),
                 min_size=1, max_size=30))
def test_any_query_text_answers_200_or_422_naming_q(api, q):
    response = api.call("GET", "/api/messages/search", params={"q": q})
    assert response.status_code in (200, 422), (q, response.text)
    if response.status_code == 422:
        assert response.json()["error"]["details"]["field"] == "q"
