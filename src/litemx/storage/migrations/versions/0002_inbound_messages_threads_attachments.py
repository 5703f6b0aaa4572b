"""inbound messages threads attachments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 23:14:07.634261
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import litemx.storage.types
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_queue',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('raw_key', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=True),
    sa.Column('helo', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('next_attempt_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_queue'))
    )
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_queue_status_next_attempt_at'), ['status', 'next_attempt_at'], unique=False)

    op.create_table('threads',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('subject_key', sa.String(length=255), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('last_message_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_threads_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_threads_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_threads'))
    )
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_threads_mailbox_id_last_message_at'), ['mailbox_id', 'last_message_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_threads_mailbox_id_subject_key'), ['mailbox_id', 'subject_key'], unique=False)

    op.create_table('messages',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox', sa.String(length=320), nullable=False),
    sa.Column('thread_id', sa.String(length=40), nullable=False),
    sa.Column('direction', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('queue_id', sa.BigInteger(), nullable=True),
    sa.Column('message_id_header', sa.String(length=998), nullable=True),
    sa.Column('in_reply_to', sa.String(length=998), nullable=True),
    sa.Column('references', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('from_name', sa.Text(), nullable=True),
    sa.Column('from_addr', sa.String(length=320), nullable=True),
    sa.Column('to_addrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('cc_addrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reply_to', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=True),
    sa.Column('rcpt', sa.String(length=320), nullable=True),
    sa.Column('sent_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw_key', sa.String(length=64), nullable=True),
    sa.Column('text_body', sa.Text(), nullable=True),
    sa.Column('html_body', sa.Text(), nullable=True),
    sa.Column('snippet', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('has_attachments', sa.Boolean(), nullable=False),
    sa.Column('auth', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('signals', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('deleted_content_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_messages_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_messages_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], name=op.f('fk_messages_thread_id_threads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_messages')),
    sa.UniqueConstraint('id', name=op.f('uq_messages_id')),
    sa.UniqueConstraint('queue_id', 'mailbox_id', name=op.f('uq_messages_queue_id_mailbox_id'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_account_id_mailbox_id_seq'), ['account_id', 'mailbox_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_mailbox_id_message_id_header'), ['mailbox_id', 'message_id_header'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_thread_id_seq'), ['thread_id', 'seq'], unique=False)

    op.create_table('attachments',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('blob_key', sa.String(length=64), nullable=True),
    sa.Column('content_id', sa.String(length=255), nullable=True),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('deleted_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_message_id_position'), ['message_id', 'position'], unique=False)
    _create_search_index()


# The full-text index lives outside the SQLAlchemy metadata because each database has its own
# machinery: SQLite FTS5 reading its content through a view (no duplicated text), PostgreSQL a
# weighted tsvector table with a GIN index (weights stand in for columns: A subject, B from,
# C to/cc, D body). Both use no stemming ('unicode61' / 'simple') so the two agree.
SQLITE_FTS = [
    """CREATE VIEW message_fts_source AS SELECT seq, subject, text_body AS body,
           coalesce(from_name, '') || ' ' || coalesce(from_addr, '') AS from_addr,
           coalesce(to_addrs, '') || ' ' || coalesce(cc_addrs, '') AS to_addr FROM messages""",
    """CREATE VIRTUAL TABLE message_fts USING fts5(subject, body, from_addr, to_addr,
           content='message_fts_source', content_rowid='seq', tokenize='unicode61 remove_diacritics 2')""",
]
POSTGRES_FTS = [
    """CREATE TABLE message_fts (seq BIGINT PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,
           doc TSVECTOR NOT NULL)""",
    "CREATE INDEX ix_message_fts_doc ON message_fts USING GIN (doc)",
]


def _create_search_index() -> None:
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS
    for statement in statements:
        op.execute(statement)


def _drop_search_index() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS message_fts")
        op.execute("DROP VIEW IF EXISTS message_fts_source")
    else:
        op.execute("DROP TABLE IF EXISTS message_fts")


def downgrade() -> None:
    _drop_search_index()
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_message_id_position'))

    op.drop_table('attachments')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_thread_id_seq'))
        batch_op.drop_index(batch_op.f('ix_messages_mailbox_id_message_id_header'))
        batch_op.drop_index(batch_op.f('ix_messages_account_id_mailbox_id_seq'))

    op.drop_table('messages')
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_threads_mailbox_id_subject_key'))
        batch_op.drop_index(batch_op.f('ix_threads_mailbox_id_last_message_at'))

    op.drop_table('threads')
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_queue_status_next_attempt_at'))

    op.drop_table('inbound_queue')
