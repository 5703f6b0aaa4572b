"""inbound_queue: the lease walks pending rows in id order

`inbound_repo.lease_due` claims the oldest due rows: `status = 'pending' AND next_attempt_at
<= now ORDER BY id LIMIT n`. On `(status, next_attempt_at)` SQLite's planner took the range
on next_attempt_at and sorted every due row to keep the first n: 20 ms per lease with a
backlog of 100,000 messages (bench/search.py accepts its corpus before draining it, as a
burst or an outage leaves a queue), inside the storing transaction that serialises every
worker, about a quarter of the drain's writer-lock time. On `(status, id, next_attempt_at)`
the pending rows are one index range already in id order, and next_attempt_at is checked in
the index: the walk stops after n due rows (0.1 ms at any depth). The rows it passes over are
only the leased and backed-off ones. The old index served nothing the new one does not:
`release_leases` and `pending_count` read the pending range as well. PostgreSQL uses the new
index the same way (`FOR UPDATE SKIP LOCKED` in id order).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 16:30:00.000000
"""
from __future__ import annotations

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OLD = "ix_inbound_queue_status_next_attempt_at"
NEW = "ix_inbound_queue_status_id_next_attempt_at"


def upgrade() -> None:
    op.create_index(NEW, "inbound_queue", ["status", "id", "next_attempt_at"], unique=False)
    op.drop_index(OLD, table_name="inbound_queue")


def downgrade() -> None:
    op.create_index(OLD, "inbound_queue", ["status", "next_attempt_at"], unique=False)
    op.drop_index(NEW, table_name="inbound_queue")
