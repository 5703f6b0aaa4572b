"""The group-committing audit writer seen from an event loop (storage/group_commit.py
`add_async`, storage/audit_writer.py `AuditWriter.run`), as the read routes and MCP tools use
it: an event is committed before the awaiting caller goes on, loop and thread callers share
commits, a loop caller that leads never waits for a shared thread pool, a cancelled caller
never stalls the queue, and work run through `run` has its events committed before its answer
or its error comes back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import select

from litemx.errors import NotFound
from litemx.storage.audit_writer import AuditWriteError, AuditWriter
from litemx.storage.schema import audit_events
from tests.support.audit_rows import audit_row

BOUND = 60.0  # seconds; every wait in these tests is bounded by it


def _row(n: int, action: str | None = "message.read") -> dict[str, Any]:
    return audit_row(n, action, "acc_async")


def _stored(services: Any) -> set[str]:
    with services.infra.db.read() as conn:
        rows = conn.execute(select(audit_events.c.resource_id).where(audit_events.c.account_id == "acc_async"))
        return {r.resource_id for r in rows}


def _run(scenario: Any) -> Any:
    async def bounded() -> Any:
        with anyio.fail_after(BOUND):
            return await scenario()

    return anyio.run(bounded)


class Gate:
    """Holds the writer's first commit until released; counts the rows of every commit."""

    def __init__(self, writer: AuditWriter, monkeypatch: pytest.MonkeyPatch):
        self.started, self.release = threading.Event(), threading.Event()
        self.batches: list[list[str]] = []
        insert = writer._insert

        def gated(batch: list[Any]) -> None:
            self.batches.append(sorted(p.row["resource_id"] for p in batch))
            if len(self.batches) == 1:
                self.started.set()
                assert self.release.wait(BOUND)
            insert(batch)

        monkeypatch.setattr(writer, "_insert", gated)
        self.writer = writer

    async def first_held(self) -> asyncio.Future[Any]:
        """A loop caller that leads the first commit, returned once that commit is held."""
        first = asyncio.ensure_future(self.writer.add_async(_row(0)))
        await anyio.to_thread.run_sync(self.started.wait, BOUND)
        return first


async def _until(condition: Any) -> None:
    while not condition():  # bounded by the scenario's fail_after
        await asyncio.sleep(0.005)


def test_loop_callers_are_committed_when_their_await_returns_and_share_commits(services, monkeypatch):
    writer = AuditWriter(services.infra.db)
    gate = Gate(writer, monkeypatch)

    async def scenario() -> None:
        first = await gate.first_held()
        rest = [asyncio.ensure_future(writer.add_async(_row(n))) for n in range(1, 9)]
        await _until(lambda: len(writer._queue) == 8)
        assert not any(task.done() for task in (first, *rest))  # nobody returns before its commit
        gate.release.set()
        await asyncio.gather(first, *rest)
        assert _stored(services) == {f"msg_{n}" for n in range(9)}

    _run(scenario)
    assert gate.batches == [["msg_0"], sorted(f"msg_{n}" for n in range(1, 9))]
    assert not writer._queue and not writer._busy


def test_a_loop_caller_due_to_lead_commits_even_when_thread_callers_hold_every_pool_thread(services, monkeypatch):
    """Thread callers queued behind a commit block their threads until a commit takes their
    rows; when the next leader is a loop caller, its commit must not need one of those threads."""
    writer = AuditWriter(services.infra.db)
    gate = Gate(writer, monkeypatch)

    async def scenario() -> None:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 2
        leader = threading.Thread(target=writer.append, args=(_row(0),))
        leader.start()
        await anyio.to_thread.run_sync(gate.started.wait, BOUND)
        loop_caller = asyncio.ensure_future(writer.add_async(_row(1)))  # first in line: the next leader
        await _until(lambda: len(writer._queue) == 1)
        thread_callers = [asyncio.ensure_future(anyio.to_thread.run_sync(writer.append, _row(n))) for n in (2, 3)]
        await _until(lambda: len(writer._queue) == 3 and limiter.borrowed_tokens == 2)
        gate.release.set()
        await asyncio.gather(loop_caller, *thread_callers)
        await anyio.to_thread.run_sync(leader.join, BOUND)

    _run(scenario)
    assert gate.batches == [["msg_0"], ["msg_1", "msg_2", "msg_3"]]
    assert _stored(services) == {"msg_0", "msg_1", "msg_2", "msg_3"}


def test_a_cancelled_loop_caller_still_has_its_row_committed_and_the_queue_goes_on(services, monkeypatch):
    writer = AuditWriter(services.infra.db)
    gate = Gate(writer, monkeypatch)

    async def scenario() -> None:
        first = await gate.first_held()
        gone = asyncio.ensure_future(writer.add_async(_row(1)))  # the next leader, cancelled while waiting
        behind = asyncio.ensure_future(writer.add_async(_row(2)))
        await _until(lambda: len(writer._queue) == 2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        gate.release.set()
        await asyncio.gather(first, behind)
        await writer.add_async(_row(3))  # a later caller finds the writer idle, not stalled

    _run(scenario)
    assert _stored(services) == {"msg_0", "msg_1", "msg_2", "msg_3"}
    assert not writer._queue and not writer._busy


def test_a_failed_commit_fails_every_loop_caller_of_its_batch_and_a_refused_row_only_its_own(services,
                                                                                              monkeypatch):
    writer = AuditWriter(services.infra.db)

    async def refused_row() -> None:
        outcomes = await asyncio.gather(*(writer.add_async(_row(n, action=None if n == 1 else "x"))
                                          for n in range(3)), return_exceptions=True)
        assert isinstance(outcomes[1], AuditWriteError)
        assert outcomes[0] is None and outcomes[2] is None

    _run(refused_row)
    assert _stored(services) == {"msg_0", "msg_2"}

    def disk_full(batch: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_insert", disk_full)

    async def failed_commit() -> None:
        outcomes = await asyncio.gather(*(writer.add_async(_row(n)) for n in (5, 6)), return_exceptions=True)
        assert all(isinstance(o, AuditWriteError) and "disk full" in str(o.__cause__) for o in outcomes)

    _run(failed_commit)
    assert _stored(services) == {"msg_0", "msg_2"}


def test_a_blocking_append_on_an_event_loop_commits_alone_instead_of_waiting_for_the_loop(services):
    writer = AuditWriter(services.infra.db)

    async def scenario() -> None:
        writer.append(_row(0))  # no queue, no wait: nothing on this loop can be left to lead
        assert _stored(services) == {"msg_0"}

    _run(scenario)


@pytest.mark.parametrize("in_thread", [False, True])
def test_work_run_through_the_writer_has_its_events_committed_before_its_answer(services, in_thread):
    writer = AuditWriter(services.infra.db)
    seen_during_work: list[set[str]] = []

    def work() -> str:
        writer.append(_row(1))
        writer.append(_row(2))
        seen_during_work.append(_stored(services))
        return "answer"

    async def scenario() -> str:
        return await writer.run(work, in_thread=in_thread)

    assert _run(scenario) == "answer"
    assert seen_during_work == [set()]  # held back while the work ran
    assert _stored(services) == {"msg_1", "msg_2"}


def test_work_that_fails_has_its_events_committed_and_its_error_raised(services):
    writer = AuditWriter(services.infra.db)

    def work() -> None:
        writer.append(_row(1))
        raise NotFound("message msg_1 not found")

    async def scenario() -> None:
        with pytest.raises(NotFound):
            await writer.run(work)

    _run(scenario)
    assert _stored(services) == {"msg_1"}


def test_work_whose_events_cannot_be_committed_fails(services, monkeypatch):
    writer = AuditWriter(services.infra.db)

    def disk_full(batch: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_insert", disk_full)

    async def scenario() -> None:
        with pytest.raises(AuditWriteError):
            await writer.run(lambda: writer.append(_row(1)) or "answer")

    _run(scenario)
    assert _stored(services) == set()


def test_a_caller_made_leader_just_as_its_wait_times_out_still_leads(services, monkeypatch):
    """The hand-off sets the successor's `lead` under the lock and wakes it after: a timeout in
    that gap must not make the designated leader give up, or nobody would commit again."""
    from litemx.storage import group_commit

    writer = AuditWriter(services.infra.db)
    monkeypatch.setattr(group_commit, "WAIT_SECONDS", 0.01)
    writer._busy = True  # a commit is running: the caller below queues and waits
    done: dict[str, Any] = {}

    def caller() -> None:
        try:
            done["id"] = writer.add(_row(1))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            done["error"] = exc

    pending_seen = threading.Event()
    enqueue = writer._enqueue

    def enqueue_and_promote(pending: Any) -> bool:
        queued = enqueue(pending)
        with writer._lock:
            pending.lead = True  # promoted by the running leader, whose wake-up is still to come
        pending_seen.set()
        return queued

    monkeypatch.setattr(writer, "_enqueue", enqueue_and_promote)
    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(BOUND)
    assert pending_seen.is_set() and "error" not in done and "id" in done
    assert [r["resource_id"] for r in _stored_rows(services)] == ["msg_1"]
    assert writer._busy is False and writer._queue == []


def _stored_rows(services: Any) -> list[Any]:
    with services.infra.db.read() as conn:
        return list(conn.execute(select(audit_events)).mappings())
