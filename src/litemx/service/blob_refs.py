"""Shared blobs: the one rule between rows that reference them and runs that delete them.

The blob store is content-addressed, so one blob may be referenced by many rows (the same
attachment in a thousand messages, a draft's file in the message sent from it), and a blob is
deleted only when no row references it any more (retention, purge, draft edits). The danger is
a writer that stored the bytes (or found them already there) and has not committed the row
referencing them yet: a deleter checking references at that moment sees none and would delete
the blob under the row about to point at it — an acknowledged message's attachment lost.

The rule, in every transaction on either side:

- a writer takes the keys it references *shared* (`hold`) and only then relies on the blobs:
  it puts them after holding (`put_held`), or, when it put them before its transaction began
  (inbound processing writes a batch's blobs outside the writer lock), checks they are still
  there and puts back any that went (`put_missing`);
- a deleter takes the keys *exclusive* (`delete_unreferenced`), then checks references, then
  deletes, inside the transaction that removed its own references.

Either the deleter's transaction ends first (a writer holding afterwards finds the blob gone and
puts it back), or the writer's does (the deleter's reference check then sees the committed
row). On SQLite, write transactions never overlap, so holding costs nothing there; on
PostgreSQL the holds are advisory locks (retention_repo.lock_blob_keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection

from litemx.ports import BlobStore
from litemx.storage import retention_repo
from litemx.storage.blobs import content_key, put_all


def hold(conn: Connection, keys: Iterable[str]) -> None:
    """Keep `keys` from being deleted until this transaction ends (call before relying on them)."""
    retention_repo.lock_blob_keys(conn, keys, exclusive=False)


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

    Call inside the transaction that removed the references, after removing them: the
    reference check then sees this transaction's own changes and everyone's committed ones,
    and the exclusive hold makes a writer still holding one of the keys commit first.

    Raises: Unavailable when the blob store fails (the transaction then rolls back).
    """
    keys = {key for key in keys if key}
    candidates = keys - retention_repo.referenced_keys(conn, keys)
    if not candidates:
        return 0
    # Only the unreferenced ones are taken, then checked again: a key this transaction holds
    # shared is referenced by its own rows, so it never waits on itself — nor on another
    # transaction holding the same key shared and waiting for ours (a deadlock).
    retention_repo.lock_blob_keys(conn, candidates, exclusive=True)
    doomed = candidates - retention_repo.referenced_keys(conn, candidates)
    return sum(1 for key in sorted(doomed) if blobs.delete(key))
