"""SNS and SES, faked from AWS's documented formats (moto's SES/SNS payloads are not AWS-shaped).

- `SnsSigner` signs SNS envelopes the way SNS does ("Verifying the signatures of Amazon SNS
  messages": "Key\\nValue\\n" of the signed keys, SHA1withRSA for SignatureVersion 1,
  SHA256withRSA for 2) with our own RSA key and self-signed certificate. The canonical string
  is built here independently of `litemx.core.sns`, so a bug there cannot hide itself.
- `FakeSns` is a loopback HTTPS server standing in for `sns.<region>.amazonaws.com`: it serves
  the signing certificate and answers ConfirmSubscription (the SNS API's documented XML),
  recording every request. Its TLS certificate is for 127.0.0.1 and `client_context` trusts it.
- `ses_received` / `ses_bounce` / `ses_complaint` build SES notifications as the SES developer
  guide shows them ("Notification contents for Amazon SES email receiving", "Amazon SNS
  notification contents for Amazon SES").
"""

from __future__ import annotations

import base64
import functools
import http.server
import ipaddress
import json
import ssl
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:us-east-1:123456789012:litemx-inbound"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-else"
SUBSCRIPTION = f"{TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
CONFIRM_ANSWER = (
    '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
    f"<ConfirmSubscriptionResult><SubscriptionArn>{SUBSCRIPTION}</SubscriptionArn></ConfirmSubscriptionResult>"
    "<ResponseMetadata><RequestId>075ecce8-8dac-11e1-bf80-f781d96e9307</RequestId></ResponseMetadata>"
    "</ConfirmSubscriptionResponse>").encode()


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """One key per test process: RSA generation is the slow part."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, name: str, ip: str | None = None) -> bytes:
    """A PEM certificate for `key`, valid from a day ago for ten years."""
    now = datetime.now(timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=3650)))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def timestamp(at: datetime) -> str:
    """SNS's Timestamp format: 2012-04-25T21:49:25.719Z."""
    at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class SnsSigner:
    def __init__(self, cert_url: str, key: rsa.RSAPrivateKey | None = None):
        self.cert_url = cert_url
        self.key = key or rsa_key()

    def sign(self, doc: dict[str, Any], version: str = "2") -> dict[str, Any]:
        doc = {**doc, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        text = "".join(f"{k}\n{doc[k]}\n" for k in SIGNED[doc["Type"]] if k in doc)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**doc, "Signature": base64.b64encode(signature).decode()}


# -- SNS envelopes -------------------------------------------------------------------------------
def notification(message: dict[str, Any], at: datetime, topic: str = TOPIC, message_id: str | None = None,
                 subject: str | None = "Amazon SES Email Receipt Notification") -> dict[str, Any]:
    doc = {"Type": "Notification", "MessageId": message_id or str(uuid.uuid4()), "TopicArn": topic,
           "Message": json.dumps(message), "Timestamp": timestamp(at),
           "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={SUBSCRIPTION}"}
    if subject is not None:
        doc["Subject"] = subject
    return doc


def confirmation(kind: str, subscribe_url: str, at: datetime, topic: str = TOPIC) -> dict[str, Any]:
    token = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ce"
    return {"Type": kind, "MessageId": str(uuid.uuid4()), "Token": token, "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, "
                       "visit the SubscribeURL included in this message.",
            "SubscribeURL": f"{subscribe_url}?Action=ConfirmSubscription&TopicArn={topic}&Token={token}",
            "Timestamp": timestamp(at)}


# -- SES notifications -----------------------------------------------------------------------------
def _mail(recipients: list[str], source: str, at: datetime) -> dict[str, Any]:
    return {"timestamp": timestamp(at), "source": source, "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
            "destination": recipients, "headersTruncated": False,
            "headers": [{"name": "Return-Path", "value": f"<{source}>"}, {"name": "Subject", "value": "Hello"}],
            "commonHeaders": {"returnPath": source, "from": [source], "to": recipients, "subject": "Hello"}}


def ses_received(recipients: list[str], at: datetime, raw: bytes | None = None, *, encoding: str = "BASE64",
                 s3: tuple[str, str] | None = None, source: str = "alice@sender.example") -> dict[str, Any]:
    """A `Received` notification: an SNS action with the message inline, or an S3 action."""
    verdict = {"status": "PASS"}
    if s3 is not None:
        action = {"type": "S3", "topicArn": TOPIC, "bucketName": s3[0], "objectKeyPrefix": "", "objectKey": s3[1]}
    else:
        action = {"type": "SNS", "topicArn": TOPIC, "encoding": encoding}
    note: dict[str, Any] = {
        "notificationType": "Received", "mail": _mail(recipients, source, at),
        "receipt": {"timestamp": timestamp(at), "processingTimeMillis": 222, "recipients": recipients,
                    "spamVerdict": verdict, "virusVerdict": verdict, "spfVerdict": verdict, "dkimVerdict": verdict,
                    "dmarcVerdict": verdict, "action": action}}
    if raw is not None:
        note["content"] = base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode("utf-8")
    return note


def ses_bounce(provider_id: str, recipient: str, at: datetime) -> dict[str, Any]:
    return {"notificationType": "Bounce", "mail": {**_mail([recipient], "support@project.dev", at),
                                                    "messageId": provider_id},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": timestamp(at),
                       "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
                       "reportingMTA": "dsn; a9-12.smtp-out.amazonses.com",
                       "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}


def ses_complaint(provider_id: str, recipient: str, at: datetime) -> dict[str, Any]:
    return {"notificationType": "Complaint", "mail": {**_mail([recipient], "support@project.dev", at),
                                                       "messageId": provider_id},
            "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)", "complaintFeedbackType": "abuse",
                          "timestamp": timestamp(at), "feedbackId": "0000013786031775-fea503bc-7497-49e1-881b",
                          "complainedRecipients": [{"emailAddress": recipient}]}}


# -- a loopback stand-in for sns.<region>.amazonaws.com -------------------------------------------
class FakeSns:
    """HTTPS on 127.0.0.1: GET /cert.pem (the signing certificate) and /?Action=ConfirmSubscription."""

    CERT_PATH = "/SimpleNotificationService-litemx-test.pem"

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.signing_cert = self_signed(rsa_key(), "sns.amazonaws.com")
        tls_key = other_key()
        tls_cert = self_signed(tls_key, "127.0.0.1", ip="127.0.0.1")
        self.client_context = ssl.create_default_context(cadata=tls_cert.decode())
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = _server_context(tls_key, tls_cert).wrap_socket(self._server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-sns", daemon=True)

    @property
    def cert_url(self) -> str:
        return self.base + self.CERT_PATH

    def __enter__(self) -> FakeSns:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                fake.requests.append(self.path)
                if self.path == fake.CERT_PATH:
                    self._reply(200, fake.signing_cert, "application/x-x509-ca-cert")
                elif self.path.startswith("/?Action=ConfirmSubscription"):
                    self._reply(200, CONFIRM_ANSWER, "text/xml")
                else:
                    self._reply(404, b"<Error><Code>NotFound</Code></Error>", "text/xml")

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return None

        return Handler


def _server_context(key: rsa.RSAPrivateKey, cert: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        path = Path(tmp) / "server.pem"
        path.write_bytes(pem + cert)
        context.load_cert_chain(path)
    return context
