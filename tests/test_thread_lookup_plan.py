"""The subject fallback's lookup (messages_repo.thread_by_subject) is one index range on SQLite
(migration 0011): with the index on (mailbox_id, subject_key) alone, the planner walked every
thread of the mailbox active in the window, in the storing transaction every worker waits for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from litemx.storage import messages_repo


def test_the_subject_lookup_walks_one_subjects_threads_not_the_mailboxs(services):
    if services.infra.db.dialect != "sqlite":
        pytest.skip("a SQLite planner choice; PostgreSQL has the same index")
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    engine = services.infra.db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with services.infra.db.read() as conn:
            messages_repo.thread_by_subject(conn, "mbx_x", "invoice 7", datetime.now(UTC) - timedelta(days=30))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(sql, params)] = [(sql, params) for sql, params in seen if "FROM threads" in sql]
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        plan = " | ".join(str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "ix_threads_mailbox_id_subject_key_last_message_at (mailbox_id=? AND subject_key=? AND last_message_at>?)" \
        in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the order comes from the index


def test_the_subject_fallback_still_finds_the_newest_thread(services, api):
    from tests.support.inbox import Mail, deliver, message_row

    first = deliver(services, Mail(subject="Invoice 7", text="first").build(), "support@acme.example")[0]
    reply = deliver(services, Mail(subject="Re: Invoice 7", text="no headers").build(), "support@acme.example")[0]
    assert message_row(services, reply)["thread_id"] == message_row(services, first)["thread_id"]
