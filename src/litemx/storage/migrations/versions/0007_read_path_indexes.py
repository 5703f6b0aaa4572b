"""read path indexes

Issue 8 (bench/PROFILE.md finding 2): the newest-first reads walked the wrong index and sorted
a whole account. Lists and searches filter on `messages.account_id` (and, for a mailbox-scoped
token or a `mailbox=` filter, on the `mailbox` address) and order by `seq DESC`; thread lists
filter threads the same way and order by `(last_message_at, id) DESC`; the retention export
and purge walk one mailbox by `mailbox_id` in `seq` order. Each now has an index whose leading
equality columns are followed by the sort key, so both databases read the newest rows first
and stop at LIMIT instead of sorting every message of the account.

`ix_messages_account_id_mailbox_id_seq` (0002) is dropped: no query filters on account and
mailbox id together, and the two new messages indexes serve what it was meant for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""
from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_NEW = (
    ("messages", ("account_id", "seq")),
    ("messages", ("account_id", "mailbox", "seq")),
    ("messages", ("mailbox_id", "seq")),
    ("threads", ("account_id", "last_message_at", "id")),
    ("threads", ("account_id", "mailbox", "last_message_at", "id")),
)


def _name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, columns in _NEW:
        op.create_index(_name(table, columns), table, list(columns), unique=False)
    op.drop_index("ix_messages_account_id_mailbox_id_seq", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_account_id_mailbox_id_seq", "messages", ["account_id", "mailbox_id", "seq"],
                    unique=False)
    for table, columns in reversed(_NEW):
        op.drop_index(_name(table, columns), table_name=table)
