"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 22:59:56.230351
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import litemx.storage.types
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plan', sa.String(length=20), nullable=False),
    sa.Column('disabled_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=True),
    sa.Column('actor_type', sa.String(length=10), nullable=False),
    sa.Column('actor_id', sa.String(length=40), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=True),
    sa.Column('interface', sa.String(length=10), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=True),
    sa.Column('resource_id', sa.String(length=320), nullable=True),
    sa.Column('mailbox', sa.String(length=320), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_account_id_id'), ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_account_id_mailbox_id'), ['account_id', 'mailbox', 'id'], unique=False)

    op.create_table('domains',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('mail_from', sa.String(length=253), nullable=False),
    sa.Column('inbound_ready', sa.Boolean(), nullable=False),
    sa.Column('outbound_ready', sa.Boolean(), nullable=False),
    sa.Column('provider_approved', sa.Boolean(), nullable=False),
    sa.Column('dmarc_rua', sa.String(length=320), nullable=True),
    sa.Column('last_checked_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_domains_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domains')),
    sa.UniqueConstraint('name', name=op.f('uq_domains_name'))
    )
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_domains_account_id_name'), ['account_id', 'name'], unique=False)

    op.create_table('tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=24), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('grants', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_tokens_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
    sa.UniqueConstraint('prefix', name=op.f('uq_tokens_prefix'))
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_account_id_created_at'), ['account_id', 'created_at'], unique=False)

    op.create_table('aliases',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_aliases_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_aliases_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aliases')),
    sa.UniqueConstraint('address', name=op.f('uq_aliases_address'))
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_account_id_address'), ['account_id', 'address'], unique=False)

    op.create_table('mailboxes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('legal_hold', sa.Boolean(), nullable=False),
    sa.Column('disabled_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_mailboxes_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_mailboxes_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mailboxes')),
    sa.UniqueConstraint('address', name=op.f('uq_mailboxes_address'))
    )
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mailboxes_account_id_address'), ['account_id', 'address'], unique=False)

    op.create_table('alias_targets',
    sa.Column('alias_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['alias_id'], ['aliases.id'], name=op.f('fk_alias_targets_alias_id_aliases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_alias_targets_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alias_id', 'mailbox_id', name=op.f('pk_alias_targets'))
    )
    with op.batch_alter_table('alias_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_targets_mailbox_id'), ['mailbox_id'], unique=False)

    op.create_table('catchalls',
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.Column('updated_at', litemx.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_catchalls_domain_id_domains'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_catchalls_mailbox_id_mailboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('domain_id', name=op.f('pk_catchalls'))
    )


def downgrade() -> None:
    op.drop_table('catchalls')
    with op.batch_alter_table('alias_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alias_targets_mailbox_id'))

    op.drop_table('alias_targets')
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mailboxes_account_id_address'))

    op.drop_table('mailboxes')
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_account_id_address'))

    op.drop_table('aliases')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_account_id_created_at'))

    op.drop_table('tokens')
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_domains_account_id_name'))

    op.drop_table('domains')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id_mailbox_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id_id'))

    op.drop_table('audit_events')
    op.drop_table('accounts')
