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
from litemx.storage.group_commit import MAX_BATCH, GroupCommitError, GroupInserter

AuditWriteError = GroupCommitError


class AuditWriter(GroupInserter):
    """Group-committed audit rows (see storage/group_commit.py)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH):
        super().__init__(db, audit_repo.append_many, "audit", max_batch=max_batch)

    def append(self, row: dict[str, Any]) -> None:
        """Insert one audit row and return once it is committed.

        Raises: AuditWriteError (chained to the database's error) when it could not be committed.
        """
        self.add(row)
