"""inline raw in the inbound queue, routing version

Two changes for the SMTP accept path (issue 8):

- `inbound_queue.raw`: a small accepted message is kept in its queue row, so `250` waits for
  one (group) commit instead of a blob write with its file and directory fsyncs. The worker
  writes the blob (fsynced) before the transaction that marks the row done clears `raw`.
- `routing_version`: one counter row, bumped by triggers on every change that can change a
  routing decision (domains, mailboxes, aliases, alias targets, catchalls, account disable).
  The MX caches routes and re-reads only this counter per RCPT; triggers rather than service
  code so no write path (admin tools, purge, cascades) can forget to bump it, on any node.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 02:30:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# table -> the columns whose UPDATE can change a routing decision (None: every column)
WATCHED: dict[str, tuple[str, ...] | None] = {
    "accounts": ("disabled_at",),
    "domains": ("name", "mail_from", "account_id", "disabled_at"),
    "mailboxes": ("address", "account_id", "domain_id", "disabled_at"),
    "aliases": None,
    "alias_targets": None,
    "catchalls": None,
}
BUMP = "UPDATE routing_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw', sa.LargeBinary(), nullable=True))
    op.create_table('routing_version',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_version'))
    )
    op.execute("INSERT INTO routing_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    # SQLite triggers are per row; a bump per changed row is cheap (directory changes are rare).
    for table, columns in WATCHED.items():
        update = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
        for event, name in (("INSERT", "ins"), (update, "upd"), ("DELETE", "del")):
            op.execute(f"CREATE TRIGGER trg_{table}_routing_{name} AFTER {event} ON {table} "
                       f"BEGIN {BUMP}; END")


def _postgresql_triggers() -> None:
    op.execute("CREATE FUNCTION litemx_bump_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
               f"BEGIN {BUMP}; RETURN NULL; END $$")
    for table, columns in WATCHED.items():
        update = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
        op.execute(f"CREATE TRIGGER trg_{table}_routing AFTER INSERT OR {update} OR DELETE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION litemx_bump_routing_version()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_routing ON {table}")
        op.execute("DROP FUNCTION IF EXISTS litemx_bump_routing_version()")
    else:
        for table in WATCHED:
            for name in ("ins", "upd", "del"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_routing_{name}")
    op.drop_table('routing_version')
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.drop_column('raw')
