"""The SES inbound webhook (SPEC §5): SNS HTTP(S) deliveries to `POST /api/inbound/ses`.

Authentication is the SNS message signature (core/sns.py, AWS's documented steps) plus an
optional shared secret in the subscription URL — never a bearer token. Then, by `Type`:

- `SubscriptionConfirmation`: confirm by GETting its SubscribeURL (only on an allowed SNS
  host), keep the subscription (`sns_messages`), audit `inbound.ses_subscription`;
- `UnsubscribeConfirmation`: audit `inbound.ses_unsubscribe`, nothing else;
- `Notification` whose Message is SES's JSON: `Received` mail (inline `content`, or fetched
  from the S3 action's bucket) goes through the SMTP pipeline — each recipient routed, refusals
  audited `inbound.rejected`, the rest `InboundService.accept(..., source="ses")`; the worker
  then parses it and runs OUR SPF/DKIM/DMARC evaluation, as for SMTP (SES's own verdicts in
  `receipt` are not trusted over ours and not stored). `Bounce` / `Complaint` / `Delivery`
  go to `BounceService.process_ses_notification`.

SNS delivers at least once and retries only 5xx answers, so: a redelivered MessageId is
answered 200 without storing twice; transient trouble (S3, the database, the certificate
host) answers 503 so SNS retries; a message that can never succeed answers 4xx. Every
refusal or failure writes `inbound.ses_rejected` — its reason, never the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from litemx.core import sns
from litemx.core.sns import SnsMessage, SnsRejected
from litemx.errors import Forbidden, LitemxError, PayloadTooLarge, Unavailable, invalid_field
from litemx.service.base import Infra, ServiceBase, event_row
from litemx.service.bounces import BounceService
from litemx.service.inbound import InboundService
from litemx.service.routing import Route
from litemx.settings import Settings
from litemx.storage import audit_repo, sns_repo

log = logging.getLogger("litemx.ses")

HttpGet = Callable[[str], bytes]
CLAIM_LEASE = timedelta(minutes=2)  # an unfinished claim older than this was left by a crash
KEEP_NOTIFICATIONS = timedelta(days=2)  # > the replay window: older redeliveries are stale anyway
MAX_RECIPIENTS = 100  # as the MX (RFC 5321 §4.5.3.1.8)
CERT_CACHE_SIZE = 32
REPORTS = frozenset({"Bounce", "Complaint", "Delivery"})


class S3Get(Protocol):
    def __call__(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """Raises: KeyError (no such object), PayloadTooLarge, Unavailable."""
        ...


@dataclass(frozen=True)
class SnsPolicy:
    """What the webhook accepts, read once from Settings (tests replace it whole)."""

    secret: str
    topics: tuple[str, ...]
    hosts: tuple[str, ...]
    max_age: timedelta
    buckets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SnsPolicy:
        return cls(settings.ses_webhook_secret, tuple(settings.ses_sns_topic_arns),
                   tuple(settings.ses_sns_cert_hosts), timedelta(seconds=settings.ses_sns_max_age_seconds),
                   tuple(settings.ses_s3_buckets))


@dataclass
class Attempt:
    """One request, as far as it got: what its audit row needs."""

    ip: str | None
    user_agent: str | None
    msg: SnsMessage | None = None
    verified: bool = False


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a MessageId: new, a duplicate of finished work, or a takeover of
    a crashed attempt's claim made at `since`."""

    duplicate: bool = False
    queue_id: int | None = None
    since: datetime | None = None


class SesInboundService(ServiceBase):
    def __init__(self, infra: Infra, inbound: InboundService, bounces: BounceService, http_get: HttpGet,
                 s3_get: S3Get):
        super().__init__(infra)
        self.inbound = inbound
        self.bounces = bounces
        self.http_get = http_get  # injectable: tests reach only a loopback fake
        self.s3_get = s3_get
        self.policy = SnsPolicy.from_settings(infra.settings)
        self._certs: dict[str, x509.Certificate] = {}

    # -- the entry point -------------------------------------------------------------------------
    def handle(self, body: bytes, *, secret: str | None, ip: str | None = None,
               user_agent: str | None = None) -> dict[str, Any]:
        """One SNS HTTP(S) delivery; answers what was done (SNS reads only the status).

        Raises: SnsRejected (403: secret, signature, certificate URL, topic, staleness),
        InvalidRequest (422), PayloadTooLarge (413), Unavailable (503: SNS retries). Each is
        audited as `inbound.ses_rejected`.
        """
        attempt = Attempt(ip, user_agent)
        try:
            self._check_secret(secret)
            attempt.msg = sns.parse(body)
            self._verify(attempt.msg)
            attempt.verified = True
            return self._dispatch(attempt.msg, attempt)
        except LitemxError as error:
            self._audit_failure(error, attempt, body)
            raise

    def _check_secret(self, given: str | None) -> None:
        """The subscription URL's `?secret=`, compared in constant time.

        Raises: SnsRejected `secret_mismatch` (required whenever one is configured).
        """
        expected = self.policy.secret
        if expected and not hmac.compare_digest((given or "").encode(), expected.encode()):
            raise SnsRejected("secret_mismatch", "the webhook secret is missing or wrong")

    # -- verification (AWS: "Verifying the signatures of Amazon SNS messages") -------------------
    def _verify(self, msg: SnsMessage) -> None:
        """Cheap checks first, so a forgery never makes us fetch anything.

        Raises: SnsRejected, or Unavailable when the certificate host cannot be reached.
        """
        sns.signature_hash(msg)
        sns.check_topic(msg, self.policy.topics)
        sns.check_fresh(msg, self.clock.now(), self.policy.max_age)
        url = msg.fields["SigningCertURL"]
        sns.check_cert_url(url, self.policy.hosts)
        sns.verify_signature(msg, self._signing_key(url))

    def _signing_key(self, url: str) -> rsa.RSAPublicKey:
        """The certificate at `url` (fetched once per process, then cached), valid now.

        Raises: SnsRejected `bad_certificate` / `cert_url_unavailable`, Unavailable.
        """
        cert = self._certs.get(url)
        if cert is None:
            cert = sns.load_certificate(self._fetch(url, "cert_url"))
            if len(self._certs) >= CERT_CACHE_SIZE:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return sns.signing_key(cert, self.clock.now())

    def _fetch(self, url: str, what: str) -> bytes:
        """GET through the injected getter. A 4xx from the SNS host means the URL names nothing
        SNS published (a forgery): 403. Anything else is transient: 503, and SNS retries.

        Raises: SnsRejected `<what>_unavailable`, Unavailable.
        """
        try:
            return self.http_get(url)
        except sns.FetchFailed as failed:
            if failed.status is not None and 400 <= failed.status < 500:
                raise SnsRejected(f"{what}_unavailable", f"the SNS host has no such {what.replace('_', ' ')}") \
                    from None
            failed.audit = {"reason": f"{what}_unavailable"}
            raise

    # -- by Type -----------------------------------------------------------------------------------
    def _dispatch(self, msg: SnsMessage, attempt: Attempt) -> dict[str, Any]:
        """Raises: as handle()."""
        if msg.type == sns.SUBSCRIBE:
            return self._subscribe(msg, attempt)
        if msg.type == sns.UNSUBSCRIBE:
            self._audit_ok(msg, attempt, "inbound.ses_unsubscribe", {"topic_arn": msg.topic_arn})
            return _answer(msg, "ignored")
        return self._notification(msg, attempt)

    def _subscribe(self, msg: SnsMessage, attempt: Attempt) -> dict[str, Any]:
        """Confirm by visiting SubscribeURL (AWS: "Confirm the subscription"), then record it.

        Raises: SnsRejected `subscribe_url_*`, Unavailable (SNS resends the confirmation).
        """
        url = msg.fields["SubscribeURL"]
        sns.check_url(url, self.policy.hosts, "subscribe_url")
        arn = sns.subscription_arn(self._fetch(url, "subscribe_url"))
        details = {"topic_arn": msg.topic_arn, "subscription_arn": arn}
        with self.db.write() as conn:
            sns_repo.claim(conn, {"message_id": msg.message_id, "type": msg.type, "topic_arn": msg.topic_arn,
                                  "status": "done", "claimed_at": self.clock.now(), "queue_id": None,
                                  "details": details})
            self._append_ok(conn, msg, attempt, "inbound.ses_subscription", details)
        return {**_answer(msg, "confirmed"), "subscription_arn": arn}

    def _notification(self, msg: SnsMessage, attempt: Attempt) -> dict[str, Any]:
        """Raises: InvalidRequest (the Message is not an SES notification), as handle()."""
        note = sns.load_json(msg.message, "Message")
        if not isinstance(note, dict):
            raise invalid_field("Message", "the SNS Message is not an SES notification object")
        kind = str(note.get("notificationType") or note.get("eventType") or "")
        if kind == "Received":
            return self._once(msg, lambda since: self._receive(msg, note, attempt, since))
        if kind in REPORTS:
            return self._once(msg, lambda _since: self._report(msg, note))
        # e.g. "AmazonSnsSubscriptionSucceeded", SES's test message when a topic is attached.
        log.info("SES notification %r from %s ignored", kind[:64], msg.topic_arn)
        return _answer(msg, "ignored")

    # -- exactly once per MessageId ----------------------------------------------------------------
    def _once(self, msg: SnsMessage, work: Callable[[datetime | None], dict[str, Any]]) -> dict[str, Any]:
        """Run `work` unless this MessageId was already processed; an interrupted attempt's
        claim is released so SNS's retry (we answer 5xx) starts afresh.

        Raises: what `work` raises; Unavailable while another request holds the claim.
        """
        claim = self._claim(msg)
        if claim.duplicate:
            return {**_answer(msg, "duplicate"), "queue_id": claim.queue_id}
        finished = False
        try:
            result = work(claim.since)
            with self.db.write() as conn:
                sns_repo.finish(conn, msg.message_id, result.get("queue_id"), {"status": result["status"]})
            finished = True
        finally:
            if not finished:
                with self.db.write() as conn:
                    sns_repo.release(conn, msg.message_id)
        return result

    def _claim(self, msg: SnsMessage) -> Claim:
        """Raises: Unavailable while a live claim (another request, under CLAIM_LEASE) holds it."""
        now = self.clock.now()
        with self.db.write() as conn:
            sns_repo.prune(conn, now - KEEP_NOTIFICATIONS)
            if sns_repo.claim(conn, {"message_id": msg.message_id, "type": msg.type, "topic_arn": msg.topic_arn,
                                     "status": "processing", "claimed_at": now, "queue_id": None, "details": {}}):
                return Claim()
            row = sns_repo.locked(conn, msg.message_id)
            if row is not None and row["status"] == "done":
                return Claim(duplicate=True, queue_id=row["queue_id"])
            if row is None or now - row["claimed_at"] < CLAIM_LEASE:
                raise _busy()
            sns_repo.take_over(conn, msg.message_id, now)
            return Claim(since=row["claimed_at"])

    # -- Received mail -------------------------------------------------------------------------------
    def _receive(self, msg: SnsMessage, note: dict[str, Any], attempt: Attempt,
                 since: datetime | None) -> dict[str, Any]:
        """Route, then accept durably exactly like the MX does (the worker does the rest).

        Raises: InvalidRequest, PayloadTooLarge, Unavailable.
        """
        mail, receipt = _object(note, "mail"), _object(note, "receipt")
        raw = self._raw(note, receipt)
        routes = [self.inbound.route_recipient(r) for r in _recipients(receipt, mail)]
        accepted = [r for r in routes if r.accepted]
        self._audit_refused(msg, attempt, [r for r in routes if not r.accepted])
        counts = {"accepted": len(accepted), "refused": len(routes) - len(accepted)}
        if not accepted:
            return {**_answer(msg, "rejected"), "queue_id": None, **counts}
        queue_id = self._adopted(raw, since) or self.inbound.accept(
            raw, _mail_from(mail), accepted, client_ip=None, helo=None, source="ses")
        return {**_answer(msg, "accepted"), "queue_id": queue_id, **counts}

    def _raw(self, note: dict[str, Any], receipt: dict[str, Any]) -> bytes:
        """The raw MIME: inline `content` (SNS action) or the S3 action's object.

        Raises: InvalidRequest (neither, or undecodable), PayloadTooLarge, Unavailable.
        """
        action = receipt.get("action") if isinstance(receipt.get("action"), dict) else {}
        limit = self.infra.settings.max_message_bytes
        if action.get("type") == "S3":
            raw = self._s3_object(action, limit)
        elif "content" in note:
            raw = _decode_content(note["content"], action.get("encoding"))
        else:
            raise invalid_field("Message", "a Received notification needs inline content or an S3 action")
        if not raw:
            raise invalid_field("Message", "the received message is empty")
        if len(raw) > limit:
            raise PayloadTooLarge(f"the message is over the {limit}-byte limit", {"limit": limit})
        return raw

    def _s3_object(self, action: dict[str, Any], limit: int) -> bytes:
        """Raises: InvalidRequest (no bucket/key), SnsRejected `bucket_not_allowed`,
        PayloadTooLarge, Unavailable (also when the object is missing: SNS retries, and the
        audit row says why)."""
        bucket, key = action.get("bucketName"), action.get("objectKey")
        if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
            raise invalid_field("Message", "the S3 action names no bucketName and objectKey")
        if self.policy.buckets and bucket not in self.policy.buckets:
            # A topic we did not expect could otherwise make us read any bucket our credentials reach.
            raise SnsRejected("bucket_not_allowed", "the S3 action names a bucket this server does not read")
        try:
            return self.s3_get(bucket, key, limit)
        except KeyError:
            error = Unavailable("the stored message is not in the S3 bucket")
            error.audit = {"reason": "s3_object_missing"}
            raise error from None
        except Unavailable as error:
            error.audit.setdefault("reason", "s3_unavailable")
            raise

    def _adopted(self, raw: bytes, since: datetime | None) -> int | None:
        """After a takeover: the queue row the crashed attempt already committed, if it got that far."""
        if since is None:
            return None
        with self.db.read() as conn:
            # The blob key is the SHA-256 hex of the bytes (ports.BlobStore), so it finds them.
            return sns_repo.ses_queue_row(conn, hashlib.sha256(raw).hexdigest(), since)

    # -- bounces and complaints --------------------------------------------------------------------
    def _report(self, msg: SnsMessage, note: dict[str, Any]) -> dict[str, Any]:
        """Raises: InvalidRequest (not an SES notification)."""
        result = self.bounces.process_ses_notification(note)
        return {**_answer(msg, "applied"), "notification_type": result["type"], "matched": result["matched"]}

    # -- audit ---------------------------------------------------------------------------------------
    def _audit_ok(self, msg: SnsMessage, attempt: Attempt, action: str, details: dict[str, Any]) -> None:
        with self.db.write() as conn:
            self._append_ok(conn, msg, attempt, action, details)

    def _append_ok(self, conn: Any, msg: SnsMessage, attempt: Attempt, action: str,
                   details: dict[str, Any]) -> None:
        """An instance-level event (no account): SNS subscriptions belong to the operator."""
        audit_repo.append(conn, event_row(
            at=self.clock.now(), account_id=None, actor_type="system", actor_id=None, actor_name="sns",
            interface="api", action=action, resource_type="sns_topic", resource_id=msg.topic_arn, ip=attempt.ip,
            user_agent=attempt.user_agent, details={**details, "sns_message_id": msg.message_id}))

    def _audit_refused(self, msg: SnsMessage, attempt: Attempt, refused: list[Route]) -> None:
        """`inbound.rejected` per refused recipient, as the MX writes at RCPT time."""
        if not refused:
            return
        with self.db.write() as conn:
            for route in refused:
                audit_repo.append(conn, event_row(
                    at=self.clock.now(), account_id=route.account_id, actor_type="system", actor_id=None,
                    actor_name="system", interface="api", action="inbound.rejected", outcome="denied",
                    resource_type="recipient", resource_id=route.recipient, ip=attempt.ip,
                    user_agent=attempt.user_agent, details={"rcpt": route.recipient[:320], "reason": route.reject,
                                                            "source": "ses", "sns_message_id": msg.message_id}))

    def _audit_failure(self, error: LitemxError, attempt: Attempt, body: bytes) -> None:
        """`inbound.ses_rejected`: denied (not provably SNS) or error (SNS's, but not taken)."""
        msg = attempt.msg
        details: dict[str, Any] = {"reason": error.audit.get("reason") or error.code, "code": error.code}
        if "field" in error.details:
            details["field"] = error.details["field"]
        if msg is not None:
            details.update(type=msg.type, topic_arn=msg.topic_arn)
        with self.db.write() as conn:
            audit_repo.append(conn, event_row(
                at=self.clock.now(), account_id=self._claimed_account(body),
                actor_type="system" if attempt.verified else "anonymous", actor_id=None,
                actor_name="sns" if attempt.verified else None, interface="api", action="inbound.ses_rejected",
                outcome="denied" if isinstance(error, Forbidden) else "error", resource_type="sns_message",
                resource_id=msg.message_id if msg else None, ip=attempt.ip, user_agent=attempt.user_agent,
                details=details))

    def _claimed_account(self, body: bytes) -> str | None:
        """The account whose hosted domain the message names, so its owner sees the attempt."""
        for address in sns.claimed_addresses(body):
            account_id = self.inbound.routing.resolve(address).account_id
            if account_id is not None:
                return account_id
        return None


def _answer(msg: SnsMessage, status: str) -> dict[str, Any]:
    return {"status": status, "type": msg.type, "message_id": msg.message_id}


def _busy() -> Unavailable:
    error = Unavailable("this SNS message is being processed by another request; retry later")
    error.audit = {"reason": "in_progress"}
    return error


def _object(note: dict[str, Any], key: str) -> dict[str, Any]:
    """Raises: InvalidRequest naming `Message` when `key` is not an object."""
    value = note.get(key)
    if not isinstance(value, dict):
        raise invalid_field("Message", f"the SES notification has no `{key}` object")
    return value


def _decode_content(content: Any, encoding: Any) -> bytes:
    """SES's inline copy: BASE64 (every byte preserved) or UTF8 (text, as SES recommends only
    for mail that is already UTF-8 or ASCII). Raises: InvalidRequest naming `Message`."""
    if not isinstance(content, str):
        raise invalid_field("Message", "the SES content must be a string")
    if str(encoding or "UTF8").upper().replace("-", "") == "BASE64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_field("Message", "the SES content is not valid base64") from None
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from JSON "\ud800"
        raise invalid_field("Message", "the SES content is not valid Unicode text") from None


def _recipients(receipt: dict[str, Any], mail: dict[str, Any]) -> list[str]:
    """The envelope recipients the receipt rule matched (`receipt.recipients`; else the
    header recipients in `mail.destination`), de-duplicated, at most MAX_RECIPIENTS.

    Raises: InvalidRequest naming `Message` when there are none.
    """
    listed = receipt.get("recipients") or mail.get("destination") or []
    found = list(dict.fromkeys(r.strip().lower() for r in listed if isinstance(r, str) and r.strip())) \
        if isinstance(listed, list) else []
    if not found:
        raise invalid_field("Message", "the SES notification names no recipients")
    return found[:MAX_RECIPIENTS]


def _mail_from(mail: dict[str, Any]) -> str:
    """SES's envelope sender (`mail.source`), or the null reverse-path when it is unusable."""
    source = mail.get("source")
    if not isinstance(source, str) or len(source) > 320 or any(c in source for c in "\r\n\0<> "):
        return ""
    return source
