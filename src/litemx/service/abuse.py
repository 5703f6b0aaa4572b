"""Abuse and privacy (SPEC §11): disable/enable, export a mailbox, purge a mailbox.

Disabling sets `disabled_at`; every path reads it on every request, so the effect is
immediate and nothing is cached:
- token or account disabled: authentication answers 403 `forbidden` (details.reason
  `disabled`) on REST, CLI and MCP alike (AuthService);
- domain or mailbox disabled: the MX refuses RCPT (`550 5.7.1` domain, `550 5.2.1` mailbox,
  RoutingService), and send preflight blocks with reason `disabled`; the account's own tokens
  can still read, search and export what was already received (an operator investigating
  abuse needs the evidence), but nothing new comes in or goes out;
- account disabled: its tokens stop working and its domains refuse mail at the MX.
Disable and enable are idempotent and audited `abuse.disable` / `abuse.enable`; accounts are
an operator action (server-side CLI, direct database), like `accounts create`.

Export streams a zip (constant memory, see zipstream): `<id>.eml` byte-identical to the stored
raw message, `messages.jsonl` (one metadata object per message, retention-cleaned ones
included), `audit.jsonl` (the mailbox's audit events). Purge erases a mailbox's messages,
threads, attachments, drafts, search entries, envelope records, unreferenced blobs and audit
rows, leaving the mailbox itself and one `mailbox.purge` event; a held mailbox refuses.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table

from litemx.errors import Conflict, NotFound
from litemx.service import render
from litemx.service.base import Infra, ServiceBase, event_row, not_found, operation
from litemx.service.directory import DirectoryService
from litemx.service.principal import Caller
from litemx.service.blob_refs import delete_unreferenced
from litemx.service.retention import BATCH
from litemx.service.zipstream import ZipStream
from litemx.storage import audit_repo, tokens_repo
from litemx.storage import retention_repo as repo
from litemx.storage.schema import accounts, domains, mailboxes, tokens

EXPORT_PAGE = 200
_SPOOL = 1 << 20
_OUT_CHUNK = 64 * 1024


@dataclass(frozen=True)
class MailboxExport:
    """A checked, audited export, ready to stream: iterate `chunks` once."""

    address: str
    filename: str
    messages: int
    chunks: Iterator[bytes]


class AbuseService(ServiceBase):
    def __init__(self, infra: Infra, directory: DirectoryService):
        super().__init__(infra)
        self.directory = directory

    # -- disable / enable ------------------------------------------------------------------
    @operation("domains.disable")
    def disable_domain(self, caller: Caller, name: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound."""
        return self._toggle_domain(caller, name, disable=True)

    @operation("domains.enable")
    def enable_domain(self, caller: Caller, name: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound."""
        return self._toggle_domain(caller, name, disable=False)

    @operation("mailboxes.disable")
    def disable_mailbox(self, caller: Caller, address: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound."""
        return self._toggle_mailbox(caller, address, disable=True)

    @operation("mailboxes.enable")
    def enable_mailbox(self, caller: Caller, address: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound."""
        return self._toggle_mailbox(caller, address, disable=False)

    @operation("tokens.disable")
    def disable_token(self, caller: Caller, token_id: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound, Conflict (the calling token itself)."""
        return self._toggle_token(caller, token_id, disable=True)

    @operation("tokens.enable")
    def enable_token(self, caller: Caller, token_id: str) -> dict[str, Any]:
        """Raises: Forbidden (not admin), NotFound."""
        return self._toggle_token(caller, token_id, disable=False)

    def _toggle_domain(self, caller: Caller, name: str, *, disable: bool) -> dict[str, Any]:
        with self.db.write() as conn:
            row = self.directory.visible_domain(conn, caller, name)
            self._flip(conn, caller, domains, row, disable, "domain", row["name"], None)
        return render.domain(row)

    def _toggle_mailbox(self, caller: Caller, address: str, *, disable: bool) -> dict[str, Any]:
        with self.db.write() as conn:
            row = self.directory.visible_mailbox(conn, caller, address)
            self._flip(conn, caller, mailboxes, row, disable, "mailbox", row["id"], row["address"])
        return render.mailbox(row)

    def _toggle_token(self, caller: Caller, token_id: str, *, disable: bool) -> dict[str, Any]:
        with self.db.write() as conn:
            row = tokens_repo.token_in_account(conn, caller.principal.account_id, token_id)
            if row is None:
                raise not_found("token", token_id)
            if disable and row["id"] == caller.principal.token_id:
                # It would lock the account's only admin out; an operator can disable the account.
                raise Conflict("a token cannot disable itself", {"field": "id", "reason": "self"})
            self._flip(conn, caller, tokens, row, disable, "token", row["id"], None)
        return render.token(row)

    def _flip(self, conn: Connection, caller: Caller, table: Table, row: dict[str, Any], disable: bool,
              kind: str, resource_id: str, mailbox: str | None) -> None:
        """Set or clear disabled_at (idempotent: a second disable keeps the first time) and audit."""
        already = (row["disabled_at"] is not None) == disable
        if not already:
            row["disabled_at"] = self.clock.now() if disable else None
            repo.set_disabled(conn, table, row["id"], row["disabled_at"])
        self.audit(conn, caller, "abuse.disable" if disable else "abuse.enable", resource_type=kind,
                   resource_id=resource_id, mailbox=mailbox, details={"already": already})

    def set_account_disabled(self, account_id: str, disable: bool) -> dict[str, Any]:
        """Operator action (server-side CLI, no token): disable or re-enable a whole account.

        Raises: NotFound for an unknown account id.
        """
        with self.db.write() as conn:
            row = tokens_repo.get_account(conn, account_id)
            if row is None:
                raise NotFound(f"account {account_id} not found", {"resource_type": "account"})
            already = (row["disabled_at"] is not None) == disable
            if not already:
                row["disabled_at"] = self.clock.now() if disable else None
                repo.set_disabled(conn, accounts, account_id, row["disabled_at"])
            audit_repo.append(conn, event_row(
                at=self.clock.now(), account_id=account_id, actor_type="operator", actor_id=None,
                actor_name="operator", interface="cli", action="abuse.disable" if disable else "abuse.enable",
                resource_type="account", resource_id=account_id, details={"already": already}))
        return {"id": row["id"], "name": row["name"], "plan": row["plan"], "disabled": row["disabled_at"] is not None,
                "disabled_at": render.iso(row["disabled_at"])}

    # -- export ----------------------------------------------------------------------------
    @operation("mailboxes.export")
    def export_mailbox(self, caller: Caller, address: str) -> MailboxExport:
        """Check, audit, and hand back the zip stream (nothing is read until it is iterated).

        Raises: Forbidden (not admin), NotFound.
        """
        started = self.clock.now()
        with self.db.write() as conn:
            box = self.directory.visible_mailbox(conn, caller, address)
            count = repo.count_messages(conn, box["id"])
            self.audit(conn, caller, "mailbox.export", resource_type="mailbox", resource_id=box["id"],
                       mailbox=box["address"], details={"messages": count})
        name = f"{box['address']}-{started:%Y%m%dT%H%M%SZ}.zip"
        chunks = _coalesce(self._zip(caller.principal.account_id, box, started))
        return MailboxExport(box["address"], name, count, chunks)

    def _zip(self, account_id: str, box: dict[str, Any], started: datetime) -> Iterator[bytes]:
        archive = ZipStream()
        # Metadata lines wait in a spool (memory up to 1 MiB, then disk) so the .eml entries
        # and messages.jsonl come from one pass over the messages, in one consistent order.
        try:
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as meta:
                for row, files in self._export_rows(box["id"]):
                    raw = self._raw(row)
                    if raw is not None:
                        yield from archive.add(f"{row['id']}.eml", raw, row["received_at"])
                    meta.write(_json_line(_export_record(row, files, raw is not None)))
                meta.seek(0)
                yield from archive.add_stream("messages.jsonl", iter(lambda: meta.read(_OUT_CHUNK), b""), started)
            yield from archive.add_stream("audit.jsonl", self._audit_lines(account_id, box["address"]), started)
            yield from archive.finish()
        finally:
            archive.close()  # the client may hang up mid-stream

    def _export_rows(self, mailbox_id: str) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Messages oldest first, a page per short read transaction (no snapshot held open)."""
        after = 0
        while True:
            with self.db.read() as conn:
                rows = repo.export_page(conn, mailbox_id, after, EXPORT_PAGE)
                files = repo.attachments_by_message(conn, [r["id"] for r in rows]) if rows else {}
            for row in rows:
                yield row, files[row["id"]]
            if len(rows) < EXPORT_PAGE:
                return
            after = rows[-1]["seq"]

    def _raw(self, row: dict[str, Any]) -> bytes | None:
        if not row["raw_key"]:
            return None  # retention removed the content; metadata still goes out
        try:
            return self.infra.blobs.get(row["raw_key"])
        except KeyError:
            return None  # a concurrent retention run deleted it mid-export

    def _audit_lines(self, account_id: str, address: str) -> Iterator[bytes]:
        after = 0
        while True:
            with self.db.read() as conn:
                rows = repo.audit_page(conn, account_id, address, after, EXPORT_PAGE)
            yield b"".join(_json_line(render.audit_event(r)) for r in rows)
            if len(rows) < EXPORT_PAGE:
                return
            after = rows[-1]["id"]

    # -- purge -----------------------------------------------------------------------------
    @operation("mailboxes.purge")
    def purge_mailbox(self, caller: Caller, address: str) -> dict[str, Any]:
        """Erase every message, thread, attachment, draft, blob and audit row of the mailbox.

        Batched like retention (short transactions); an interrupted purge is finished by
        running it again. The mailbox itself stays (DELETE /api/mailboxes/{m} removes it).

        Raises: Forbidden (not admin), NotFound, Conflict (the mailbox is on legal hold).
        """
        with self.db.read() as conn:
            box = self.directory.visible_mailbox(conn, caller, address)
        if box["legal_hold"]:
            raise Conflict(f"{box['address']} is on legal hold; release it before purging",
                           {"reason": "legal_hold"})
        counts = self._purge_messages(box)
        with self.db.write() as conn:
            draft_keys = repo.delete_mailbox_draft_attachments(conn, box["id"])
            counts["drafts_deleted"] = repo.delete_mailbox_drafts(conn, box["id"])
            counts["threads_deleted"] += repo.delete_mailbox_threads(conn, box["id"])
            counts["blobs_deleted"] += delete_unreferenced(conn, self.infra.blobs, draft_keys)  # last (blob_refs)
        counts["audit_deleted"] = self._purge_audit(caller, box, counts)
        return {"mailbox": box["address"], "purged": True, "counts": counts}

    def _purge_messages(self, box: dict[str, Any]) -> dict[str, int]:
        counts = {"messages_deleted": 0, "threads_deleted": 0, "blobs_deleted": 0, "queue_rows_deleted": 0}
        while True:
            with self.db.write() as conn:
                batch = repo.purge_batch(conn, box["id"], BATCH)
                keys = {r["raw_key"] for r in batch if r["raw_key"]}
                keys |= repo.attachment_keys(conn, [r["id"] for r in batch])
                gone, threads_gone = repo.delete_messages(conn, batch)
                counts["messages_deleted"] += gone
                counts["threads_deleted"] += threads_gone
                dropped, raw_keys = repo.scrub_queue_rows(conn, {r["queue_id"] for r in batch if r["queue_id"]},
                                                          box["id"])
                counts["queue_rows_deleted"] += dropped
                counts["blobs_deleted"] += delete_unreferenced(conn, self.infra.blobs, keys | raw_keys)
            if len(batch) < BATCH:
                return counts

    def _purge_audit(self, caller: Caller, box: dict[str, Any], counts: dict[str, int]) -> int:
        """Delete the mailbox's audit rows; the last transaction also writes the purge record."""
        deleted = 0
        while True:
            with self.db.write() as conn:
                n = repo.delete_mailbox_audit(conn, caller.principal.account_id, box["address"], BATCH)
                deleted += n
                if n < BATCH:
                    self.audit(conn, caller, "mailbox.purge", resource_type="mailbox", resource_id=box["id"],
                               mailbox=box["address"], details={**counts, "audit_deleted": deleted})
                    return deleted


def _export_record(row: dict[str, Any], files: list[dict[str, Any]], has_eml: bool) -> dict[str, Any]:
    """One line of messages.jsonl: the message's metadata as stored, plus its attachments."""
    return {
        "id": row["id"], "mailbox": row["mailbox"], "thread_id": row["thread_id"], "direction": row["direction"],
        "status": row["status"], "message_id": row["message_id_header"], "in_reply_to": row["in_reply_to"],
        "references": row["references"], "subject": row["subject"],
        "from": {"name": row["from_name"], "address": row["from_addr"]}, "to": row["to_addrs"],
        "cc": row["cc_addrs"], "reply_to": row["reply_to"], "mail_from": row["mail_from"], "rcpt": row["rcpt"],
        "date": render.iso(row["sent_at"]), "received_at": render.iso(row["received_at"]), "size": row["size"],
        "has_attachments": bool(row["has_attachments"]), "auth": row["auth"], "signals": row["signals"],
        "deleted_content_at": render.iso(row["deleted_content_at"]),
        "eml": f"{row['id']}.eml" if has_eml else None,
        "attachments": [{"id": a["id"], "filename": a["filename"], "content_type": a["content_type"],
                         "size": a["size"], "content_id": a["content_id"], "disposition": a["disposition"],
                         "deleted_at": render.iso(a["deleted_at"])} for a in files],
    }


def _json_line(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")) + "\n").encode()


def _coalesce(chunks: Iterable[bytes], size: int = _OUT_CHUNK) -> Iterator[bytes]:
    """Regroup many small pieces (zip headers, short messages) into writes of about `size`."""
    buffer: list[bytes] = []
    held = 0
    for chunk in chunks:
        buffer.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)
