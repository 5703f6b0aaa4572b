"""The tables. Alembic migrations (storage/migrations) create and evolve them; this module is
what repositories query against. Keep both in step: `alembic check` in the tests catches drift.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from litemx.storage.types import BigIntPK, JSONType, UTCDateTime

# Stable constraint names so migrations are identical on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("plan", String(20), nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    # First characters of the secret, stored in clear so lookup is an index probe;
    # the SHA-256 of the whole secret is what authenticates (compared in constant time).
    Column("prefix", String(24), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("scopes", JSONType, nullable=False),
    Column("grants", JSONType, nullable=False),
    Column("created_by", String(40), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    Index(None, "account_id", "created_at"),
)

domains = Table(
    "domains",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # One domain is hosted by one account on an instance: routing needs a single owner.
    Column("name", String(253), nullable=False, unique=True),
    Column("mail_from", String(253), nullable=False),
    Column("inbound_ready", Boolean, nullable=False, default=False),
    Column("outbound_ready", Boolean, nullable=False, default=False),
    Column("provider_approved", Boolean, nullable=False, default=False),
    Column("dmarc_rua", String(320), nullable=True),
    Column("last_checked_at", UTCDateTime, nullable=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # {"<type> <host>": "ok|missing|mismatch"} as of the last DNS check (0003); the background
    # re-check compares against it to record only changes.
    Column("dns_status", JSONType, nullable=True),
    Index(None, "account_id", "name"),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("domain_id", String(40), ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False, unique=True),
    Column("display_name", String(200), nullable=True),
    Column("retention_days", Integer, nullable=False),
    Column("legal_hold", Boolean, nullable=False, default=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "account_id", "address"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("domain_id", String(40), ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "account_id", "address"),
)

alias_targets = Table(
    "alias_targets",
    metadata,
    Column("alias_id", String(40), ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "mailbox_id"),
)

catchalls = Table(
    "catchalls",
    metadata,
    Column("domain_id", String(40), ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    # NULL for requests that could not be tied to an account (an unknown token).
    Column("account_id", String(40), nullable=True),
    Column("actor_type", String(10), nullable=False),  # token | system | operator | anonymous
    Column("actor_id", String(40), nullable=True),
    Column("actor_name", String(200), nullable=True),
    Column("interface", String(10), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(32), nullable=True),
    Column("resource_id", String(320), nullable=True),
    Column("mailbox", String(320), nullable=True),
    Column("outcome", String(10), nullable=False),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("details", JSONType, nullable=False),
    Index(None, "account_id", "id"),
    Index(None, "account_id", "mailbox", "id"),
)

inbound_queue = Table(
    "inbound_queue",
    metadata,
    # One accepted SMTP transaction (or simulate/SES delivery). The raw bytes are in the blob
    # store before this row commits; the row commits before `250` (SPEC §5). Processing
    # (parse, verdicts, threads, index) happens after and is re-driven after a crash.
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("raw_key", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("mail_from", String(320), nullable=False),  # '' is the null reverse-path (bounces)
    Column("recipients", JSONType, nullable=False),  # [{"rcpt": str, "mailbox_id": str}]
    Column("client_ip", String(64), nullable=True),
    Column("helo", String(255), nullable=True),
    Column("source", String(16), nullable=False),  # smtp | simulate | ses
    Column("status", String(10), nullable=False),  # pending | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("processed_at", UTCDateTime, nullable=True),
    # A small message's bytes until the worker has written its blob (0009): `250` then waits
    # for this row's (group) commit alone. NULL once processed, or when accepted into the blob
    # store directly (large messages).
    Column("raw", LargeBinary, nullable=True),
    # The lease reads the due rows in due order straight off it (inbound_repo.lease_due).
    Index(None, "status", "next_attempt_at"),
)

# One row (id 1): bumped by database triggers on every directory change that can change a
# routing decision (migration 0009), so the MX's route cache is checked with one read.
routing_version = Table(
    "routing_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("subject_key", String(255), nullable=False),  # normalised subject, for the fallback rule
    Column("message_count", Integer, nullable=False),
    Column("last_message_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "mailbox_id", "last_message_at"),
    Index(None, "mailbox_id", "subject_key", "last_message_at"),  # the subject fallback (migration 0011)
    Index(None, "account_id", "last_message_at", "id"),  # thread lists, newest activity first (0007)
    Index(None, "account_id", "mailbox", "last_message_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    # seq: integer key for the FTS5 rowid and stable newest-first cursors; id: the public id.
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("thread_id", String(40), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(10), nullable=False),  # inbound | outbound
    Column("status", String(16), nullable=False),  # received | quarantined | queued | sent | failed
    Column("queue_id", BigInteger, nullable=True),  # inbound_queue row it came from
    Column("message_id_header", String(998), nullable=True),
    Column("in_reply_to", String(998), nullable=True),
    Column("references", JSONType, nullable=False),
    Column("subject", Text, nullable=False),
    Column("from_name", Text, nullable=True),
    Column("from_addr", String(320), nullable=True),
    Column("to_addrs", JSONType, nullable=False),
    Column("cc_addrs", JSONType, nullable=False),
    Column("reply_to", JSONType, nullable=False),
    Column("mail_from", String(320), nullable=True),
    Column("rcpt", String(320), nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),  # the Date header
    Column("received_at", UTCDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("raw_key", String(64), nullable=True),  # NULL once retention removed the content
    Column("text_body", Text, nullable=True),
    Column("html_body", Text, nullable=True),
    Column("snippet", Text, nullable=False),
    Column("headers", JSONType, nullable=False),
    Column("has_attachments", Boolean, nullable=False),
    Column("auth", JSONType, nullable=False),
    Column("signals", JSONType, nullable=False),
    Column("deleted_content_at", UTCDateTime, nullable=True),
    # Stored out of received_at order (0010, messages_repo.add_message): false means this row's
    # received_at is at least every earlier non-late row's minus ORDER_SLACK, so date-bounded
    # searches can walk received_at and still return the newest rows by seq.
    Column("late", Boolean, nullable=False, default=False, server_default=false()),
    UniqueConstraint("queue_id", "mailbox_id"),  # re-driving a queue row never duplicates
    # Newest-first reads (0007): the scope's equality columns, then the sort key, so a list or
    # search walks the newest rows and stops at LIMIT (scopes filter on the `mailbox` address).
    Index(None, "account_id", "seq"),
    Index(None, "account_id", "mailbox", "seq"),
    Index(None, "mailbox_id", "seq"),  # retention export and purge walk one mailbox
    Index(None, "mailbox_id", "message_id_header"),
    Index(None, "thread_id", "seq"),
    Index(None, "account_id", "late", "received_at"),  # after:/before: searches (0010)
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    Column("blob_key", String(64), nullable=True),
    Column("content_id", String(255), nullable=True),
    Column("disposition", String(16), nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Index(None, "message_id", "position"),
)

dkim_keys = Table(
    "dkim_keys",
    metadata,
    # One DKIM key pair of a domain (SPEC §4). The private half is sealed (AES-256-GCM, bound to
    # "<domain>/<selector>") and is read only by the outbound signer; nothing renders it.
    Column("id", String(40), primary_key=True),
    Column("domain_id", String(40), ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("selector", String(63), nullable=False),  # one DNS label (RFC 1035 §2.3.4)
    Column("algorithm", String(10), nullable=False),  # rsa | ed25519
    Column("public_key_b64", Text, nullable=False),
    Column("private_key_sealed", LargeBinary, nullable=False),
    Column("status", String(10), nullable=False),  # active | retiring | retired
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
    # A selector is never reused within a domain: a verifier holding an old signature must
    # never find a different key under its selector.
    UniqueConstraint("domain_id", "selector"),
    Index(None, "domain_id", "status"),
)

__all__ = [
    "metadata",
    "accounts",
    "tokens",
    "domains",
    "mailboxes",
    "aliases",
    "alias_targets",
    "catchalls",
    "audit_events",
    "inbound_queue",
    "threads",
    "messages",
    "attachments",
    "dkim_keys",
]

# -- drafts, sending and delivery (migration 0004) ------------------------------------------

drafts = Table(
    "drafts",
    metadata,
    # A message being written (SPEC §6). Sending is a separate step that turns it into an
    # outbound `messages` row; the draft then stays as `sent` and points at that message.
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("thread_id", String(40), ForeignKey("threads.id", ondelete="SET NULL"), nullable=True),
    Column("reply_to_message", String(40), nullable=True),  # public id of the message answered
    Column("in_reply_to", String(998), nullable=True),
    Column("references", JSONType, nullable=False),
    Column("subject", Text, nullable=False),
    Column("to_addrs", JSONType, nullable=False),  # [{"name": str, "address": str}]
    Column("cc_addrs", JSONType, nullable=False),
    Column("bcc_addrs", JSONType, nullable=False),
    Column("text_body", Text, nullable=True),
    Column("html_body", Text, nullable=True),
    Column("status", String(10), nullable=False),  # draft | sent
    Column("sent_message_id", String(40), nullable=True),
    Column("created_by", String(40), nullable=True),  # token id; NULL for system
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "account_id", "mailbox_id", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    # One outbound message to one recipient: the unit the outbound worker claims, retries and
    # matches bounces against (its id is in the VERP envelope sender).
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("envelope_from", String(320), nullable=False),
    Column("status", String(10), nullable=False),  # queued | deferred | delivered | failed | held
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_reply", String(1000), nullable=True),
    Column("provider_id", String(200), nullable=True),  # e.g. the SES MessageId, for notifications
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "status", "next_attempt_at"),
    Index(None, "message_id"),
    Index(None, "provider_id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    # Every attempt's outcome (SPEC §6: "each attempt's outcome is recorded").
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(10), nullable=False),  # delivered | deferred | failed
    Column("code", Integer, nullable=True),  # SMTP reply code; NULL for connection errors
    Column("reply", String(1000), nullable=True),
    Column("transport", String(16), nullable=False),
    Column("host", String(255), nullable=True),
    Index(None, "delivery_id", "id"),
)

delivery_events = Table(
    "delivery_events",
    metadata,
    # What the world said after the fact: DSN bounces and delays (RFC 3464), ARF complaints
    # (RFC 5965), SES notifications, and synchronous 5xx refusals.
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(40), ForeignKey("messages.id", ondelete="CASCADE"), nullable=True),
    Column("delivery_id", String(40), ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=True),
    Column("type", String(16), nullable=False),  # bounce | delay | complaint | delivered
    Column("recipient", String(320), nullable=True),
    Column("status", String(16), nullable=True),  # RFC 3463 status, e.g. 5.1.1
    Column("diagnostic", String(1000), nullable=True),
    Column("source", String(10), nullable=False),  # smtp | dsn | arf | ses
    Column("at", UTCDateTime, nullable=False),
    Column("details", JSONType, nullable=False),
    Index(None, "message_id", "id"),
)

suppressions = Table(
    "suppressions",
    metadata,
    # Recipients an account no longer sends to (hard bounce, complaint); checked by preflight.
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("reason", String(16), nullable=False),  # bounce | complaint
    Column("mailbox", String(320), nullable=True),  # the mailbox whose send caused it
    Column("message_id", String(40), nullable=True),
    Column("details", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

send_counters = Table(
    "send_counters",
    metadata,
    # Plan limits (SPEC §6) counted atomically: one row per (scope, key, period), incremented
    # with `UPDATE ... WHERE count < :limit` in the transaction that queues the message.
    Column("scope", String(10), primary_key=True),  # mailbox | account
    Column("key", String(320), primary_key=True),  # mailbox id | account id
    Column("period", String(12), primary_key=True),  # d2026-05-01 | m2026-05 (UTC)
    Column("count", Integer, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # `Idempotency-Key` on send routes: per account, kept 24 h; a replay answers the stored response.
    Column("account_id", String(40), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", JSONType, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)

__all__ += [
    "drafts",
    "deliveries",
    "delivery_attempts",
    "delivery_events",
    "suppressions",
    "send_counters",
    "idempotency_keys",
]

# -- retention, purge and periodic jobs (migration 0005) ------------------------------------

job_locks = Table(
    "job_locks",
    metadata,
    # One row per periodic job (e.g. `retention`): whoever holds an unexpired lease runs it, and
    # `last_run_at` makes the cadence cluster-wide (ARCHITECTURE: only one node runs a job).
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=True),
    Column("leased_until", UTCDateTime, nullable=True),
    Column("last_run_at", UTCDateTime, nullable=True),
)

# The retention sweep's access paths, so a day's run over a large mailbox touches only what
# it changes: messages whose content is due, messages whose metadata is due, and the blob
# keys it must check for other references before deleting a content-addressed blob.
Index("ix_messages_content_due", messages.c.mailbox_id, messages.c.received_at,
      sqlite_where=messages.c.deleted_content_at.is_(None),
      postgresql_where=messages.c.deleted_content_at.is_(None))
Index("ix_messages_metadata_due", messages.c.mailbox_id, messages.c.received_at,
      sqlite_where=messages.c.deleted_content_at.is_not(None),
      postgresql_where=messages.c.deleted_content_at.is_not(None))
Index(None, messages.c.raw_key)
Index(None, attachments.c.blob_key)
Index(None, inbound_queue.c.raw_key)
Index(None, audit_events.c.account_id, audit_events.c.at)

__all__ += ["job_locks"]

# -- the SES inbound webhook (migration 0006) -------------------------------------------------

sns_messages = Table(
    "sns_messages",
    metadata,
    # One row per SNS MessageId the SES webhook took (SNS delivers at least once): a redelivery
    # finds `done` and is answered without storing the mail again; `processing` is a claim that
    # a crashed request leaves behind, taken over once it is older than a lease. Subscription
    # confirmations stay as the record of the topics this server confirmed.
    Column("message_id", String(100), primary_key=True),
    Column("type", String(32), nullable=False),  # Notification | SubscriptionConfirmation
    Column("topic_arn", String(256), nullable=False),
    Column("status", String(12), nullable=False),  # processing | done
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("queue_id", BigInteger, nullable=True),  # the inbound_queue row of received mail
    Column("details", JSONType, nullable=False),
    Index(None, "claimed_at"),
)

__all__ += ["sns_messages"]

# -- draft attachments (migration 0008) --------------------------------------------------------

draft_attachments = Table(
    "draft_attachments",
    metadata,
    # A file on a draft: the bytes are a content-addressed blob (shared with any message or
    # draft holding the same bytes), the metadata is here. When the draft is sent its rows keep
    # the metadata but hand the blob reference over to the sent message's `attachments` rows
    # (blob_key → NULL), so the message's retention window, not the draft, decides the content.
    Column("id", String(40), primary_key=True),
    Column("draft_id", String(40), ForeignKey("drafts.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    Column("blob_key", String(64), nullable=True),
    Column("content_id", String(255), nullable=True),
    Column("disposition", String(16), nullable=False),  # attachment | inline
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "draft_id", "position"),
    Index(None, "blob_key"),  # the retention/purge reference check probes every blob_key column
)

__all__ += ["draft_attachments"]
