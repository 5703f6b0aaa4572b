"""The group-committing audit writer (storage/audit_writer.py) that read-only operations use:
an event is committed when append() returns, concurrent events share commits, a refused row
fails only its own caller, and close() leaves nothing behind."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from litemx.service.base import event_row
from litemx.storage.audit_writer import AuditWriteError, AuditWriter
from litemx.storage.schema import audit_events

JOIN_SECONDS = 60


def _row(n: int, action: str | None = "message.read") -> dict[str, Any]:
    row = event_row(at=datetime(2026, 5, 1, tzinfo=UTC), account_id="acc_writer", actor_type="token",
                    actor_id="tok_1", actor_name="t", interface="api", action="x", resource_type="message",
                    resource_id=f"msg_{n}", details={"n": n})
    row["action"] = action
    return row


def _stored(services: Any) -> dict[str, str]:
    with services.infra.db.read() as conn:
        rows = conn.execute(select(audit_events.c.resource_id, audit_events.c.action)
                            .where(audit_events.c.account_id == "acc_writer")).all()
    return {r.resource_id: r.action for r in rows}


def _in_threads(writer: AuditWriter, rows: list[dict[str, Any]]) -> dict[int, BaseException | None]:
    """append() each row from its own thread, all at once; the outcome of each."""
    outcome: dict[int, BaseException | None] = {}
    start = threading.Barrier(len(rows))

    def one(i: int) -> None:
        start.wait(JOIN_SECONDS)
        try:
            writer.append(rows[i])
            outcome[i] = None
        except AuditWriteError as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_SECONDS)
    assert not any(t.is_alive() for t in threads)
    return outcome


def test_an_appended_event_is_committed_when_append_returns(services):
    writer = AuditWriter(services.infra.db)
    try:
        writer.append(_row(1))
        assert _stored(services) == {"msg_1": "message.read"}
    finally:
        writer.close()


def test_concurrent_events_are_all_committed_and_share_transactions(services, monkeypatch):
    writer = AuditWriter(services.infra.db)
    commits: list[int] = []
    insert = writer._insert
    monkeypatch.setattr(writer, "_insert", lambda batch: (commits.append(len(batch)), insert(batch))[1])
    try:
        outcome = _in_threads(writer, [_row(n) for n in range(24)])
    finally:
        writer.close()
    assert outcome == {n: None for n in range(24)}
    assert set(_stored(services)) == {f"msg_{n}" for n in range(24)}
    assert sum(commits) == 24 and len(commits) <= 24


def test_a_row_the_database_refuses_fails_its_caller_and_no_other(services):
    writer = AuditWriter(services.infra.db)
    rows = [_row(n) for n in range(8)]
    rows[3] = _row(3, action=None)  # NOT NULL violation
    try:
        outcome = _in_threads(writer, rows)
    finally:
        writer.close()
    assert isinstance(outcome.pop(3), AuditWriteError)
    assert outcome == {n: None for n in range(8) if n != 3}
    assert set(_stored(services)) == {f"msg_{n}" for n in range(8) if n != 3}


def test_after_close_the_thread_is_gone_and_an_append_still_commits(services):
    writer = AuditWriter(services.infra.db)
    writer.append(_row(1))
    thread = writer._thread
    writer.close()
    assert writer._thread is None and (thread is None or not thread.is_alive())
    writer.append(_row(2))  # inline, in a transaction of its own
    assert set(_stored(services)) == {"msg_1", "msg_2"}


def test_an_idle_writer_ends_its_thread_and_starts_a_new_one_on_demand(services):
    writer = AuditWriter(services.infra.db, idle_exit=0.01)
    try:
        writer.append(_row(1))
        first = writer._thread
        if first is not None:
            first.join(JOIN_SECONDS)
        assert writer._thread is None
        writer.append(_row(2))
        assert set(_stored(services)) == {"msg_1", "msg_2"}
    finally:
        writer.close()


def test_a_failed_commit_raises_to_the_reader_and_the_read_is_not_answered(services, tenant, monkeypatch):
    def refuse(batch: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.infra.audit_writer, "_insert", refuse)
    caller = services.auth.authenticate(tenant.token, "api", None, None)
    with pytest.raises(AuditWriteError) as raised:
        services.directory.list_mailboxes(caller)
    assert "disk full" in str(raised.value.__cause__)
    with services.infra.db.read() as conn:
        count = conn.execute(select(func.count()).select_from(audit_events)
                             .where(audit_events.c.action == "mailbox.list")).scalar_one()
    assert count == 0
