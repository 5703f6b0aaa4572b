"""blob_deletions: a counter bumped by every transaction that deletes blobs

Inbound processing writes a batch's blobs before its storing transaction (outside the writer
lock), so that transaction used to check that each blob was still there (a retention run may
have deleted a shared attachment in between; service/blob_refs.py). On S3 that was one HEAD
request per blob inside the storing transaction. Every deleter now bumps this counter in the
transaction that deletes, so the storing transaction compares the counter with the value read
before its blobs were written, and checks the blobs only when a deletion committed meanwhile.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 19:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blob_deletions',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blob_deletions'))
    )
    op.execute("INSERT INTO blob_deletions (id, epoch) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table('blob_deletions')
