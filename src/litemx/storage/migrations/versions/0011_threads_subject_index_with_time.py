"""threads: the subject fallback's index ends with last_message_at

A message with no known In-Reply-To/References joins the newest thread of its mailbox with the
same subject key within SUBJECT_WINDOW (core/threading.py), asked by
`messages_repo.thread_by_subject` with `ORDER BY last_message_at DESC LIMIT 1`. With the index
on `(mailbox_id, subject_key)` SQLite's planner preferred `(mailbox_id, last_message_at)`,
which serves the ORDER BY, and walked every thread of the mailbox active in the window to find
the subject: 0.7 ms per new thread at 100,000 messages (3.7 ms with a 4-month window), growing
with the store, inside the storing transaction that serialises every worker. On
`(mailbox_id, subject_key, last_message_at)` the equalities and the order are one index range:
7 µs. PostgreSQL uses the same index the same way.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 11:00:00.000000
"""
from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

OLD = "ix_threads_mailbox_id_subject_key"
NEW = "ix_threads_mailbox_id_subject_key_last_message_at"


def upgrade() -> None:
    op.create_index(NEW, "threads", ["mailbox_id", "subject_key", "last_message_at"], unique=False)
    op.drop_index(OLD, table_name="threads")  # a prefix of NEW: nothing needs it any more


def downgrade() -> None:
    op.create_index(OLD, "threads", ["mailbox_id", "subject_key"], unique=False)
    op.drop_index(NEW, table_name="threads")
