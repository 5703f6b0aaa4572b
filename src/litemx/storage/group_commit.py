"""Group commit: rows inserted by many threads, committed together, each caller waiting for its own.

`GroupInserter.add(row)` returns once a write transaction holding the row has committed (with
the row's generated id), or raises that transaction's error. Rows of concurrent callers share
one transaction and one commit (one fsync on SQLite) instead of one each, and one writer takes
SQLite's write lock instead of all of them queueing for it. So "when add() returns, the row is
durable" holds exactly as with a transaction per caller.

No background thread: the callers commit (see GroupInserter), so there is nothing to start or
stop, and a lone caller pays one transaction and no thread switch. Batches form by themselves:
while one commit waits on its fsync, the rows of callers arriving meanwhile queue up and go in
the next one; nobody waits for a timer.

Callers on an event loop use `add_async`: the same queue and the same commits, but they wait on
the loop instead of blocking it, and a loop caller that has to lead commits on a committer
thread (one thread hop per batch, not one per request). The committer threads are this
module's own, not the event loop's or anyio's pool: thread callers waiting for a loop caller's
commit may hold every thread of such a pool, and the commit must not wait for one of them. A
committer thread only ever waits for the database, so a few serve every inserter.

Used where a request's only write is one independent row: the audit events of read-only
operations and of refusals (storage/audit_writer.py) and the inbound queue row that `250`
waits for (service/inbound.py). Anything that must commit together with other changes keeps
its own transaction.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError

from litemx.storage.db import Database

MAX_BATCH = 256  # rows per transaction: bounds one commit's size and its callers' wait
WAIT_SECONDS = 300.0  # a bound on any caller's wait; far above SQLite's 30 s busy timeout
# A repository's batch insert: the rows in, one generated id (or None) per row out.
WriteRows = Callable[[Connection, list[dict[str, Any]]], Sequence[Any]]


class GroupCommitError(RuntimeError):
    """A row could not be committed (the database's error is chained as the cause)."""


class _Pending:
    """One caller's row. A thread caller waits on `event`; a loop caller on `future` (resolved
    through its loop, since the committing thread is never the loop's)."""

    __slots__ = ("row", "event", "loop", "future", "lead", "error", "id")

    def __init__(self, row: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None):
        self.row = row
        self.loop = loop
        self.event = threading.Event() if loop is None else None
        self.future: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
        self.lead = False
        self.error: BaseException | None = None
        self.id: Any = None

    def is_woken(self) -> bool:
        return self.event.is_set() if self.event is not None else bool(self.future and self.future.done())


def _wake(callers: list[_Pending]) -> None:
    """Their batch is done, or (the first) is to lead: let them go on. Loop callers are woken
    with one call into each loop (each call is a write to the loop's wake-up pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for pending in callers:
        if pending.event is not None:
            pending.event.set()
        elif pending.loop is not None and pending.future is not None:
            by_loop.setdefault(pending.loop, []).append(pending.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            pass


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class GroupInserter:
    """Writes rows in shared transactions, committed by the callers themselves (no thread of
    its own; a loop caller's commit runs on a committer thread).

    `write_rows` is the repository's batch insert. It is called inside the shared transaction,
    with the rows of one batch (or one row, when a batch is retried row by row).

    Leader and followers: a caller arriving while no commit runs commits at once, in its own
    thread, whatever is queued (its own row, and the rows that queued during the previous
    commit). Callers arriving during a commit queue their row and wait. When a commit ends it
    wakes the callers it committed and makes the first still-queued caller the next leader. So
    a lone caller pays exactly one transaction and no thread switch, and N concurrent callers
    pay about one commit per commit-time of arrivals.
    """

    def __init__(self, db: Database, write_rows: WriteRows, name: str, *, max_batch: int = MAX_BATCH):
        self._db = db
        self._write_rows = write_rows
        self._name = name
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False  # a leader is committing

    def add(self, row: dict[str, Any]) -> Any:
        """Insert one row; returns once it is committed (with its generated id, if asked for).

        Raises: GroupCommitError, chained to what the commit raised, or when no commit finished
        in time; the caller fails as it would have if its own transaction had failed.
        """
        pending = _Pending(row)
        if _on_event_loop():
            # Waiting here could block the very loop whose caller is due to lead: commit alone.
            self._commit([pending])
            return self._outcome(pending)
        if not self._enqueue(pending):
            self._wait(pending)
        if pending.lead:
            self._lead()
        return self._outcome(pending)

    async def add_async(self, row: dict[str, Any]) -> Any:
        """`add` for a caller on an event loop: waits without blocking the loop; when this
        caller leads, its batch is committed on the committer thread.

        Raises: GroupCommitError, as `add`.
        """
        pending = _Pending(row, asyncio.get_running_loop())
        if not self._enqueue(pending):
            try:
                await self._wait_async(pending)
            except asyncio.CancelledError:
                # The caller is gone but its row stays queued and may be due to lead: its part
                # goes on without it, or the queue would stall behind a leader nobody runs.
                # (Cancelled while leading, nothing is needed: the commit runs on its thread.)
                asyncio.ensure_future(self._lead_when_due(pending))
                raise
        if pending.lead:
            await asyncio.get_running_loop().run_in_executor(_committers(), self._lead)
        return self._outcome(pending)

    async def _lead_when_due(self, pending: _Pending) -> None:
        await self._wait_async(pending)
        if pending.lead:
            await asyncio.get_running_loop().run_in_executor(_committers(), self._lead)

    def _enqueue(self, pending: _Pending) -> bool:
        """Queue the row; True (and `pending.lead` set) when no commit runs, so this caller leads."""
        with self._lock:
            self._queue.append(pending)
            pending.lead = not self._busy
            self._busy = True
        return pending.lead

    def _outcome(self, pending: _Pending) -> Any:
        if pending.error is not None:
            # One failed commit fails every caller of its batch: each gets its own exception.
            raise GroupCommitError(f"the {self._name} row could not be committed") from pending.error
        return pending.id

    def _wait(self, pending: _Pending) -> None:
        assert pending.event is not None
        if not pending.event.wait(WAIT_SECONDS):
            self._give_up(pending)

    async def _wait_async(self, pending: _Pending) -> None:
        assert pending.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(pending.future), WAIT_SECONDS)
        except TimeoutError:
            self._give_up(pending)

    def _give_up(self, pending: _Pending) -> None:
        """Raises: GroupCommitError, unless the row was woken meanwhile."""
        with self._lock:
            # Woken just now, or made the next leader but not woken yet (the wake-up comes after
            # the lock is released): either way it must go on, and a leader must lead, or every
            # later caller of this inserter would wait for a commit nobody runs.
            if pending.is_woken() or pending.lead:
                return
            if pending in self._queue:  # never taken: withdraw it, so nobody waits on us
                self._queue.remove(pending)
        raise GroupCommitError(f"the {self._name} row was not committed in time")

    def _lead(self) -> None:
        """Commit one batch (it holds the leader's own row), then pass the lead on."""
        with self._lock:
            batch = self._queue[:self._max_batch]
            del self._queue[:self._max_batch]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is not None:
                    successor.lead = True
                else:
                    self._busy = False
            # The batch's own leader (lead set) is not waiting to be woken.
            _wake(([successor] if successor is not None else []) + [p for p in batch if not p.lead])

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._insert(batch)
        except (DataError, IntegrityError):
            # A row the database refuses must not fail its neighbours: retry one by one.
            for pending in batch:
                self._commit_alone(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch, who raises it
            for pending in batch:
                pending.error = exc

    def _commit_alone(self, pending: _Pending) -> None:
        try:
            self._insert([pending])
        except BaseException as exc:  # noqa: BLE001 - the caller raises it
            pending.error = exc

    def _insert(self, batch: list[_Pending]) -> None:
        with self._db.write() as conn:
            ids = self._write_rows(conn, [p.row for p in batch])
        for pending, new_id in zip(batch, ids, strict=True):  # set only once committed
            pending.id = new_id


COMMITTER_THREADS = 4  # one batch commits at a time per inserter; a few inserters per process
_committer_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own
_committer_lock = threading.Lock()


def _committers() -> ThreadPoolExecutor:
    """The threads loop callers commit on (see the module doc), started on first use."""
    global _committer_pool
    with _committer_lock:
        if _committer_pool is None or _committer_pool[0] != os.getpid():
            _committer_pool = os.getpid(), ThreadPoolExecutor(COMMITTER_THREADS,
                                                              thread_name_prefix="litemx-group-commit")
        return _committer_pool[1]


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
