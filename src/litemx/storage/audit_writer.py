"""The audit events of read-only operations, group-committed (storage/group_commit.py).

A read (list, read, search, thread) runs in a read transaction — on SQLite a WAL snapshot that
takes no lock — and then has to make its audit event durable before the response leaves.
One write transaction per request for that serialised every reader on the single writer and
paid one fsync each (bench/PROFILE.md finding 1). `AuditWriter.append` returns once the event
is committed, in a transaction shared with the events of concurrent requests: when it returns
the event is durable; when it raises, the request fails.

Mutations do not come here: their event belongs in the mutation's own transaction.
"""

from __future__ import annotations

from typing import Any

from litemx.storage import audit_repo
from litemx.storage.db import Database
from litemx.storage.group_commit import IDLE_EXIT_SECONDS, MAX_BATCH, GroupCommitError, GroupInserter

AuditWriteError = GroupCommitError


class AuditWriter(GroupInserter):
    """One committer thread for audit rows; started on first use, stopped by close()."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, idle_exit: float = IDLE_EXIT_SECONDS):
        super().__init__(db, audit_repo.append_many, "audit", max_batch=max_batch, idle_exit=idle_exit)

    def append(self, row: dict[str, Any]) -> None:
        """Insert one audit row and return once it is committed.

        Raises: AuditWriteError (chained to the database's error) when it could not be committed.
        """
        self.add(row)
