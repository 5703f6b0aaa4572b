"""sns messages

The SES inbound webhook (`POST /api/inbound/ses`, SPEC §5): `sns_messages` de-duplicates SNS
deliveries on their MessageId (SNS delivers at least once) and keeps the subscription
confirmations this server made.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import litemx.storage.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sns_messages',
    sa.Column('message_id', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('topic_arn', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('claimed_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queue_id', sa.BigInteger(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_sns_messages'))
    )
    with op.batch_alter_table('sns_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sns_messages_claimed_at'), ['claimed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sns_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sns_messages_claimed_at'))
    op.drop_table('sns_messages')
