"""Amazon SNS HTTP(S) messages: parsing and signature verification, pure (no I/O).

Follows AWS's documented procedure ("Verifying the signatures of Amazon SNS messages",
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):

1. take the signed fields of the JSON body, in byte order of their names, each as
   "Name\\nValue\\n" (Notification: Message, MessageId, Subject if present, Timestamp,
   TopicArn, Type; (Un)SubscriptionConfirmation: Message, MessageId, SubscribeURL,
   Timestamp, Token, TopicArn, Type);
2. fetch the X.509 certificate at SigningCertURL — only over HTTPS and only from an SNS host
   (`sns.<region>.amazonaws.com`), never trusting a certificate named by the message alone;
3. verify the base64 `Signature` over that string with the certificate's RSA public key:
   SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA (PKCS #1 v1.5);
4. reject an unexpected TopicArn.

The fetch (step 2) is the caller's job, through an injected getter; this module only checks
the URL and verifies with the bytes it is given. Beyond AWS's steps we refuse stale
timestamps: SNS stops retrying an HTTP/S delivery after at most 3,600 s ("Amazon SNS message
delivery retries"), so an older message can only be a replay.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from litemx.errors import Forbidden, Unavailable, invalid_field

NOTIFICATION = "Notification"
SUBSCRIBE = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_KEYS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIBE: _CONFIRMATION_KEYS,
    UNSUBSCRIBE: _CONFIRMATION_KEYS,
}
OPTIONAL_KEYS = frozenset({"Subject"})
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
FUTURE_SKEW = timedelta(minutes=5)
_LABEL = "[a-z0-9-]+"


class SnsRejected(Forbidden):
    """A message that is not provably from SNS (or not for us): answered 403 `forbidden`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, {"reason": reason})
        self.reason = reason
        self.audit = {"reason": reason}


@dataclass(frozen=True)
class SnsMessage:
    """The SNS JSON envelope, its string fields as sent."""

    fields: dict[str, str]

    @property
    def type(self) -> str:
        return self.fields["Type"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def message(self) -> str:
        return self.fields["Message"]

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


# -- parsing ---------------------------------------------------------------------------------------
def load_json(data: bytes | str, field: str) -> Any:
    """JSON text -> value.

    Raises: InvalidRequest naming `field` for anything that is not JSON (including invalid
    UTF-8 and nesting deep enough to exhaust the parser's recursion).
    """
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise invalid_field(field, f"{field} is not valid JSON") from None


def parse(body: bytes) -> SnsMessage:
    """The SNS envelope of an HTTP(S) delivery (JSON, whatever the Content-Type says).

    Raises: InvalidRequest naming the field (not JSON, unknown Type, a missing or non-string
    signed field); SnsRejected `unsigned` when the signature fields are absent.
    """
    doc = load_json(body, "body")
    if not isinstance(doc, dict):
        raise invalid_field("body", "an SNS message is a JSON object")
    kind = doc.get("Type")
    if kind not in SIGNED_KEYS:
        raise invalid_field("Type", "Type must be Notification, SubscriptionConfirmation or UnsubscribeConfirmation")
    fields = {key: _string(doc, key) for key in (*SIGNED_KEYS[kind], "SignatureVersion", "Signature",
                                                   "SigningCertURL") if doc.get(key) is not None}
    missing = [k for k in SIGNED_KEYS[kind] if k not in fields and k not in OPTIONAL_KEYS]
    if missing:
        raise invalid_field(missing[0], f"{missing[0]} is required in an SNS {kind}")
    _check_identifiers(fields)
    if not all(fields.get(k) for k in ("SignatureVersion", "Signature", "SigningCertURL")):
        raise SnsRejected("unsigned", "the message carries no SNS signature")
    return SnsMessage(fields)


def _check_identifiers(fields: dict[str, str]) -> None:
    """MessageId and TopicArn are stored and audited: bounded, printable (a NUL would make
    PostgreSQL refuse the row). Raises: InvalidRequest naming the field."""
    for key, limit in (("MessageId", 100), ("TopicArn", 256)):
        value = fields[key]
        if not value or len(value) > limit or not value.isprintable():
            raise invalid_field(key, f"{key} must be 1 to {limit} printable characters")


def _string(doc: dict[str, Any], key: str) -> str:
    """Raises: InvalidRequest naming `key` when its value is not a string."""
    value = doc[key]
    if not isinstance(value, str):
        raise invalid_field(key, f"{key} must be a string")
    return value


# -- verification steps ----------------------------------------------------------------------------
def canonical_string(msg: SnsMessage) -> bytes:
    """Step 1: the bytes SNS signed — "Key\\nValue\\n" for each signed key present, in order."""
    keys = SIGNED_KEYS[msg.type]
    return "".join(f"{k}\n{msg.fields[k]}\n" for k in keys if k in msg.fields).encode("utf-8")


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """True when `host` matches a pattern; `*` stands for exactly one DNS label, so
    `sns.*.amazonaws.com` never matches `sns.my-bucket.s3.amazonaws.com` (an S3 bucket named
    `sns.my-bucket` must not be able to serve a "signing certificate")."""
    host = host.lower().rstrip(".")
    return any(re.fullmatch(_pattern_regex(p), host) for p in patterns if p)


def _pattern_regex(pattern: str) -> str:
    return r"\.".join(_LABEL if label == "*" else re.escape(label) for label in pattern.lower().split("."))


def check_url(url: str, patterns: Sequence[str], what: str) -> None:
    """Step 2's precondition for SigningCertURL (and for SubscribeURL before we call it):
    HTTPS only, no credentials, host on the allow-list.

    Raises: SnsRejected `<what>_not_https` / `<what>_not_allowed` (what: cert_url, subscribe_url).
    """
    label = what.replace("_", " ")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise SnsRejected(f"{what}_not_allowed", f"the {label} is malformed") from None
    if parts.scheme != "https":
        raise SnsRejected(f"{what}_not_https", f"the {label} must use https")
    if parts.username is not None or not host_allowed(host, patterns):
        raise SnsRejected(f"{what}_not_allowed", f"the {label} is not on an allowed SNS host")


def check_cert_url(url: str, patterns: Sequence[str]) -> None:
    """SigningCertURL: an allowed HTTPS URL of a `.pem` file (as AWS's own message validators require).

    Raises: SnsRejected (see check_url).
    """
    check_url(url, patterns, "cert_url")
    if not urlsplit(url).path.endswith(".pem"):
        raise SnsRejected("cert_url_not_allowed", "the signing certificate URL does not name a .pem file")


def check_topic(msg: SnsMessage, allowed: Sequence[str]) -> None:
    """Step 4 (empty allow-list: any topic). Raises: SnsRejected `topic_not_allowed`."""
    if allowed and msg.topic_arn not in allowed:
        raise SnsRejected("topic_not_allowed", "the message's TopicArn is not one this server accepts")


def check_fresh(msg: SnsMessage, now: datetime, max_age: timedelta) -> None:
    """Replay guard: the signed Timestamp is at most `max_age` old and not from the future.

    Raises: SnsRejected `bad_timestamp` / `stale`.
    """
    try:
        at = datetime.fromisoformat(msg.fields["Timestamp"])
    except ValueError:
        raise SnsRejected("bad_timestamp", "the message's Timestamp is not an ISO 8601 time") from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)
    if now - at > max_age or at - now > FUTURE_SKEW:
        raise SnsRejected("stale", "the message's Timestamp is too old (or in the future): possible replay")


def load_certificate(pem: bytes) -> x509.Certificate:
    """Raises: SnsRejected `bad_certificate` for bytes that are not one PEM X.509 certificate."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsRejected("bad_certificate", "the signing certificate is not a PEM X.509 certificate") from None


def signing_key(cert: x509.Certificate, now: datetime) -> rsa.RSAPublicKey:
    """The certificate's RSA key, if the certificate is valid at `now`.

    Raises: SnsRejected `bad_certificate`.
    """
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SnsRejected("bad_certificate", "the signing certificate is expired or not yet valid")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRejected("bad_certificate", "the signing certificate does not hold an RSA key")
    return key


def signature_hash(msg: SnsMessage) -> hashes.HashAlgorithm:
    """Raises: SnsRejected `unsupported_signature_version` unless SignatureVersion is 1 or 2."""
    algorithm = SIGNATURE_HASHES.get(msg.fields["SignatureVersion"])
    if algorithm is None:
        raise SnsRejected("unsupported_signature_version", "SignatureVersion must be 1 or 2")
    return algorithm()


def verify_signature(msg: SnsMessage, key: rsa.RSAPublicKey) -> None:
    """Step 3. Raises: SnsRejected `unsupported_signature_version` / `bad_signature`."""
    algorithm = signature_hash(msg)
    try:
        signature = base64.b64decode(msg.fields["Signature"], validate=True)
        key.verify(signature, canonical_string(msg), padding.PKCS1v15(), algorithm)
    except (binascii.Error, ValueError, InvalidSignature):
        raise SnsRejected("bad_signature", "the SNS signature does not verify") from None


def subscription_arn(answer: bytes) -> str | None:
    """The SubscriptionArn in SNS's ConfirmSubscription answer (XML, read with a pattern so no
    XML parser ever sees the remote document)."""
    found = re.search(rb"<SubscriptionArn>([^<]{1,256})</SubscriptionArn>", answer)
    arn = found.group(1).decode("ascii", "replace").strip() if found else ""
    return arn if arn.isprintable() and arn else None


class FetchFailed(Unavailable):
    """An HTTPS GET to SNS that did not answer 200; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# -- best-effort reading of an unverified message (for the audit row only) -------------------------
def claimed_addresses(body: bytes, limit: int = 5) -> list[str]:
    """Addresses an (unverified) SES notification names: the recipients of `Received` mail, the
    sender of a bounce or complaint. Used only to attribute a rejection's audit row; never
    raises and never trusts the result for anything else."""
    try:
        note = json.loads(json.loads(body)["Message"])
        mail, receipt = note.get("mail") or {}, note.get("receipt") or {}
        if note.get("notificationType") == "Received":
            found = list(receipt.get("recipients") or []) + list(mail.get("destination") or [])
        else:
            found = [mail.get("source")]
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return []
    return [a for a in found if isinstance(a, str) and 0 < len(a) <= 320][:limit]
