"""The group-committing audit writer (storage/audit_writer.py) that read-only operations use:
an event is committed when append() returns, concurrent events share commits, a refused row
fails only its own caller, and a failed commit fails the read."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from litemx.storage.audit_writer import AuditWriteError, AuditWriter
from litemx.storage.schema import audit_events
from tests.support.audit_rows import audit_row

JOIN_SECONDS = 60


def _row(n: int, action: str | None = "message.read") -> dict[str, Any]:
    return audit_row(n, action, "acc_writer")


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
    AuditWriter(services.infra.db).append(_row(1))
    assert _stored(services) == {"msg_1": "message.read"}


def test_concurrent_events_are_all_committed_and_share_transactions(services, monkeypatch):
    writer = AuditWriter(services.infra.db)
    commits: list[int] = []
    insert = writer._insert
    monkeypatch.setattr(writer, "_insert", lambda batch: (commits.append(len(batch)), insert(batch))[1])
    outcome = _in_threads(writer, [_row(n) for n in range(24)])
    assert outcome == {n: None for n in range(24)}
    assert set(_stored(services)) == {f"msg_{n}" for n in range(24)}
    assert sum(commits) == 24 and len(commits) <= 24
    assert not writer._queue and not writer._busy  # the last leader handed over to nobody


def test_a_row_the_database_refuses_fails_its_caller_and_no_other(services):
    writer = AuditWriter(services.infra.db)
    rows = [_row(n) for n in range(8)]
    rows[3] = _row(3, action=None)  # NOT NULL violation
    outcome = _in_threads(writer, rows)
    assert isinstance(outcome.pop(3), AuditWriteError)
    assert outcome == {n: None for n in range(8) if n != 3}
    assert set(_stored(services)) == {f"msg_{n}" for n in range(8) if n != 3}


def test_callers_that_queue_during_a_commit_go_in_the_next_one(services, monkeypatch):
    writer = AuditWriter(services.infra.db)
    first_commit_started, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []
    insert = writer._insert

    def slow_insert(batch: list[Any]) -> None:
        batches.append([p.row["resource_id"] for p in batch])
        if len(batches) == 1:
            first_commit_started.set()
            assert release.wait(JOIN_SECONDS)
        insert(batch)

    monkeypatch.setattr(writer, "_insert", slow_insert)
    leader = threading.Thread(target=writer.append, args=(_row(0),))
    leader.start()
    assert first_commit_started.wait(JOIN_SECONDS)
    followers = [threading.Thread(target=writer.append, args=(_row(n),)) for n in (1, 2, 3)]
    for t in followers:
        t.start()
    deadline = time.monotonic() + JOIN_SECONDS
    while len(writer._queue) < 3:  # the followers queue behind the first commit
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)
    release.set()
    for t in (leader, *followers):
        t.join(JOIN_SECONDS)
    assert batches[0] == ["msg_0"] and sorted(batches[1]) == ["msg_1", "msg_2", "msg_3"]
    assert set(_stored(services)) == {"msg_0", "msg_1", "msg_2", "msg_3"}


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
