"""The audit events of read-only operations, group-committed (storage/group_commit.py).

A read (list, read, search, thread) runs in a read transaction — on SQLite a WAL snapshot that
takes no lock — and then has to make its audit event durable before the response leaves.
One write transaction per request for that serialised every reader on the single writer and
paid one fsync each (bench/PROFILE.md finding 1). `AuditWriter.append` returns once the event
is committed, in a transaction shared with the events of concurrent requests: when it returns
the event is durable; when it raises, the request fails.

On an event loop, `AuditWriter.run(work)` runs a synchronous piece of work (authenticate, then
one read-only service call) with its events held back, then commits them without blocking the
loop (`GroupInserter.add_async`) and only then returns the work's answer or raises its error.
So a request served on the loop still answers only after its events are durable, and the read
itself costs no thread hop.

Mutations do not come here: their event belongs in the mutation's own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio.to_thread

from litemx.storage import audit_repo
from litemx.storage.db import Database
from litemx.storage.group_commit import MAX_BATCH, GroupCommitError, GroupInserter

AuditWriteError = GroupCommitError
R = TypeVar("R")
# The writer whose `run` is running work, and the events its `append` holds back meanwhile.
_HELD: ContextVar[tuple[AuditWriter, list[dict[str, Any]]] | None] = ContextVar("litemx_held_audit_events",
                                                                                default=None)


class AuditWriter(GroupInserter):
    """Group-committed audit rows (see storage/group_commit.py)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH):
        super().__init__(db, audit_repo.append_many, "audit", max_batch=max_batch)

    def append(self, row: dict[str, Any]) -> None:
        """Insert one audit row and return once it is committed — or, inside `run`, hand it to
        `run`, which commits it before its request can answer.

        Raises: AuditWriteError (chained to the database's error) when it could not be committed.
        """
        held = _HELD.get()
        if held is not None and held[0] is self:
            held[1].append(row)
            return
        self.add(row)

    async def run(self, work: Callable[[], R], *, in_thread: bool | None = None) -> R:
        """Run `work` with the events it appends held back, commit them, then return its result
        or raise its error.

        For short work only (authentication, a read-only operation: a few indexed reads), which
        runs on the loop itself when the database is SQLite (a local file: no wait worth a
        thread hop) and in one worker thread otherwise (every query waits on the network);
        `in_thread` overrides that choice. Never for work that may wait for a lock.

        Raises: whatever `work` raises (after its events are committed); AuditWriteError when
        they could not be committed, which then replaces the answer.
        """
        if in_thread is None:
            in_thread = self._db.dialect != "sqlite"
        held: list[dict[str, Any]] = []
        token = _HELD.set((self, held))
        try:
            return await anyio.to_thread.run_sync(work) if in_thread else work()
        finally:
            _HELD.reset(token)
            if held:
                # Queued together and shielded: a request cancelled while it waits still has
                # every event of its read committed (the invariant: no unaudited content read).
                await asyncio.shield(asyncio.gather(*(self.add_async(row) for row in held)))
