"""storage/lean_select.py reads exactly what SQLAlchemy's own execution reads (the same SQL,
bind and result processors, without Connection.execute's per-call work), on both backends:
for the list and search statements in every scope shape (an account, a token's mailbox grants
through an expanding IN, a status, quarantine shown), with and without a cursor; and a
refused statement raises SQLAlchemy's error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError

from litemx.core.searchquery import parse_query
from litemx.storage import lean_select, messages_repo, search_repo
from litemx.storage.messages_repo import MessageScope, scope_params, scope_shape
from litemx.storage.schema import messages, threads
from tests.support.inbox import Mail, send

SUPPORT, BILLING = "support@acme.example", "billing@acme.example"


@pytest.fixture
def mail(api: Any, services: Any) -> str:
    """Mail with every kind of column value a list row holds; returns the account id."""
    send(services, Mail(subject="Où est ma commande ? ✓", text="Bonjour, the parcel never came.",
                        sender="Zoë Müller <zoe@sender.example>", cc="Ops <ops@acme.example>",
                        message_id="<parcel-1@sender.example>"))
    send(services, Mail(subject="Invoice 42", text="The parcel invoice is attached.", to=BILLING,
                        html="<p>The <b>parcel</b> invoice</p>", files=[("a.pdf", "application/pdf", b"%PDF-1")]))
    send(services, Mail(subject="Re: parcel", text="Still no parcel.", in_reply_to="<nowhere@x>"))
    return str(api.me()["account"]["id"])


def _scopes(account: str) -> list[MessageScope]:
    return [MessageScope(account), MessageScope(account, (SUPPORT,)), MessageScope(account, (BILLING, SUPPORT)),
            MessageScope(account, None, "received"), MessageScope(account, (SUPPORT,), None, True)]


def _both(conn: Any, stmt: Any, params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return lean_select.rows(conn, stmt, params), [dict(r._mapping) for r in conn.execute(stmt, params)]


def test_list_rows_are_sqlalchemys_in_every_scope_shape(services, mail):
    with services.infra.db.read() as conn:
        newest = conn.execute(select(messages.c.seq).order_by(messages.c.seq.desc())).scalar()
        for scope in _scopes(mail):
            for cursor in (None, newest):
                stmt = messages_repo._list_statement(scope_shape(scope), cursor is not None)
                params = {**scope_params(scope), "b_limit": 10, **({"b_before": cursor} if cursor else {})}
                lean, reference = _both(conn, stmt, params)
                assert lean == reference
                assert lean or cursor  # every scope sees some of the mail
        rows = messages_repo.list_messages(conn, MessageScope(mail), 10, None)
    assert all(r["received_at"].tzinfo is not None and isinstance(r["auth"], dict) for r in rows)
    assert any(r["has_attachments"] is True for r in rows)


@pytest.mark.parametrize("q", ["parcel", '"parcel invoice"', "from:zoe@sender.example", "after:2020-01-01",
                               "subject:invoice has:attachment"])
def test_search_rows_are_sqlalchemys_in_every_scope_shape(services, mail, q):
    query = parse_query(q)
    sqlite = services.infra.db.dialect == "sqlite"
    seen = 0
    with services.infra.db.read() as conn:
        for scope in _scopes(mail):
            texts = search_repo._texts(query, sqlite)
            assert texts is not None
            shape = search_repo._Shape(sqlite, scope_shape(scope), tuple((f, field) for f, field, _ in texts),
                                       query.has_attachment, query.after_datetime is not None, False, False)
            params = {**scope_params(scope), "b_limit": 10, "q_after": query.after_datetime, "q_before": None,
                      "b_before": None, **{f"t{i}": value for i, (_, _, value) in enumerate(texts)}}
            stmt = search_repo._statement(shape)
            if sqlite and not texts:  # dates alone: SQLite's two-step plan (search_repo._date_statement)
                params["q_floor"] = search_repo._date_floor(conn, shape, params, 10)
                stmt = search_repo._date_statement(shape)
            lean, reference = _both(conn, stmt, params)
            assert lean == reference
            seen += len(lean)
        found = search_repo.search(conn, MessageScope(mail), query, 10, None)
    assert seen and found.rows and all("hit_snippet" in r for r in found.rows)


def test_a_refused_statement_raises_sqlalchemys_error(services, mail):
    scope = MessageScope(mail)
    stmt = messages_repo._list_statement(scope_shape(scope), False)
    with services.infra.db.read() as conn:
        with pytest.raises(DBAPIError):  # both databases refuse a LIMIT that is no number
            lean_select.rows(conn, stmt, {**scope_params(scope), "b_limit": "ten"})


def _bound_by_sqlalchemy(conn: Any, stmt: Any, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, values: Any, _context: Any, _many: bool) -> None:
        seen.append((sql, tuple(values)))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        result = conn.execute(stmt, params)
        if result.returns_rows:
            result.all()
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    return seen[-1]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("q", ["parcel", "after:2000-01-01", "before:2100-01-01 after:2000-01-01 has:attachment"])
def test_the_bound_sql_and_values_are_sqlalchemys(services, mail, q):
    # Equal rows can hide a value bound in another format: a datetime that reaches SQLite as
    # '... 00:00:00+00:00' instead of '... 00:00:00.000000' compares differently only at an exact
    # boundary (the date plan's floor is one), so compare what reaches the driver.
    query = parse_query(q)
    with services.infra.db.read() as conn:
        for scope in [*_scopes(mail), MessageScope(mail, ()), MessageScope(mail, (BILLING, SUPPORT, "x@y.example"))]:
            texts = search_repo._texts(query, True)
            assert texts is not None
            shape = search_repo._Shape(True, scope_shape(scope), tuple((f, field) for f, field, _ in texts),
                                       query.has_attachment, query.after_datetime is not None,
                                       query.before_datetime is not None, True)
            params = {**scope_params(scope), "b_limit": 3, "q_after": query.after_datetime,
                      "q_before": query.before_datetime, "b_before": 10**9,
                      "q_floor": datetime(2001, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
                      **{f"t{i}": value for i, (_, _, value) in enumerate(texts)}}
            statements = [search_repo._statement(shape)] + ([] if texts else [search_repo._date_statement(shape)])
            for stmt in statements:
                used = {k: v for k, v in params.items() if k in stmt.compile().binds}
                assert lean_select._compile(stmt, conn.dialect).bind(used) == _bound_by_sqlalchemy(conn, stmt, used)


def test_the_inbound_workers_statements_match_sqlalchemys(services, mail):
    """The storing transaction's per-message statements (messages_repo): the newest in-order
    time (scalar), the thread lookup by Message-IDs (expanding IN) and the thread bump (UPDATE),
    each against `Connection.execute` in a transaction that is rolled back."""
    with services.infra.db.read() as conn:
        row = conn.execute(select(messages.c.mailbox_id, messages.c.message_id_header, messages.c.thread_id)
                           .where(messages.c.message_id_header.is_not(None))).first()
        newest = {"b_account": mail}
        assert lean_select.scalar(conn, messages_repo._NEWEST_IN_ORDER, newest) == \
            conn.execute(messages_repo._NEWEST_IN_ORDER, newest).scalar()
        assert isinstance(lean_select.scalar(conn, messages_repo._NEWEST_IN_ORDER, newest), datetime)
        assert lean_select.scalar(conn, messages_repo._NEWEST_IN_ORDER, {"b_account": "acct_none"}) is None
        ids = {"b_box": row.mailbox_id, "b_ids": [row.message_id_header, "<nowhere@x>"]}
        lean, reference = _both(conn, messages_repo._THREADS_BY_MESSAGE_IDS, ids)
        assert lean == reference == [{"message_id_header": row.message_id_header, "thread_id": row.thread_id}]
    at, older = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
    for run in (lean_select.update, lambda conn, stmt, params: conn.execute(stmt, params).rowcount):
        with services.infra.db.write() as conn:
            count = conn.execute(select(threads.c.message_count).where(threads.c.id == row.thread_id)).scalar_one()
            bumped = run(conn, messages_repo._BUMP_THREAD, {"b_id": row.thread_id, "b_at": at})
            kept = run(conn, messages_repo._BUMP_THREAD, {"b_id": row.thread_id, "b_at": older})  # the CASE's ELSE
            missing = run(conn, messages_repo._BUMP_THREAD, {"b_id": "thr_none", "b_at": at})
            after = conn.execute(select(threads.c.message_count, threads.c.last_message_at)
                                 .where(threads.c.id == row.thread_id)).one()
            conn.rollback()
        assert (bumped, kept, missing) == (1, 1, 0)
        assert (after.message_count, after.last_message_at) == (count + 2, at)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_inbound_workers_statements_bind_what_sqlalchemy_binds(services, mail):
    """The same SQL and values reach SQLite (a datetime in another text format would still store,
    and then compare wrongly against every other row's)."""
    at = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    cases = [(messages_repo._NEWEST_IN_ORDER, {"b_account": mail}),
             (messages_repo._THREADS_BY_MESSAGE_IDS, {"b_box": "mbx_x", "b_ids": ["<a@x>", "<b@x>"]}),
             (messages_repo._BUMP_THREAD, {"b_id": "thr_none", "b_at": at})]
    with services.infra.db.write() as conn:
        for stmt, params in cases:
            assert lean_select._compile(stmt, conn.dialect).bind(params) == _bound_by_sqlalchemy(conn, stmt, params)
        conn.rollback()


def test_an_update_refuses_parameters_that_name_no_placeholder(services):
    """SQLAlchemy would make an unknown key one more SET column; the lean path would drop it."""
    with services.infra.db.write() as conn, pytest.raises(KeyError, match="subject"):
        lean_select.update(conn, messages_repo._BUMP_THREAD, {"b_id": "thr_none", "b_at": datetime.now(UTC),
                                                              "subject": "x"})
