"""Shared blobs: the one rule between rows that reference them and runs that delete them.

The blob store is content-addressed, so one blob may be referenced by many rows (the same
attachment in a thousand messages, a draft's file in the message sent from it), and a blob is
deleted only when no row references it any more (retention, purge, draft edits). The danger is
a writer that stored the bytes (or found them already there) and has not committed the row
referencing them yet: a deleter checking references at that moment sees none and would delete
the blob under the row about to point at it — an acknowledged message's attachment lost.

The rule, in every transaction on either side:

- a writer holds the keys it references (`hold`) and only then relies on the blobs: it puts
  them after holding (`put_held`), or, when it put them before its transaction began (inbound
  processing writes a batch's blobs outside the writer lock), checks they are still there and
  puts back any that went (`put_missing`);
- a deleter claims the keys nobody references, checks references again for those it got, and
  deletes them, as the last thing its transaction does before it commits
  (`delete_unreferenced`).

Either the deleter's transaction ends first (a writer holding afterwards finds the blob gone and
puts it back), or the writer's does (the deleter's second check sees the committed row). On
SQLite, write transactions never overlap, so none of this takes a lock there. On PostgreSQL the
holds are advisory locks by bucket of keys (retention_repo.hold_blob_keys), at most
BLOB_LOCK_BUCKETS per transaction; a deleter only ever tries them (pg_try_advisory_xact_lock),
so it never waits on a writer while holding the rows a writer may be waiting for. A key it
cannot claim within CLAIM_SECONDS stays in the store although nothing may reference it any more:
space, never data, until the scheduled retention run's orphan sweep finds it (retention.py).
While a deleter holds its buckets, writers of keys in those buckets wait for its commit.

Writers that store bytes before their transaction and hold them inside it: inbound processing
(`_write_blobs`) and a large message's acceptance (`InboundService.accept`: its raw blob, held
in the queue row's group commit and checked once committed). Only the outbound raw message is
stored without a hold: its fresh Message-ID and Date make the bytes no other row's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection

from litemx.ports import BlobStore
from litemx.storage import retention_repo
from litemx.storage.blobs import content_key, put_all

log = logging.getLogger("litemx.blobs")

CLAIM_SECONDS = 1.0  # how long a deleter keeps trying keys that writers hold
CLAIM_PAUSE_SECONDS = 0.01


def hold(conn: Connection, keys: Iterable[str]) -> None:
    """Keep `keys` from being deleted until this transaction ends (call before relying on them)."""
    retention_repo.hold_blob_keys(conn, keys)


def put_held(conn: Connection, blobs: BlobStore, items: Sequence[bytes]) -> list[str]:
    """Inside the transaction that will reference them: hold the items' keys, then store them
    durably; their keys in order. Raises: whatever the blob store raises."""
    hold(conn, [content_key(data) for data in items])
    return put_all(blobs, items)


def put_missing(blobs: BlobStore, items: Mapping[str, bytes]) -> int:
    """For blobs stored before this transaction began, once `hold` has taken their keys: put
    back any a deleter removed in between (it judged them unreferenced because our rows were
    not committed yet). Returns how many were put back. Raises: whatever the blob store raises."""
    missing = [data for key, data in items.items() if not blobs.exists(key)]
    put_all(blobs, missing)
    return len(missing)


def delete_unreferenced(conn: Connection, blobs: BlobStore, keys: Iterable[str]) -> int:
    """Delete the blobs among `keys` that no row references any more; returns how many went.

    Call inside the transaction that removed the references, after removing them and as its
    last statement before commit: the reference check then sees this transaction's own changes
    and everyone's committed ones.

    Raises: Unavailable when the blob store fails (the transaction then rolls back).
    """
    keys = {key for key in keys if key}
    candidates = keys - retention_repo.referenced_keys(conn, keys)
    claimed = _claim(conn, candidates)
    doomed = claimed - retention_repo.referenced_keys(conn, claimed)
    return _delete(blobs, sorted(doomed))


def _delete(blobs: BlobStore, keys: list[str]) -> int:
    """Delete `keys` in one call to the store (on S3 one request per thousand); how many went.

    When the store is certain none went, it raises (Unavailable), so the transaction rolls back
    and the run is retried. Otherwise the failures are logged, and those blobs stay: this
    cannot roll back once some went (or may have gone), since that would restore rows pointing
    at deleted blobs.
    """
    if not keys:
        return 0
    gone, failed = blobs.delete_many(keys)
    if failed:
        sample = "; ".join(f"{key}: {why}" for key, why in list(failed.items())[:5])
        log.warning("could not delete %d of %d blob(s); they stay (space, not data): %s",
                    len(failed), len(keys), sample)
    return gone


def _claim(conn: Connection, keys: set[str]) -> set[str]:
    """The keys this transaction may delete: claimed from writers holding them (they commit
    within milliseconds), retrying briefly; what stays held after CLAIM_SECONDS is left."""
    claimed: set[str] = set()
    deadline = time.monotonic() + CLAIM_SECONDS
    while True:
        claimed |= retention_repo.claim_blob_keys(conn, keys - claimed)
        if claimed == keys or time.monotonic() >= deadline:
            break
        time.sleep(CLAIM_PAUSE_SECONDS)
    if claimed != keys:
        log.warning("left %d unreferenced blob(s) that writers still held after %.1f s; a later run "
                    "deletes them if nothing references them then", len(keys - claimed), CLAIM_SECONDS)
    return claimed
