"""Attachments of drafts and direct sends: blobs, rows and their public shape (docs/sending.md).

- Bytes go to the content-addressed blob store, metadata to `draft_attachments` (drafts) or
  `attachments` (the sent message). The same bytes are one blob, whoever holds them.
- Blobs are written inside the transaction that adds the rows referencing them, after the
  caller's checks passed, and held there (service/blob_refs) so a concurrent retention run
  cannot judge them unreferenced and delete them before those rows commit.
- A blob is deleted only when no `*_key` column still references it (blob_refs), so
  replacing or deleting a draft's attachments never touches bytes a message or another draft
  still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from litemx.core.compose import OutgoingAttachment
from litemx.core.ids import new_id
from litemx.errors import Unavailable
from litemx.ports import BlobStore
from litemx.service import blob_refs


def draft_rows(conn: Connection, blobs: BlobStore, draft_id: str, files: Sequence[OutgoingAttachment],
               now: datetime) -> list[dict[str, Any]]:
    """Store each file's bytes, held for this transaction; the `draft_attachments` rows pointing at them."""
    keys = blob_refs.put_held(conn, blobs, [f.data for f in files])
    return [{"id": new_id("dat"), "draft_id": draft_id, "position": i, "filename": f.filename,
             "content_type": f.content_type, "size": len(f.data), "blob_key": key,
             "content_id": f.content_id, "disposition": f.disposition, "created_at": now}
            for i, (f, key) in enumerate(zip(files, keys, strict=True))]


def message_rows(message_id: str, files: Sequence[OutgoingAttachment], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The sent message's `attachments` rows, on the blobs the draft (or the send) stored."""
    return [{"id": new_id("att"), "message_id": message_id, "position": i, "filename": f.filename,
             "content_type": f.content_type, "size": len(f.data), "blob_key": key, "content_id": f.content_id,
             "disposition": f.disposition, "deleted_at": None}
            for i, (f, key) in enumerate(zip(files, keys, strict=True))]


def has_attachments(files: Sequence[OutgoingAttachment]) -> bool:
    """Same rule as received mail (mime.ParsedMessage): cid-referenced inline images don't count."""
    return any(not f.inline or f.content_id is None for f in files)


def load(blobs: BlobStore, rows: Sequence[dict[str, Any]]) -> list[OutgoingAttachment]:
    """A stored draft's files with their bytes. Raises: Unavailable when a blob is missing."""
    files = []
    for row in rows:
        try:
            data = blobs.get(row["blob_key"])
        except (KeyError, TypeError):
            raise Unavailable("an attachment of this draft is missing from the blob store",
                              {"attachment_id": row["id"]}) from None
        files.append(OutgoingAttachment(row["filename"], row["content_type"], data, row["content_id"],
                                        row["disposition"] == "inline"))
    return files


def render(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The public shape: metadata only, never the bytes."""
    return [{"id": r["id"], "filename": r["filename"], "content_type": r["content_type"], "size": r["size"],
             "content_id": r["content_id"], "disposition": r["disposition"]} for r in rows]
