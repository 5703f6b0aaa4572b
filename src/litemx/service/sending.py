"""Sending (SPEC §6): a draft or a direct send becomes a queued, DKIM-signed outbound message.

One write transaction does everything a send decides: the idempotency key, the preflight
(every reason, plan counters reserved atomically), the signed MIME, the outbound `messages`
row in the mailbox's thread, one `deliveries` row per recipient, the draft's `sent` mark and
the `send.accepted` audit event. Any failure rolls all of it back, counters included.

Decisions:
- Signed once, at queue time, with the domain's active keys (RSA, plus Ed25519 when the
  domain has one): every delivery and retry sends the same bytes, and a key rotated after
  queueing cannot leave a message unsigned. The keys are fetched before the transaction.
- Idempotency-Key (per account, 24 h): the same key with the same request answers the stored
  response and sends nothing; with a different request it is a `conflict`. Only accepted
  sends are stored — a blocked or failed attempt sent nothing, so retrying it re-runs the
  preflight, which is what a client retrying after fixing the cause wants.
- Every refused send is audited as `send.blocked` (outcome blocked for preflight reasons,
  denied/error for a missing draft, a key conflict or a bad request).
- Attachments become MIME parts (compose.build_message); the sent message's `attachments`
  rows point at the same content-addressed blobs, and a sent draft's attachment rows hand
  their blob reference over to them. The built and signed message must fit in
  `max_message_bytes` (`payload_too_large` otherwise, nothing queued).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from litemx.core import attach, compose, mime
from litemx.core.delivery import verp_address
from litemx.core.dkimkeys import SealError
from litemx.core.ids import new_id
from litemx.core.mime import Address
from litemx.core.operations import operation as lookup_operation
from litemx.core.scopes import Scope
from litemx.core.threading import subject_key
from litemx.errors import Conflict, LitemxError, PayloadTooLarge, SendBlocked, invalid_field
from litemx.service import attachments_out, blob_refs
from litemx.service.base import Infra, ServiceBase
from litemx.service.drafts import draft_addresses, visible_draft
from litemx.service.preflight import Cleared, SendRequest, preflight
from litemx.service.principal import Caller
from litemx.service.render import iso
from litemx.storage import messages_repo, sending_repo

log = logging.getLogger("litemx.sending")

P = ParamSpec("P")
R = TypeVar("R")
KeySource = Callable[[str], Sequence[compose.SigningKey]]
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_KEY = 255


def send_operation(name: str) -> Callable[[Callable[Concatenate[Any, Caller, P], R]],
                                           Callable[Concatenate[Any, Caller, P], R]]:
    """`@operation` for send paths: no scope gate (the preflight reports `scope_missing`), and
    every failure audited as `send.blocked` after the rollback."""
    op = lookup_operation(name)
    assert op.preflight, f"{name} is not marked as checked by the preflight"

    def decorate(fn: Callable[Concatenate[Any, Caller, P], R]) -> Callable[Concatenate[Any, Caller, P], R]:
        @functools.wraps(fn)
        def wrapper(self: ServiceBase, caller: Caller, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(self, caller, *args, **kwargs)
            except LitemxError as error:
                error.audit.setdefault("action", "send.blocked")
                self._record_failure(caller, op, error)
                raise

        wrapper.operation = op  # type: ignore[attr-defined]
        return wrapper

    return decorate


class SendService(ServiceBase):
    def __init__(self, infra: Infra, signing_keys: KeySource | None = None):
        super().__init__(infra)
        self.signing_keys = signing_keys
        self.on_queue: Callable[[], None] | None = None  # wakes the outbound worker

    @send_operation("drafts.send")
    def send_draft(self, caller: Caller, draft_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """Raises: SendBlocked (every reason); NotFound; Conflict (already sent, key reused)."""
        key = _checked_key(idempotency_key)
        keys = self._keys_for(self._draft_domain(draft_id))
        fingerprint = _fingerprint("drafts.send", {"draft": draft_id})
        return self._idempotent(caller, key, fingerprint, lambda conn: self._send_draft(conn, caller, draft_id, keys))

    @send_operation("send.direct")
    def send_direct(self, caller: Caller, mailbox: str, to: Sequence[str], cc: Sequence[str] = (),
                    bcc: Sequence[str] = (), subject: str = "", text: str | None = None, html: str | None = None,
                    idempotency_key: str | None = None,
                    attachments: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Send without a draft. Raises: SendBlocked (every reason); Conflict (key reused);
        InvalidRequest naming an attachment field; PayloadTooLarge."""
        key = _checked_key(idempotency_key)
        limit = int(self.infra.settings.max_message_bytes)
        files = attach.parse_attachments(attachments, limit)
        attach.check_total([len(f.data) for f in files], text, html, limit)
        keys = self._keys_for(_domain_of(mailbox))
        request = SendRequest(mailbox, list(to), list(cc), list(bcc), subject, text, html, bool(keys))
        fingerprint = _fingerprint("send.direct", {"mailbox": mailbox, "to": request.to, "cc": request.cc,
                                                   "bcc": request.bcc, "subject": subject, "text": text, "html": html,
                                                   **({"attachments": _file_digests(files)} if files else {})})
        return self._idempotent(caller, key, fingerprint,
                                lambda conn: self._send_new(conn, caller, request, keys, files))

    # -- the transaction ---------------------------------------------------------------------
    def _idempotent(self, caller: Caller, key: str | None, fingerprint: str,
                    work: Callable[[Connection], dict[str, Any]]) -> dict[str, Any]:
        """Run `work` once per (account, key). A concurrent twin loses the key insert, waits
        for the winner, and on the retry answers the winner's stored response."""
        if not caller.principal.has_scope(Scope.EMAIL_SEND):
            key = None  # never replay a send to a token that may not send; the preflight refuses it
        for attempt in range(2):
            try:
                with self.db.write() as conn:
                    replay = self._claim_key(conn, caller, key, fingerprint) if key else None
                    if replay is not None:
                        self._audit_replay(conn, caller, key, replay)
                        return replay
                    result = work(conn)
                    if key:
                        sending_repo.store_response(conn, caller.principal.account_id, key, result)
                break
            except IntegrityError:
                if key is None or attempt:
                    raise
        if self.on_queue is not None:
            self.on_queue()
        return result

    def _claim_key(self, conn: Connection, caller: Caller, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored response for a replay, or None after reserving the key for this request.

        Raises: Conflict when the key was used for a different request.
        """
        now, account = self.clock.now(), caller.principal.account_id
        row = sending_repo.idempotency_key(conn, account, key)
        if row is not None and row["expires_at"] > now and row["response"] is not None:
            if row["request_hash"] != fingerprint:
                raise Conflict("this Idempotency-Key was already used for a different request",
                               {"field": "Idempotency-Key"})
            return dict(row["response"])
        if row is not None:
            sending_repo.delete_idempotency_key(conn, account, key)
        sending_repo.add_idempotency_key(conn, {"account_id": account, "key": key, "request_hash": fingerprint,
                                                "response": None, "created_at": now,
                                                "expires_at": now + IDEMPOTENCY_TTL})
        return None

    def _audit_replay(self, conn: Connection, caller: Caller, key: str | None, replay: dict[str, Any]) -> None:
        self.audit(conn, caller, "send.replayed", resource_type="message", resource_id=replay.get("id"),
                   mailbox=replay.get("mailbox"), details={"idempotency_key": key})

    def _send_draft(self, conn: Connection, caller: Caller, draft_id: str,
                    keys: Sequence[compose.SigningKey]) -> dict[str, Any]:
        draft = visible_draft(conn, caller, draft_id, lock=True)
        if draft["status"] != "draft":
            raise Conflict("this draft was already sent", {"field": "id", "message_id": draft["sent_message_id"]})
        request = SendRequest(draft["mailbox"], draft_addresses(draft, "to_addrs"), draft_addresses(draft, "cc_addrs"),
                              draft_addresses(draft, "bcc_addrs"), draft["subject"], draft["text_body"],
                              draft["html_body"], bool(keys))
        cleared = self._preflight(conn, caller, request, "draft", draft["id"])
        rows = sending_repo.draft_attachments_of(conn, [draft["id"]])[draft["id"]]
        # The files move from the draft's rows to the sent message's: held across the move (blob_refs).
        blob_refs.hold(conn, [r["blob_key"] for r in rows])
        files = attachments_out.load(self.infra.blobs, rows)
        built = self._build(cleared, request, keys, draft, files)
        result = self._queue(conn, caller, cleared, built, draft, files, [r["blob_key"] for r in rows])
        sending_repo.update_draft(conn, draft["id"], {"status": "sent", "sent_message_id": result["id"],
                                                      "updated_at": self.clock.now()})
        sending_repo.release_draft_blobs(conn, draft["id"])
        return result

    def _send_new(self, conn: Connection, caller: Caller, request: SendRequest, keys: Sequence[compose.SigningKey],
                  files: Sequence[compose.OutgoingAttachment]) -> dict[str, Any]:
        cleared = self._preflight(conn, caller, request, "message", None)
        built = self._build(cleared, request, keys, None, files)
        # Only once the send will be queued; held until the rows referencing them commit.
        stored = blob_refs.put_held(conn, self.infra.blobs, [f.data for f in files])
        return self._queue(conn, caller, cleared, built, None, files, stored)

    def _preflight(self, conn: Connection, caller: Caller, request: SendRequest, resource_type: str,
                   resource_id: str | None) -> Cleared:
        try:
            return preflight(conn, caller, request, self.clock.now())
        except SendBlocked as blocked:
            visible = "mailbox_not_granted" not in blocked.reasons
            blocked.audit.update(resource_type=resource_type, resource_id=resource_id,
                                 mailbox=_address_of(request.mailbox) if visible else None)
            raise

    def _build(self, cleared: Cleared, request: SendRequest, keys: Sequence[compose.SigningKey],
               draft: dict[str, Any] | None, files: Sequence[compose.OutgoingAttachment]
               ) -> tuple[compose.Outgoing, bytes]:
        """The message and its signed bytes. Raises: PayloadTooLarge over max_message_bytes."""
        box, domain = cleared.mailbox, cleared.domain
        out = compose.Outgoing(
            Address(box["display_name"] or "", box["address"]), cleared.to, cleared.cc, request.subject,
            request.text, request.html, compose.new_message_id(domain["name"]), self.clock.now(),
            draft["in_reply_to"] if draft else None, tuple(draft["references"] or []) if draft else (),
            tuple(files))
        raw = compose.dkim_sign(compose.build_message(out), domain["name"], keys)
        limit = int(self.infra.settings.max_message_bytes)
        if len(raw) > limit:
            raise PayloadTooLarge(f"the message is {len(raw)} bytes once encoded; the limit is {limit}",
                                  {"field": "attachments" if files else "text", "limit": limit, "size": len(raw)})
        return out, raw

    def _queue(self, conn: Connection, caller: Caller, cleared: Cleared, built: tuple[compose.Outgoing, bytes],
               draft: dict[str, Any] | None, files: Sequence[compose.OutgoingAttachment],
               blob_keys: Sequence[str]) -> dict[str, Any]:
        """Store the built message, then queue one delivery per recipient."""
        now, box, domain = self.clock.now(), cleared.mailbox, cleared.domain
        out, raw = built
        message_id = new_id("msg")
        thread_id = self._thread(conn, box, draft["thread_id"] if draft else None, out.subject)
        parsed = mime.parse_message(raw)
        # Not held (blob_refs): a fresh Message-ID and Date make these bytes no other row's.
        row = _message_row(message_id, box, thread_id, raw, self.infra.blobs.put(raw), parsed, now)
        row["has_attachments"] = attachments_out.has_attachments(files)
        messages_repo.add_message(conn, row)
        attachment_rows = attachments_out.message_rows(message_id, files, blob_keys)
        messages_repo.add_attachments(conn, attachment_rows)
        deliveries = [_delivery_row(message_id, box, domain, rcpt, now) for rcpt in cleared.recipients]
        sending_repo.add_deliveries(conn, deliveries)
        result = _render_sent(message_id, box, thread_id, out, cleared, deliveries, draft, now)
        result["attachments"] = attachments_out.render(attachment_rows)
        self.audit(conn, caller, "send.accepted", resource_type="message", resource_id=message_id,
                   mailbox=box["address"], details={"recipients": len(deliveries), "draft_id": result["draft_id"],
                                                    "message_id_header": out.message_id})
        return result

    def _thread(self, conn: Connection, box: dict[str, Any], thread_id: str | None, subject: str) -> str:
        """The reply's thread when it still exists in this mailbox, else a new one."""
        existing = sending_repo.thread_by_id(conn, thread_id) if thread_id else None
        if existing is None or existing["mailbox_id"] != box["id"]:
            thread_id = new_id("thr")
        messages_repo.touch_thread(conn, {
            "id": thread_id, "account_id": box["account_id"], "mailbox_id": box["id"], "mailbox": box["address"],
            "subject": subject[:1000], "subject_key": subject_key(subject)[:255]}, self.clock.now())
        return thread_id

    # -- keys --------------------------------------------------------------------------------
    def _draft_domain(self, draft_id: str) -> str:
        with self.db.read() as conn:
            row = sending_repo.draft_by_id(conn, draft_id)
        return row["mailbox"].rpartition("@")[2] if row else ""

    def _keys_for(self, domain: str) -> list[compose.SigningKey]:
        """The domain's active DKIM keys, read outside the send transaction; [] when none."""
        if self.signing_keys is None or not domain:
            return []
        try:
            return [tuple(k) for k in self.signing_keys(domain.strip().lower())]  # type: ignore[misc]
        except LitemxError:
            return []  # not a hosted domain: the preflight reports the mailbox instead
        except SealError:
            log.error("the DKIM keys of %s do not open with this instance's secret key", domain)
            return []


def _address_of(value: str) -> str | None:
    """The normalised address, as audit rows and grants spell it; None when it is not one."""
    try:
        return compose.parse_recipient(value).address
    except ValueError:
        return None


def _domain_of(address: str) -> str:
    return (_address_of(address) or "").rpartition("@")[2]  # "" when invalid: the preflight reports it


def _checked_key(value: str | None) -> str | None:
    """Raises: InvalidRequest naming Idempotency-Key for an empty, long or non-ASCII key."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or not value.isascii() or not value.isprintable():
        raise invalid_field("Idempotency-Key", f"the Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters")
    return value


def _fingerprint(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"op": operation, **request}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _file_digests(files: Sequence[compose.OutgoingAttachment]) -> list[list[Any]]:
    """What makes two attachment lists the same request (the bytes by their SHA-256)."""
    return [[f.filename, f.content_type, f.content_id, f.inline, hashlib.sha256(f.data).hexdigest()] for f in files]


def _addr_list(addresses: Sequence[mime.Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def _message_row(message_id: str, box: dict[str, Any], thread_id: str, raw: bytes, raw_key: str,
                 p: mime.ParsedMessage, now: Any) -> dict[str, Any]:
    """The outbound `messages` row, from the bytes as sent (same columns as inbound mail)."""
    return {
        "id": message_id, "account_id": box["account_id"], "mailbox_id": box["id"], "mailbox": box["address"],
        "thread_id": thread_id, "direction": "outbound", "status": "queued", "queue_id": None,
        "message_id_header": p.message_id, "in_reply_to": p.in_reply_to, "references": list(p.references),
        "subject": p.subject, "from_name": p.from_.name if p.from_ else None,
        "from_addr": p.from_.address if p.from_ else None, "to_addrs": _addr_list(p.to), "cc_addrs": _addr_list(p.cc),
        "reply_to": [], "mail_from": None, "rcpt": None, "sent_at": now, "received_at": now, "size": len(raw),
        "raw_key": raw_key, "text_body": p.text, "html_body": p.html, "snippet": mime.snippet(p.text),
        "headers": [list(h) for h in p.headers], "has_attachments": False, "auth": {}, "signals": {},
        "deleted_content_at": None,
    }


def _delivery_row(message_id: str, box: dict[str, Any], domain: dict[str, Any], rcpt: str, now: Any) -> dict[str, Any]:
    delivery_id = new_id("dlv")
    return {"id": delivery_id, "account_id": box["account_id"], "message_id": message_id, "mailbox": box["address"],
            "recipient": rcpt, "envelope_from": verp_address(delivery_id, domain["mail_from"]), "status": "queued",
            "attempts": 0, "next_attempt_at": now, "last_reply": None, "provider_id": None, "created_at": now,
            "updated_at": now}


def _render_sent(message_id: str, box: dict[str, Any], thread_id: str, out: compose.Outgoing, cleared: Cleared,
                 deliveries: list[dict[str, Any]], draft: dict[str, Any] | None, now: Any) -> dict[str, Any]:
    return {
        "id": message_id, "status": "queued", "mailbox": box["address"], "thread_id": thread_id,
        "message_id_header": out.message_id, "subject": out.subject,
        "to": [compose.mailbox_header(a) for a in cleared.to], "cc": [compose.mailbox_header(a) for a in cleared.cc],
        "bcc": [compose.mailbox_header(a) for a in cleared.bcc],
        "deliveries": [{"id": d["id"], "recipient": d["recipient"], "status": d["status"]} for d in deliveries],
        "draft_id": draft["id"] if draft else None, "queued_at": iso(now),
    }
