"""Bounces, complaints and the suppression list (SPEC §6).

Reports arrive three ways and end the same way — an event on the message (`delivery_events`),
the delivery's status updated, and, for a hard bounce or any complaint, the recipient on the
account's suppression list, which the preflight then refuses (`recipient_suppressed`):

- a synchronous 5xx from the receiving server (the outbound worker calls `bounce`);
- a DSN (RFC 3464) or ARF complaint (RFC 5965) mailed to a MAIL FROM address: the MX routes
  `<anything>@<mail_from domain>` here (`handle_inbound`, inside the inbound transaction);
  the VERP envelope sender names the delivery, else the original Message-ID does;
- an SES notification (`process_ses_notification`, for the SNS webhook).

A report is only ever applied to a delivery of the account that owns the MAIL FROM domain
it arrived at, so a forged DSN cannot touch another account's mail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from litemx.core import dsn
from litemx.core.addresses import parse_address
from litemx.core.delivery import BOUNCE_TARGET, is_hard_bounce, verp_delivery_id
from litemx.errors import invalid_field
from litemx.service.base import ServiceBase, not_found, operation
from litemx.service.principal import Caller, system_caller
from litemx.service.render import iso
from litemx.storage import sending_repo
from litemx.storage.pagination import page

log = logging.getLogger("litemx.bounces")


class BounceService(ServiceBase):
    # -- applying one report to one delivery ---------------------------------------------------
    def bounce(self, conn: Connection, delivery: dict[str, Any], *, status: str | None, diagnostic: str | None,
               source: str, suppress: bool, interface: str = "system", details: dict[str, Any] | None = None) -> None:
        """A permanent failure: event, delivery failed, `send.bounced`, and the suppression if hard."""
        now = self.clock.now()
        self._delivery_event(conn, delivery, "bounce", status, diagnostic, source, details)
        sending_repo.update_delivery(conn, delivery["id"], {"status": "failed", "updated_at": now,
                                                            "last_reply": (diagnostic or status or "bounced")[:1000]})
        sending_repo.refresh_message_status(conn, delivery["message_id"])
        caller = system_caller(delivery["account_id"], interface=interface)
        self.audit(conn, caller, "send.bounced", resource_type="message", resource_id=delivery["message_id"],
                   mailbox=delivery["mailbox"], details={"delivery_id": delivery["id"],
                                                         "recipient": delivery["recipient"], "status": status,
                                                         "source": source, "suppressed": suppress})
        if suppress:
            self.suppress(conn, caller, delivery, "bounce", {"status": status, "source": source})

    def complaint(self, conn: Connection, delivery: dict[str, Any], *, feedback_type: str, source: str,
                  interface: str = "system") -> None:
        """The recipient reported the message as abuse: event, `send.complained`, suppression."""
        self._delivery_event(conn, delivery, "complaint", None, feedback_type, source, {"feedback_type": feedback_type})
        caller = system_caller(delivery["account_id"], interface=interface)
        self.audit(conn, caller, "send.complained", resource_type="message", resource_id=delivery["message_id"],
                   mailbox=delivery["mailbox"], details={"delivery_id": delivery["id"],
                                                         "recipient": delivery["recipient"],
                                                         "feedback_type": feedback_type, "source": source})
        self.suppress(conn, caller, delivery, "complaint", {"feedback_type": feedback_type, "source": source})

    def note(self, conn: Connection, delivery: dict[str, Any], kind: str, *, status: str | None,
             diagnostic: str | None, source: str) -> None:
        """A report that changes nothing but is worth keeping (delay, delivered)."""
        self._delivery_event(conn, delivery, kind, status, diagnostic, source, None)

    def suppress(self, conn: Connection, caller: Caller, delivery: dict[str, Any], reason: str,
                 details: dict[str, Any]) -> None:
        added = sending_repo.add_suppression(conn, {
            "account_id": delivery["account_id"], "address": delivery["recipient"].lower(), "reason": reason,
            "mailbox": delivery["mailbox"], "message_id": delivery["message_id"], "details": details,
            "created_at": self.clock.now()})
        if added:
            self.audit(conn, caller, "suppression.add", resource_type="suppression",
                       resource_id=delivery["recipient"].lower(), mailbox=delivery["mailbox"],
                       details={"reason": reason, "message_id": delivery["message_id"], **details})

    def _delivery_event(self, conn: Connection, delivery: dict[str, Any], kind: str, status: str | None,
               diagnostic: str | None, source: str, details: dict[str, Any] | None) -> None:
        sending_repo.add_event(conn, {
            "account_id": delivery["account_id"], "message_id": delivery["message_id"], "delivery_id": delivery["id"],
            "type": kind, "recipient": delivery["recipient"], "status": status,
            "diagnostic": (diagnostic or "")[:1000] or None, "source": source, "at": self.clock.now(),
            "details": details or {}})

    # -- DSN and ARF mail (via the MX) -------------------------------------------------------------
    def handle_inbound(self, conn: Connection, target: dict[str, Any], raw: bytes) -> None:
        """The inbound processor's hook for mail to a MAIL FROM address (runs in its transaction)."""
        domain = sending_repo.domain_by_id(conn, target["mailbox_id"].removeprefix(BOUNCE_TARGET))
        report = dsn.parse_report(raw)
        if domain is None or report is None:
            log.info("mail to %s is not a delivery or feedback report; dropped", target.get("rcpt"))
            return
        verp = self._verp_delivery(conn, domain["account_id"], target.get("rcpt") or "")
        if isinstance(report, dsn.DeliveryReport):
            self._apply_dsn(conn, domain["account_id"], report, verp)
        else:
            self._apply_arf(conn, domain["account_id"], report, verp)

    def _verp_delivery(self, conn: Connection, account_id: str, rcpt: str) -> dict[str, Any] | None:
        delivery_id = verp_delivery_id(rcpt)
        delivery = sending_repo.delivery_by_id(conn, delivery_id) if delivery_id else None
        return delivery if delivery is not None and delivery["account_id"] == account_id else None

    def _by_original(self, conn: Connection, account_id: str, message_id: str | None,
                     recipient: str) -> dict[str, Any] | None:
        return sending_repo.delivery_for(conn, account_id, message_id, recipient) if message_id else None

    def _apply_dsn(self, conn: Connection, account_id: str, report: dsn.DeliveryReport,
                   verp: dict[str, Any] | None) -> None:
        # With VERP the envelope is one delivery, so its one recipient block is about it.
        pairs = ([(verp, report.recipients[0])] if verp is not None and report.recipients else
                 [(self._by_original(conn, account_id, report.original_message_id, r.recipient), r)
                  for r in report.recipients])
        for delivery, status in pairs:
            if delivery is not None:
                self._apply_status(conn, delivery, status)

    def _apply_status(self, conn: Connection, delivery: dict[str, Any], r: dsn.RecipientStatus) -> None:
        if r.action == "failed":
            self.bounce(conn, delivery, status=r.status, diagnostic=r.diagnostic, source="dsn", interface="smtp",
                        suppress=is_hard_bounce(None, r.status), details={"final_recipient": r.recipient})
        elif r.action == "delayed":
            self.note(conn, delivery, "delay", status=r.status, diagnostic=r.diagnostic, source="dsn")
        else:  # delivered, relayed, expanded (RFC 3464 §2.3.3)
            self.note(conn, delivery, "delivered", status=r.status, diagnostic=r.diagnostic, source="dsn")

    def _apply_arf(self, conn: Connection, account_id: str, report: dsn.ComplaintReport,
                   verp: dict[str, Any] | None) -> None:
        found = [verp] if verp is not None else [
            self._by_original(conn, account_id, report.original_message_id, r) for r in report.recipients]
        for delivery in found:
            if delivery is not None:
                self.complaint(conn, delivery, feedback_type=report.feedback_type, source="arf", interface="smtp")

    # -- SES ---------------------------------------------------------------------------------------
    def process_ses_notification(self, notification: dict[str, Any]) -> dict[str, Any]:
        """Apply one SES Bounce / Complaint / Delivery notification (AWS SES developer guide,
        "Notification contents"), raw or wrapped in its SNS envelope. Unknown messages match nothing.

        Raises: InvalidRequest when it is not an SES notification at all.
        """
        note = _unwrap_sns(notification)
        kind = str(note.get("notificationType") or note.get("eventType") or "")
        provider_id = str((note.get("mail") or {}).get("messageId") or "")
        if not kind or not provider_id:
            raise invalid_field("notificationType", "not an SES notification (notificationType and mail.messageId)")
        with self.db.write() as conn:
            matched = sum(self._apply_ses(conn, kind, provider_id, note, entry) for entry in _ses_entries(kind, note))
        return {"type": kind, "message_id": provider_id, "matched": matched}

    def _apply_ses(self, conn: Connection, kind: str, provider_id: str, note: dict[str, Any],
                   entry: dict[str, Any]) -> int:
        delivery = sending_repo.delivery_by_provider(conn, provider_id, str(entry.get("emailAddress", "")).lower())
        if delivery is None:
            return 0
        if kind == "Bounce":
            bounce = note.get("bounce") or {}
            permanent = bounce.get("bounceType") == "Permanent"
            if permanent:
                self.bounce(conn, delivery, status=entry.get("status"), diagnostic=entry.get("diagnosticCode"),
                            source="ses", suppress=True, details={"bounce_type": bounce.get("bounceSubType")})
            else:
                self.note(conn, delivery, "delay", status=entry.get("status"),
                          diagnostic=entry.get("diagnosticCode"), source="ses")
        elif kind == "Complaint":
            feedback = (note.get("complaint") or {}).get("complaintFeedbackType") or "abuse"
            self.complaint(conn, delivery, feedback_type=str(feedback), source="ses")
        else:
            self.note(conn, delivery, "delivered", status=None,
                      diagnostic=(note.get("delivery") or {}).get("smtpResponse"), source="ses")
        return 1

    # -- the suppression list ---------------------------------------------------------------------
    @operation("suppressions.list")
    def list_suppressions(self, caller: Caller, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """The account's suppressed recipients; a scoped token sees those its mailboxes caused."""
        p = page(limit, cursor)
        only = None if caller.principal.all_mailboxes else caller.principal.grants
        with self.db.write() as conn:
            result = sending_repo.list_suppressions(conn, caller.principal.account_id, p, only)
            self.audit(conn, caller, "suppression.list", resource_type="suppression",
                       details={"count": len(result.items)})
        return {"items": [render_suppression(r) for r in result.items], "next_cursor": result.next_cursor}

    @operation("suppressions.delete")
    def remove_suppression(self, caller: Caller, address: str) -> dict[str, Any]:
        """Send to this recipient again. Raises: NotFound (absent, or caused by a mailbox not granted)."""
        try:
            normalised = parse_address(address).address
        except ValueError:
            raise not_found("suppression", address) from None
        with self.db.write() as conn:
            row = sending_repo.suppression(conn, caller.principal.account_id, normalised)
            if row is None or not (caller.principal.all_mailboxes or row["mailbox"] in caller.principal.grants):
                raise not_found("suppression", normalised, grant_denied=row is not None)
            sending_repo.remove_suppression(conn, caller.principal.account_id, normalised)
            self.audit(conn, caller, "suppression.remove", resource_type="suppression", resource_id=normalised,
                       mailbox=row["mailbox"], details={"reason": row["reason"]})
        return {"deleted": True, "address": normalised}


def render_suppression(row: dict[str, Any]) -> dict[str, Any]:
    return {"address": row["address"], "reason": row["reason"], "mailbox": row["mailbox"],
            "message_id": row["message_id"], "details": row["details"], "created_at": iso(row["created_at"])}


def _unwrap_sns(notification: Any) -> dict[str, Any]:
    """The SES notification inside an SNS `Notification` envelope (its `Message` is JSON text)."""
    if not isinstance(notification, dict):
        raise invalid_field("body", "an SES notification is a JSON object")
    if notification.get("Type") == "Notification" and isinstance(notification.get("Message"), str):
        try:
            inner = json.loads(notification["Message"])
        except ValueError:
            raise invalid_field("Message", "the SNS Message is not JSON") from None
        return inner if isinstance(inner, dict) else {}
    return notification


def _ses_entries(kind: str, note: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One {emailAddress, ...} per recipient the notification is about."""
    if kind == "Bounce":
        return [e for e in (note.get("bounce") or {}).get("bouncedRecipients") or [] if isinstance(e, dict)]
    if kind == "Complaint":
        return [e for e in (note.get("complaint") or {}).get("complainedRecipients") or [] if isinstance(e, dict)]
    if kind == "Delivery":
        return [{"emailAddress": r} for r in (note.get("delivery") or {}).get("recipients") or []]
    return []
