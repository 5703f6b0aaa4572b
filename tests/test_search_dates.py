"""`after:` / `before:` searches without words (storage/search_repo.py date plan, migration 0010).

The SQLite plan walks `(account_id, late, received_at)` instead of the account's newest-first
`seq` order, relying on `messages.late`. These tests store messages in orders that break the
agreement between seq and received_at (small reorderings within ORDER_SLACK, deliveries stored
hours late) and check every page against a brute-force answer on both databases, check the
flag itself and its backfill, and that the SQLite statements read the date index.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from litemx.core.ids import new_id
from litemx.storage import messages_repo
from litemx.storage.db import Database, alembic_config
from litemx.storage.schema import mailboxes, messages, threads
from tests.support.api import Api
from tests.support.plans import plans

BASE = datetime(2026, 3, 1, tzinfo=UTC)
SUPPORT = "support@acme.example"
BILLING = "billing@acme.example"


def _store(services, address: str, minutes: list[float], quarantined: frozenset[int] = frozenset()) -> list[str]:
    """One message per entry, stored in list order through add_message, received at BASE + minutes."""
    with services.infra.db.read() as conn:
        box = dict(conn.execute(select(mailboxes).where(mailboxes.c.address == address)).mappings().one())
    ids = []
    with services.infra.db.write() as conn:
        thread_id = new_id("thr")
        conn.execute(threads.insert().values(id=thread_id, account_id=box["account_id"], mailbox_id=box["id"],
                                             mailbox=address, subject="t", subject_key="t", message_count=1,
                                             last_message_at=BASE, created_at=BASE))
        for i, minute in enumerate(minutes):
            ids.append(new_id("msg"))
            messages_repo.add_message(conn, _row(ids[-1], box, thread_id, BASE + timedelta(minutes=minute),
                                                 "quarantined" if i in quarantined else "received"))
    return ids


def _row(message_id: str, box: dict[str, Any], thread_id: str, at: datetime, status: str) -> dict[str, Any]:
    return {"id": message_id, "account_id": box["account_id"], "mailbox_id": box["id"], "mailbox": box["address"],
            "thread_id": thread_id, "direction": "inbound", "status": status, "queue_id": None,
            "message_id_header": None, "in_reply_to": None, "references": [], "subject": "dated",
            "from_name": None, "from_addr": "s@sender.example", "to_addrs": [], "cc_addrs": [], "reply_to": [],
            "mail_from": None, "rcpt": box["address"], "sent_at": at, "received_at": at, "size": 10,
            "raw_key": "0" * 64, "text_body": None, "html_body": None, "snippet": "", "headers": [],
            "has_attachments": False, "auth": {}, "signals": {}, "deleted_content_at": None}


def _expected(services, account_id: str, after: datetime | None, before: datetime | None,
              mailboxes: list[str] | None) -> list[str]:
    """Brute force: every matching message of the account, newest stored first."""
    with services.infra.db.read() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.received_at, messages.c.status, messages.c.mailbox)
                            .where(messages.c.account_id == account_id).order_by(messages.c.seq.desc())).all()
    return [r.id for r in rows if r.status != "quarantined" and (after is None or r.received_at >= after)
            and (before is None or r.received_at < before) and (mailboxes is None or r.mailbox in mailboxes)]


def _pages(api: Api, q: str, limit: int, secret: str | None = None) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        params = {"q": q, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.call("GET", "/api/messages/search", params=params, secret=secret)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


def _query(after_day: int | None, before_day: int | None) -> tuple[str, datetime | None, datetime | None]:
    after = BASE + timedelta(days=after_day) if after_day is not None else None
    before = BASE + timedelta(days=before_day) if before_day is not None else None
    parts = ([f"after:{after:%Y-%m-%d}"] if after else []) + ([f"before:{before:%Y-%m-%d}"] if before else [])
    return " ".join(parts), after, before


def test_late_marks_only_rows_stored_beyond_the_slack(api, services):
    slack = messages_repo.ORDER_SLACK / timedelta(minutes=1)
    # in order, within the slack (a reordered batch), beyond it (a retried delivery), then in order
    minutes = [0, 100, 100 - slack + 1, 100 - slack - 1, 20, 200]
    ids = _store(services, SUPPORT, minutes)
    with services.infra.db.read() as conn:
        late = dict(conn.execute(select(messages.c.id, messages.c.late).where(messages.c.id.in_(ids))).all())
    assert [late[i] for i in ids] == [False, False, False, True, True, False]


def test_a_late_row_does_not_raise_the_bar_for_later_ones(api, services):
    # 500 is late against 1000; 995 stays in order although it is far above the late row
    ids = _store(services, SUPPORT, [1000, 500, 995])
    with services.infra.db.read() as conn:
        late = dict(conn.execute(select(messages.c.id, messages.c.late).where(messages.c.id.in_(ids))).all())
    assert [late[i] for i in ids] == [False, True, False]


# Stored out of order on purpose: old deliveries stored last, a day stored backwards, runs that
# straddle range boundaries. Each range is checked page by page at several page sizes.
ORDERS = {
    "in order": [i * 37.0 for i in range(60)],
    "late tail": [i * 37.0 for i in range(50)] + [5.0, 1500.0, 30.0, 1444.0, 700.0],
    "backwards": [3000.0 - i * 29 for i in range(60)],
    "pairs swapped within the slack": [i * 5 + (4 if i % 2 == 0 else -4) for i in range(60)],
}
RANGES = [(None, 1), (1, None), (0, 1), (1, 2), (None, None), (5, 6)]


@pytest.mark.parametrize("order", ORDERS)
def test_date_searches_page_like_brute_force(api, services, tenant, order):
    _store(services, SUPPORT, ORDERS[order], quarantined=frozenset({3, 17, 51}))
    _store(services, BILLING, [m + 3 for m in ORDERS[order][::3]])
    scoped = api.token(["messages:search"], [SUPPORT])[1]
    for after_day, before_day in RANGES:
        q, after, before = _query(after_day, before_day)
        if not q:
            continue
        for limit in (1, 3, 20):
            assert _pages(api, q, limit) == _expected(services, tenant.account["id"], after, before, None), (q, limit)
        assert _pages(api, q, 4, scoped) == _expected(services, tenant.account["id"], after, before, [SUPPORT]), q


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.floats(-3000, 300), st.booleans()), min_size=1, max_size=25),
       after_day=st.one_of(st.none(), st.integers(0, 4)), span=st.one_of(st.none(), st.integers(1, 3)),
       limit=st.integers(1, 6))
def test_date_search_matches_brute_force_for_any_storage_order(api, services, tenant, steps, after_day, span, limit):
    """A random walk of received times (mostly forward, sometimes far back); rows accumulate
    across examples, which only makes the account's history messier."""
    minutes, now = [], 1500.0
    for delta, in_support in steps:
        if delta < -1000:  # a delivery stored late; "now" stays
            minutes.append((max(0.0, now + delta), in_support))
        else:  # mostly forward; steps back of up to 100 minutes, within or beyond the slack
            now = max(0.0, now + delta / 10)
            minutes.append((now, in_support))
    for address in (SUPPORT, BILLING):
        _store(services, address, [m for m, in_support in minutes if in_support == (address == SUPPORT)])
    before_day = None if span is None else (after_day or 0) + span
    q, after, before = _query(after_day, before_day)
    if q:
        assert _pages(api, q, limit) == _expected(services, tenant.account["id"], after, before, None)


def test_sqlite_date_plan_reads_the_date_index(api, services, backend):
    if backend != "sqlite":
        pytest.skip("the date plan is SQLite's (PostgreSQL keeps the seq walk: its `late` can miss a concurrent row)")
    _store(services, SUPPORT, [i * 30.0 for i in range(40)])
    scoped = api.token(["messages:search"], [SUPPORT])[1]
    for secret in (None, scoped):
        plans = _plans(services, lambda: _pages(api, "after:2026-03-01 before:2026-03-02", 5, secret))
        assert plans, "no statement on messages was seen"
        for plan in plans:
            assert "ix_messages_account_id_late_received_at" in plan, plan
            assert "SCAN messages" not in plan, plan


def _plans(services, run) -> list[str]:
    """EXPLAIN QUERY PLAN of every date-plan statement `run` executes."""
    return plans(services, run, lambda sql: "messages.late" in sql and sql.lstrip().startswith("SELECT"))


def test_migration_0010_marks_existing_rows(tmp_path):
    """Rows stored before 0010 are marked against the running maximum of their account."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0009")
    raw = sqlite3.connect(tmp_path / "old.db")
    stamps = {"a": [0, 100, 95, 50, 101], "b": [10, 0]}  # minutes, in storage order, per account
    for account, minutes in stamps.items():
        for i, minute in enumerate(minutes):
            at = (BASE + timedelta(minutes=minute)).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            raw.execute("INSERT INTO messages (id, account_id, mailbox_id, mailbox, thread_id, direction, status, "
                        "\"references\", subject, to_addrs, cc_addrs, reply_to, received_at, size, snippet, headers, "
                        "has_attachments, auth, signals) VALUES (?, ?, 'mb', 'x@y', 't', 'inbound', 'received', '[]', "
                        "'s', '[]', '[]', '[]', ?, 1, '', '[]', 0, '{}', '{}')", (f"{account}{i}", account, at))
    raw.commit()
    raw.close()
    db = Database(url)
    try:
        db.migrate()
        with db.read() as conn:
            late = dict(conn.execute(select(messages.c.id, messages.c.late)).all())
    finally:
        db.dispose()
    assert late == {"a0": False, "a1": False, "a2": False, "a3": True, "a4": False, "b0": False, "b1": False}
