"""The outbound queue (SPEC §6): claim due deliveries, hand them to the transport, record
every attempt.

The worker (workers.OutboundWorker) calls `claim_due`, awaits the transport outside any
transaction, then `record`. Claiming leases rows (FOR UPDATE SKIP LOCKED on PostgreSQL), so
several workers or nodes never send one delivery twice at once, and a crash mid-batch only
delays the leased rows until the lease ends.

Per attempt: a `delivery_attempts` row and one audit event — `send.delivered`, `send.deferred`
(4xx or no connection: retried with exponential back-off) or `send.failed` (5xx, or given up
after five days). A 5xx is also a bounce: event, and suppression when the reply says the
recipient is bad. A delivery whose mailbox, domain or account was disabled, or whose
recipient was suppressed, after it was queued is `held`, not sent (SPEC §11: immediate effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from litemx.core.delivery import (
    GIVE_UP_AFTER,
    OutboundItem,
    OutboundTransport,
    Outcome,
    is_hard_bounce,
    retry_delay,
)
from litemx.service.base import Infra, ServiceBase
from litemx.service.bounces import BounceService
from litemx.service.principal import system_caller
from litemx.storage import directory_repo, messages_repo, sending_repo, tokens_repo

LEASE = timedelta(minutes=10)
BATCH = 50


class OutboundService(ServiceBase):
    def __init__(self, infra: Infra, transport: OutboundTransport, bounces: BounceService):
        super().__init__(infra)
        self.transport = transport
        self.bounces = bounces

    def claim_due(self, limit: int = BATCH) -> list[OutboundItem]:
        """Lease up to `limit` due deliveries; those that must not go out are held instead."""
        now = self.clock.now()
        with self.db.write() as conn:
            rows = sending_repo.lease_due(conn, now, LEASE, limit)
            ready = [r for r in rows if not self._held(conn, r, now)]
            messages = {r["message_id"]: messages_repo.message_by_id(conn, r["message_id"]) for r in ready}
        return [self._item(r, messages[r["message_id"]]) for r in ready if messages[r["message_id"]]]

    def _item(self, row: dict[str, Any], message: dict[str, Any] | None) -> OutboundItem:
        assert message is not None and message["raw_key"] is not None
        return OutboundItem(row["id"], row["envelope_from"], row["recipient"], message["from_addr"] or "",
                            self.infra.blobs.get(message["raw_key"]))

    def _held(self, conn: Connection, row: dict[str, Any], now: datetime) -> bool:
        reason = _hold_reason(conn, row)
        if reason is None:
            return False
        sending_repo.update_delivery(conn, row["id"], {"status": "held", "last_reply": f"held: {reason}",
                                                       "updated_at": now})
        sending_repo.refresh_message_status(conn, row["message_id"])
        self.audit(conn, system_caller(row["account_id"]), "send.held", resource_type="message",
                   resource_id=row["message_id"], mailbox=row["mailbox"],
                   details={"delivery_id": row["id"], "recipient": row["recipient"], "reason": reason})
        return True

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Store each outcome in its own transaction (one bad row never loses the others)."""
        for result in outcomes:
            self._record(result)

    def _record(self, result: Outcome) -> None:
        now = self.clock.now()
        with self.db.write() as conn:
            row = sending_repo.delivery_by_id(conn, result.delivery_id)
            if row is None or row["status"] not in sending_repo.DUE:
                return  # deleted with its message, or already settled by a bounce
            attempts = row["attempts"] + 1
            status, reply = _settle(row, result, now)
            sending_repo.add_attempt(conn, {"delivery_id": row["id"], "at": now, "outcome": status,
                                            "code": result.code, "reply": reply, "transport": result.transport,
                                            "host": result.host})
            values = _delivery_values(status, reply, attempts, result, now)
            sending_repo.update_delivery(conn, row["id"], values)
            self._audit_attempt(conn, row, result, status, reply, attempts, values.get("next_attempt_at"))
            if status == "failed" and result.code is not None and result.code >= 500:
                self.bounces.bounce(conn, {**row, **values}, status=result.status, diagnostic=reply,
                                    source="smtp", suppress=is_hard_bounce(result.code, result.status))
            sending_repo.refresh_message_status(conn, row["message_id"])

    def _audit_attempt(self, conn: Connection, row: dict[str, Any], result: Outcome, status: str, reply: str,
                       attempts: int, retry_at: datetime | None) -> None:
        details = {"delivery_id": row["id"], "recipient": row["recipient"], "attempt": attempts,
                   "code": result.code, "reply": reply, "transport": result.transport, "host": result.host}
        if retry_at is not None:
            details["next_attempt_at"] = retry_at.isoformat()
        self.audit(conn, system_caller(row["account_id"]), f"send.{status}", resource_type="message",
                   resource_id=row["message_id"], mailbox=row["mailbox"], details=details)

    def prune(self) -> int:
        """Drop idempotency keys past their 24 hours."""
        with self.db.write() as conn:
            return sending_repo.prune_idempotency_keys(conn, self.clock.now())


def _settle(row: dict[str, Any], result: Outcome, now: datetime) -> tuple[str, str]:
    """(status, reply) of this attempt: a transient failure past GIVE_UP_AFTER becomes final."""
    if result.result == "deferred" and now - row["created_at"] >= GIVE_UP_AFTER:
        return "failed", f"gave up after {row['attempts'] + 1} attempts; last: {result.reply}"[:1000]
    return result.result, result.reply


def _delivery_values(status: str, reply: str, attempts: int, result: Outcome, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "attempts": attempts, "last_reply": reply, "updated_at": now}
    if status == "deferred":
        values["next_attempt_at"] = now + retry_delay(attempts)
    if result.provider_id:
        values["provider_id"] = result.provider_id
    return values


def _hold_reason(conn: Connection, row: dict[str, Any]) -> str | None:
    """Why a queued delivery must not leave now, or None (see module docstring)."""
    box = directory_repo.mailbox_by_address(conn, row["mailbox"])
    domain = directory_repo.domain_by_name(conn, row["mailbox"].rpartition("@")[2])
    account = tokens_repo.get_account(conn, row["account_id"])
    for what, item in (("account", account), ("domain", domain), ("mailbox", box)):
        if item is None or item["disabled_at"] is not None:
            return f"{what} disabled"
    if sending_repo.suppressed_among(conn, row["account_id"], [row["recipient"]]):
        return "recipient suppressed"
    return None
