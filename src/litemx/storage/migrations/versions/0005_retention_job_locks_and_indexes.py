"""retention job locks and indexes

Retention, purge and abuse controls (SPEC §10, §11): the `job_locks` table that lets exactly
one node run a periodic job, and the indexes the retention sweep needs so a daily run over a
large mailbox reads only what is due (partial indexes on content-still-stored / content-gone
messages) and can check a content-addressed blob key for other references by index probe.
No existing column changes: the content columns, tombstones and flags date from 0001/0002.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import litemx.storage.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_CONTENT_STORED = sa.text("deleted_content_at IS NULL")
_CONTENT_GONE = sa.text("deleted_content_at IS NOT NULL")


def upgrade() -> None:
    op.create_table('job_locks',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=True),
    sa.Column('leased_until', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_locks'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_content_due', ['mailbox_id', 'received_at'], unique=False,
                              sqlite_where=_CONTENT_STORED, postgresql_where=_CONTENT_STORED)
        batch_op.create_index('ix_messages_metadata_due', ['mailbox_id', 'received_at'], unique=False,
                              sqlite_where=_CONTENT_GONE, postgresql_where=_CONTENT_GONE)
        batch_op.create_index(batch_op.f('ix_messages_raw_key'), ['raw_key'], unique=False)
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_blob_key'), ['blob_key'], unique=False)
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_queue_raw_key'), ['raw_key'], unique=False)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_account_id_at'), ['account_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id_at'))
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_queue_raw_key'))
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_blob_key'))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_raw_key'))
        batch_op.drop_index('ix_messages_metadata_due')
        batch_op.drop_index('ix_messages_content_due')
    op.drop_table('job_locks')
