"""Audit event rows for the group-commit tests (storage/audit_writer.py, storage/group_commit.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litemx.service.base import event_row


def audit_row(n: int, action: str | None = "message.read", account_id: str = "acc_writer") -> dict[str, Any]:
    """Event number `n`; `action=None` makes a row the database refuses (NOT NULL)."""
    row = event_row(at=datetime(2026, 5, 1, tzinfo=UTC), account_id=account_id, actor_type="token",
                    actor_id="tok_1", actor_name="t", interface="api", action="x", resource_type="message",
                    resource_id=f"msg_{n}", details={"n": n})
    row["action"] = action
    return row
