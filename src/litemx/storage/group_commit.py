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

Used where a request's only write is one independent row: the audit events of read-only
operations and of refusals (storage/audit_writer.py) and the inbound queue row that `250`
waits for (service/inbound.py). Anything that must commit together with other changes keeps
its own transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError

from litemx.storage.db import Database

MAX_BATCH = 256  # rows per transaction: bounds one commit's size and its callers' wait
WAIT_SECONDS = 300.0  # a bound on any caller's wait; far above SQLite's 30 s busy timeout


class GroupCommitError(RuntimeError):
    """A row could not be committed (the database's error is chained as the cause)."""


class _Pending:
    __slots__ = ("row", "wake", "lead", "error", "id")

    def __init__(self, row: dict[str, Any]):
        self.row = row
        self.wake = threading.Event()  # set when the row's batch is done, or to make this caller lead
        self.lead = False
        self.error: BaseException | None = None
        self.id: Any = None


class GroupInserter:
    """Writes rows in shared transactions, committed by the callers themselves (no thread).

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
        with self._lock:
            self._queue.append(pending)
            lead = not self._busy
            self._busy = True
        if not lead:
            self._wait(pending)
            lead = pending.lead
        if lead:
            self._lead()
        if pending.error is not None:
            # One failed commit fails every caller of its batch: each gets its own exception.
            raise GroupCommitError(f"the {self._name} row could not be committed") from pending.error
        return pending.id

    def _wait(self, pending: _Pending) -> None:
        if pending.wake.wait(WAIT_SECONDS):
            return
        with self._lock:
            if pending.wake.is_set():  # woken just now
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
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._busy = False
            for pending in batch:
                pending.wake.set()

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
