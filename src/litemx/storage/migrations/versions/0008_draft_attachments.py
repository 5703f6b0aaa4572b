"""draft attachments

Drafts and direct sends carry attachments (issue 4, SPEC §6 "text and HTML bodies,
attachments"): `draft_attachments` holds each file's metadata and the key of its
content-addressed blob. `blob_key` is indexed because retention and purge delete a blob only
when no `*_key` column references it any more (storage/retention_repo.referenced_keys finds
this column from the schema).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import litemx.storage.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('draft_attachments',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('draft_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('blob_key', sa.String(length=64), nullable=True),
    sa.Column('content_id', sa.String(length=255), nullable=True),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['drafts.id'], name=op.f('fk_draft_attachments_draft_id_drafts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft_attachments'))
    )
    with op.batch_alter_table('draft_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_draft_attachments_draft_id_position'), ['draft_id', 'position'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_draft_attachments_blob_key'), ['blob_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('draft_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_draft_attachments_blob_key'))
        batch_op.drop_index(batch_op.f('ix_draft_attachments_draft_id_position'))
    op.drop_table('draft_attachments')
