"""messages.late: date-bounded searches without walking the whole account

Issue 8: a search with `after:`/`before:` and no words walked `(account_id, seq)` from the
newest message until it had a page inside the range, so a month half a year back read most of
the account (53 ms at 100,000 messages, linear in the mail newer than the range). Results are
newest first by `seq` (the order every list and cursor uses), and `seq` follows the order
messages are stored, not `received_at`; the two agree except for mail stored late (a retried
delivery, a slow worker). `late` marks those rows, so the search can walk
`(account_id, late, received_at)` from the end of the range and take the few rows it needs
(storage/search_repo.py `_date_statement` has the argument).

Existing rows are marked against the running maximum of `received_at` over the earlier rows
of their account (all of them, late or not: that marks at least the rows the insert-time rule
would, which is what the search needs).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 05:00:00.000000
"""
from __future__ import annotations

from datetime import datetime

from alembic import op
import sqlalchemy as sa

from litemx.storage.messages_repo import ORDER_SLACK

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INDEX = "ix_messages_account_id_late_received_at"
_BATCH = 5_000


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): messages can be large, and SQLite adds a column
    # with a constant default without rewriting the table.
    op.add_column("messages", sa.Column("late", sa.Boolean(), server_default=sa.false(), nullable=False))
    _mark_late_rows()
    op.create_index(INDEX, "messages", ["account_id", "late", "received_at"], unique=False)


def _mark_late_rows() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT seq, account_id, received_at FROM messages ORDER BY account_id, seq"))
    mark = sa.text("UPDATE messages SET late = :late WHERE seq = :seq")
    account, newest, late = None, None, []
    for seq, account_id, received_at in rows:  # streamed; the updates run after it
        at = _as_datetime(received_at)
        if account_id != account:
            account, newest = account_id, at
        elif at < newest - ORDER_SLACK:
            late.append({"seq": seq, "late": True})
        else:
            newest = max(newest, at)
    for start in range(0, len(late), _BATCH):
        conn.execute(mark, late[start:start + _BATCH])


def _as_datetime(value: datetime | str) -> datetime:
    """Raw SQL returns SQLite's text form; both sides compare in one (naive or aware) kind."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def downgrade() -> None:
    op.drop_index(INDEX, table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("late")
