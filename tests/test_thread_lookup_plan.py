"""The subject fallback's lookup (messages_repo.thread_by_subject) is one index range on SQLite
(migration 0011): with the index on (mailbox_id, subject_key) alone, the planner walked every
thread of the mailbox active in the window, in the storing transaction every worker waits for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import pytest

from litemx.storage import messages_repo
from tests.support.plans import plans


def test_the_subject_lookup_walks_one_subjects_threads_not_the_mailboxs(services):
    if services.infra.db.dialect != "sqlite":
        pytest.skip("a SQLite planner choice; PostgreSQL has the same index")
    since = datetime.now(UTC) - timedelta(days=30)

    def lookup() -> None:
        with services.infra.db.read() as conn:
            messages_repo.thread_by_subject(conn, "mbx_x", "invoice 7", since)

    [plan] = plans(services, lookup, lambda sql: "FROM threads" in sql)
    assert "ix_threads_mailbox_id_subject_key_last_message_at (mailbox_id=? AND subject_key=? AND last_message_at>?)" \
        in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the order comes from the index


def test_the_subject_fallback_still_finds_the_newest_thread(services, api):
    from tests.support.inbox import Mail, deliver, message_row

    first = deliver(services, Mail(subject="Invoice 7", text="first").build(), "support@acme.example")[0]
    reply = deliver(services, Mail(subject="Re: Invoice 7", text="no headers").build(), "support@acme.example")[0]
    assert message_row(services, reply)["thread_id"] == message_row(services, first)["thread_id"]
