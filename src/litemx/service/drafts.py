"""Drafts and reply drafts (SPEC §6): write first, send as a separate, explicit step.

A reply draft answers one message: `In-Reply-To` and `References` per RFC 5322 §3.6.4, a
`Re:` subject that is never doubled, and recipients from Reply-To (else From), with reply-all
adding the parent's To and Cc minus the mailbox itself (see `core.compose`). Nothing is
quoted: LiteMX never decides how to answer.

Visibility: a draft lives in one mailbox and is seen only by tokens granted that mailbox;
anything else answers 404, exactly like a draft that does not exist (SPEC §3).

Attachments (core.attach validates them, service.attachments_out stores them): bytes in the
blob store, metadata in `draft_attachments`; `attachments` on update replaces the whole list.
Reply drafts start without attachments (nothing of the parent is carried over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from litemx.core import attach, compose
from litemx.core.addresses import parse_address
from litemx.core.ids import new_id
from litemx.core.mime import Address
from litemx.errors import Conflict, invalid_field
from litemx.service import attachments_out, blob_refs
from litemx.service.base import Infra, ServiceBase, not_found, operation
from litemx.service.directory import DirectoryService
from litemx.service.principal import Caller
from litemx.service.render import iso
from litemx.storage import directory_repo, messages_repo, sending_repo
from litemx.storage.pagination import page

MAX_RECIPIENTS_PER_FIELD = 100  # a sanity bound; the plan's per-message cap is checked at send
ADDRESS_FIELDS = ("to", "cc", "bcc")
EDITABLE = (*ADDRESS_FIELDS, "subject", "text", "html", "attachments")


class DraftService(ServiceBase):
    def __init__(self, infra: Infra, directory: DirectoryService):
        super().__init__(infra)
        self.directory = directory

    @operation("drafts.create")
    def create(self, caller: Caller, mailbox: str, to: Sequence[str] = (), cc: Sequence[str] = (),
               bcc: Sequence[str] = (), subject: str = "", text: str | None = None,
               html: str | None = None, attachments: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Raises: InvalidRequest naming the field; PayloadTooLarge (attachments over the message
        size limit); NotFound for a mailbox outside the grants."""
        fields = draft_fields({"to": to, "cc": cc, "bcc": bcc, "subject": subject, "text": text, "html": html})
        files = self._files(attachments, text, html)
        with self.db.write() as conn:
            box = self.directory.visible_mailbox(conn, caller, mailbox)
            row = self._new_row(caller, box, fields)
            sending_repo.add_draft(conn, row)
            stored = attachments_out.draft_rows(conn, self.infra.blobs, row["id"], files, row["created_at"])
            sending_repo.add_draft_attachments(conn, stored)
            self.audit(conn, caller, "draft.create", resource_type="draft", resource_id=row["id"],
                       mailbox=box["address"], details=_files_detail(stored) if stored else None)
        return render_draft(row, stored)

    @operation("drafts.list")
    def list_drafts(self, caller: Caller, mailbox: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> dict[str, Any]:
        """Unsent drafts in the caller's mailboxes, newest first. Raises: NotFound, InvalidRequest."""
        p = page(limit, cursor)
        only = None if caller.principal.all_mailboxes else caller.principal.grants
        with self.db.read() as conn:
            address = self.directory.visible_mailbox(conn, caller, mailbox)["address"] if mailbox else None
            result = sending_repo.list_drafts(conn, caller.principal.account_id, p, only, address)
            files = sending_repo.draft_attachments_of(conn, [r["id"] for r in result.items])
        self.audit_read(caller, "draft.list", resource_type="draft", mailbox=address,
                        details={"count": len(result.items)})
        return {"items": [render_draft(r, files[r["id"]]) for r in result.items], "next_cursor": result.next_cursor}

    @operation("drafts.show")
    def show(self, caller: Caller, draft_id: str) -> dict[str, Any]:
        """Raises: NotFound."""
        with self.db.read() as conn:
            row = visible_draft(conn, caller, draft_id)
            files = sending_repo.draft_attachments_of(conn, [row["id"]])[row["id"]]
        self.audit_read(caller, "draft.read", resource_type="draft", resource_id=row["id"], mailbox=row["mailbox"])
        return render_draft(row, files)

    @operation("drafts.update")
    def update(self, caller: Caller, draft_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change any of to, cc, bcc, subject, text, html, attachments (the list is replaced).

        Raises: InvalidRequest naming the field; PayloadTooLarge; NotFound; Conflict once the
            draft was sent.
        """
        fields = draft_fields({k: v for k, v in changes.items() if k in EDITABLE})
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise invalid_field(unknown[0], f"{unknown[0]} cannot be changed on a draft")
        replace = "attachments" in changes
        files = attach.parse_attachments(changes["attachments"], self._max_bytes) if replace else []
        with self.db.write() as conn:
            row = _unsent(visible_draft(conn, caller, draft_id, lock=True))
            current = sending_repo.draft_attachments_of(conn, [row["id"]])[row["id"]]
            values = {**fields, "updated_at": self.clock.now()}
            new = {**row, **values}
            sizes = [len(f.data) for f in files] if replace else [a["size"] for a in current]
            attach.check_total(sizes, new["text_body"], new["html_body"], self._max_bytes)
            sending_repo.update_draft(conn, row["id"], values)
            details: dict[str, Any] = {"fields": sorted(changes)}
            if replace:
                old_keys = sending_repo.delete_draft_attachments(conn, row["id"])
                current = attachments_out.draft_rows(conn, self.infra.blobs, row["id"], files, values["updated_at"])
                sending_repo.add_draft_attachments(conn, current)
                blob_refs.delete_unreferenced(conn, self.infra.blobs, old_keys)
                details.update(_files_detail(current))
            self.audit(conn, caller, "draft.update", resource_type="draft", resource_id=row["id"],
                       mailbox=row["mailbox"], details=details)
        return render_draft(new, current)

    @operation("drafts.delete")
    def delete(self, caller: Caller, draft_id: str) -> dict[str, Any]:
        """Raises: NotFound; Conflict once the draft was sent (it is then the sent message's record)."""
        with self.db.write() as conn:
            row = _unsent(visible_draft(conn, caller, draft_id, lock=True))
            keys = sending_repo.delete_draft_attachments(conn, row["id"])
            sending_repo.delete_draft(conn, row["id"])
            blob_refs.delete_unreferenced(conn, self.infra.blobs, keys)
            self.audit(conn, caller, "draft.delete", resource_type="draft", resource_id=row["id"],
                       mailbox=row["mailbox"])
        return {"deleted": True, "id": row["id"]}

    # -- replies -----------------------------------------------------------------------------
    @operation("messages.reply")
    def reply_to_message(self, caller: Caller, message_id: str, text: str | None = None, html: str | None = None,
                         reply_all: bool = False) -> dict[str, Any]:
        """A reply draft to one message. Raises: NotFound; InvalidRequest naming text/html."""
        body = draft_fields({"text": text, "html": html})
        with self.db.write() as conn:
            parent = self._visible_message(conn, caller, message_id)
            return self._add_reply(conn, caller, parent, body, reply_all, "message.reply")

    @operation("threads.reply")
    def reply_to_thread(self, caller: Caller, thread_id: str, text: str | None = None, html: str | None = None,
                        reply_all: bool = False) -> dict[str, Any]:
        """A reply draft to the thread's latest inbound message. Raises: NotFound; InvalidRequest."""
        return self._thread_reply(caller, thread_id, text, html, reply_all, "thread.reply")

    @operation("threads.draft")
    def draft_in_thread(self, caller: Caller, thread_id: str, text: str | None = None, html: str | None = None,
                        reply_all: bool = False) -> dict[str, Any]:
        """Same draft as `reply_to_thread`, recorded as a plain `draft.create`."""
        return self._thread_reply(caller, thread_id, text, html, reply_all, "draft.create")

    def _thread_reply(self, caller: Caller, thread_id: str, text: str | None, html: str | None, reply_all: bool,
                      action: str) -> dict[str, Any]:
        body = draft_fields({"text": text, "html": html})
        with self.db.write() as conn:
            thread = sending_repo.thread_by_id(conn, thread_id)
            if thread is None or not _sees(caller, thread):
                raise not_found("thread", thread_id, grant_denied=thread is not None)
            parent = sending_repo.latest_in_thread(conn, thread_id)
            if parent is None:
                raise not_found("thread", thread_id)
            return self._add_reply(conn, caller, parent, body, reply_all, action)

    def _visible_message(self, conn: Connection, caller: Caller, message_id: str) -> dict[str, Any]:
        row = messages_repo.message_by_id(conn, message_id)
        if row is None or not _sees(caller, row):
            raise not_found("message", message_id, grant_denied=row is not None)
        return row

    def _add_reply(self, conn: Connection, caller: Caller, parent: dict[str, Any], body: dict[str, Any],
                   reply_all: bool, action: str) -> dict[str, Any]:
        box = directory_repo.mailbox_by_id(conn, parent["mailbox_id"])
        if box is None:
            raise not_found("message", parent["id"])
        to, cc = compose.reply_recipients(_parent(parent), box["address"], reply_all)
        row = self._new_row(caller, box, {
            "to_addrs": _stored(to), "cc_addrs": _stored(cc), "subject": compose.reply_subject(parent["subject"]),
            **body})
        row.update(thread_id=parent["thread_id"], reply_to_message=parent["id"],
                   in_reply_to=parent["message_id_header"],
                   references=compose.reply_references(parent["references"] or [], parent["in_reply_to"],
                                                       parent["message_id_header"]))
        sending_repo.add_draft(conn, row)
        self.audit(conn, caller, action, resource_type="draft", resource_id=row["id"], mailbox=box["address"],
                   details={"message_id": parent["id"], "thread_id": parent["thread_id"], "reply_all": reply_all})
        return render_draft(row)

    @property
    def _max_bytes(self) -> int:
        return int(self.infra.settings.max_message_bytes)

    def _files(self, attachments: Sequence[dict[str, Any]] | None, text: str | None,
               html: str | None) -> list[compose.OutgoingAttachment]:
        """Validated attachments. Raises: InvalidRequest naming the field; PayloadTooLarge."""
        files = attach.parse_attachments(attachments, self._max_bytes)
        attach.check_total([len(f.data) for f in files], text, html, self._max_bytes)
        return files

    def _new_row(self, caller: Caller, box: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        return {"id": new_id("drf"), "account_id": box["account_id"], "mailbox_id": box["id"],
                "mailbox": box["address"], "thread_id": None, "reply_to_message": None, "in_reply_to": None,
                "references": [], "subject": fields.get("subject", ""), "to_addrs": fields.get("to_addrs", []),
                "cc_addrs": fields.get("cc_addrs", []), "bcc_addrs": fields.get("bcc_addrs", []),
                "text_body": fields.get("text_body"), "html_body": fields.get("html_body"), "status": "draft",
                "sent_message_id": None, "created_by": caller.principal.token_id, "created_at": now,
                "updated_at": now}


# -- shared with the send path -------------------------------------------------------------------

def visible_draft(conn: Connection, caller: Caller, draft_id: str, *, lock: bool = False) -> dict[str, Any]:
    """The draft if the caller's grants reach its mailbox. Raises: NotFound (audited)."""
    row = sending_repo.draft_by_id(conn, draft_id, lock=lock)
    if row is None or not _sees(caller, row):
        raise not_found("draft", draft_id, grant_denied=row is not None)
    return row


def draft_addresses(row: dict[str, Any], column: str) -> list[Address]:
    return [Address(a.get("name") or "", a["address"]) for a in row[column] or []]


def render_draft(row: dict[str, Any], attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The public shape of a draft; addresses as header text (`Name <addr>` or `addr`);
    attachments as metadata (id, filename, content_type, size, content_id, disposition)."""
    return {
        "id": row["id"], "mailbox": row["mailbox"], "status": row["status"],
        **{f: [compose.mailbox_header(a) for a in draft_addresses(row, f"{f}_addrs")] for f in ADDRESS_FIELDS},
        "subject": row["subject"], "text": row["text_body"], "html": row["html_body"],
        "thread_id": row["thread_id"], "reply_to_message": row["reply_to_message"],
        "in_reply_to": row["in_reply_to"], "references": list(row["references"] or []),
        "message_id": row["sent_message_id"], "attachments": attachments_out.render(attachments),
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


def draft_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validated draft columns for the given API fields. Raises: InvalidRequest naming the field."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ADDRESS_FIELDS:
            out[f"{name}_addrs"] = _stored(_recipients(value or [], name))
        elif name == "subject":
            out["subject"] = _subject(value or "")
        elif name in ("text", "html"):
            out[f"{name}_body"] = _body(value, name)
    return out


def _recipients(values: Sequence[str], field: str) -> list[Address]:
    if len(values) > MAX_RECIPIENTS_PER_FIELD:
        raise invalid_field(field, f"at most {MAX_RECIPIENTS_PER_FIELD} addresses per field")
    parsed = []
    for value in values:
        try:
            parsed.append(compose.parse_recipient(value))
        except ValueError as exc:
            raise invalid_field(field, f"{value!r} is not a valid recipient: {exc}") from None
    return compose.distinct(parsed)


def _subject(value: str) -> str:
    if compose.has_line_break(value):
        raise invalid_field("subject", "the subject must be one line (no CR, LF or NUL)")
    if len(value) > compose.MAX_SUBJECT:
        raise invalid_field("subject", f"the subject is longer than {compose.MAX_SUBJECT} characters")
    return value


def _body(value: str | None, field: str) -> str | None:
    if value is not None and "\0" in value:
        raise invalid_field(field, f"{field} must not contain NUL characters")
    return value


def _files_detail(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the audit keeps of a draft's attachments: how many and how big, never names or bytes."""
    return {"attachments": len(rows), "attachment_bytes": sum(r["size"] for r in rows)}


def _stored(addresses: Sequence[Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def _unsent(row: dict[str, Any]) -> dict[str, Any]:
    if row["status"] != "draft":
        raise Conflict("this draft was already sent", {"field": "id", "message_id": row["sent_message_id"]})
    return row


def _sees(caller: Caller, row: dict[str, Any]) -> bool:
    return row["account_id"] == caller.principal.account_id and caller.principal.can_see(row["mailbox"])


def _parent(row: dict[str, Any]) -> compose.Parent:
    """A stored message as a reply parent; addresses that do not validate are left out."""
    from_ = _valid([{"name": row["from_name"], "address": row["from_addr"]}] if row["from_addr"] else [])
    return compose.Parent(row["direction"], from_[0] if from_ else None, tuple(_valid(row["reply_to"])),
                          tuple(_valid(row["to_addrs"])), tuple(_valid(row["cc_addrs"])))


def _valid(items: Sequence[dict[str, Any]] | None) -> list[Address]:
    out = []
    for item in items or []:
        try:
            address = parse_address(item.get("address") or "").address
        except ValueError:
            continue
        out.append(Address(" ".join((item.get("name") or "").split())[:compose.MAX_DISPLAY_NAME], address))
    return out
