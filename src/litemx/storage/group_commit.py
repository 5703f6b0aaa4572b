"""Group commit: rows inserted by many threads, committed together, each caller waiting for its own.

`GroupInserter.add(row)` hands one row to a background thread that writes every row pending
at that moment in one write transaction (one call of the repository's batch insert) and
commits once; the caller blocks until the transaction holding its row has committed and gets
the row's generated id (or the commit's error). So "when add() returns, the row is durable" holds exactly as with a
transaction per caller, at the cost of one commit (one fsync on SQLite) per batch instead of
one per caller, and with one writer instead of many queueing for SQLite's write lock.

Batches form by themselves: while one commit waits on its fsync, the rows of concurrent
callers queue up and go in the next one, so a lone caller waits for no timer.

Used where a request's only write is one independent row: the audit events of read-only
operations (storage/audit_writer.py) and the inbound queue row that `250` waits for
(service/inbound.py). Anything that must commit together with other changes keeps its own
transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError

from litemx.storage.db import Database

log = logging.getLogger("litemx.storage")

MAX_BATCH = 256  # rows per transaction: bounds one commit's size and its callers' wait
IDLE_EXIT_SECONDS = 5.0  # the thread ends after this long without work; the next add() starts one
WAIT_SECONDS = 300.0  # a bound on any caller's wait; far above SQLite's 30 s busy timeout


class GroupCommitError(RuntimeError):
    """A row could not be committed (the database's error is chained as the cause)."""


class _Pending:
    __slots__ = ("row", "done", "error", "id")

    def __init__(self, row: dict[str, Any]):
        self.row = row
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.id: Any = None


# (connection, rows) -> one result per row, in order (a generated id, or None)
WriteRows = Callable[[Connection, list[dict[str, Any]]], Sequence[Any]]


class GroupInserter:
    """Writes rows through one committer thread; started on first use, stopped by close().

    `write_rows` is the repository's batch insert. It is called inside the shared transaction,
    with the rows of one batch (or one row, when a batch is retried row by row).
    """

    def __init__(self, db: Database, write_rows: WriteRows, name: str, *, max_batch: int = MAX_BATCH,
                 idle_exit: float = IDLE_EXIT_SECONDS):
        self._db = db
        self._write_rows = write_rows
        self._name = f"litemx-commit-{name}"
        self._max_batch = max_batch
        self._idle_exit = idle_exit
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, row: dict[str, Any]) -> Any:
        """Insert one row; returns once it is committed (with its generated id, if asked for).

        Raises: GroupCommitError, chained to what the commit raised, or when no commit finished
        in time; the caller fails as it would have if its own transaction had failed.
        """
        pending = _Pending(row)
        with self._cond:
            inline = self._closed
            if not inline:
                self._queue.append(pending)
                self._start_if_idle()
                self._cond.notify()
        if inline:  # after close(): no thread any more, so one transaction of our own
            self._commit([pending])
        elif not pending.done.wait(WAIT_SECONDS):
            raise GroupCommitError(f"the {self._name} row was not committed in time")
        if pending.error is not None:
            # One failed commit fails every caller of its batch: each gets its own exception.
            raise GroupCommitError(f"the {self._name} row could not be committed") from pending.error
        return pending.id

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread (later rows commit inline)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)

    # -- the committer thread -----------------------------------------------------------------
    def _start_if_idle(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._commit(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """Everything queued (up to max_batch), or None when the thread should end."""
        with self._cond:
            while not self._queue:
                idle = self._closed or not self._cond.wait(self._idle_exit)
                if idle and not self._queue:
                    self._thread = None
                    return None
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
            return batch

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._insert(batch)
        except (DataError, IntegrityError):
            # A row the database refuses must not fail its neighbours: retry one by one.
            for pending in batch:
                self._commit_alone(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, who raises it
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done.set()

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
