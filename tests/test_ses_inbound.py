"""The SES inbound webhook, `POST /api/inbound/ses` (SPEC §3, §5, §6, §9): SNS deliveries signed
with our own key and served from a loopback stand-in for SNS (tests/support/ses.py), mail in an
S3 bucket on moto's loopback server, every test on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from litemx.adapters.ses_webhook import https_get
from litemx.core import sns
from litemx.service.ses_inbound import SnsPolicy
from litemx.storage import sending_repo
from litemx.storage.schema import audit_events, inbound_queue, messages, sns_messages
from tests.support.api import assert_error, audit_since
from tests.support.moto_s3 import s3_endpoint  # noqa: F401 - pytest fixture
from tests.support.sending import MAILBOX, count, hosted
from tests.support.ses import (
    OTHER_TOPIC,
    SUBSCRIPTION,
    TOPIC,
    FakeSns,
    SnsSigner,
    confirmation,
    notification,
    other_key,
    ses_bounce,
    ses_complaint,
    ses_received,
)

SECRET = "s3cret-webhook-value"
BUCKET = "litemx-ses-inbound"
LIMIT = 64 * 1024
RAW = (b"From: Alice <alice@sender.example>\r\nTo: support@project.dev\r\nSubject: Order 42 arrived\r\n"
       b"Message-ID: <order-42@sender.example>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
       b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe parcel is here. Caf\xc3\xa9.\r\n")


@pytest.fixture(scope="module")
def sns_host() -> Iterator[FakeSns]:
    with FakeSns() as fake:
        yield fake


@pytest.fixture
def settings(settings, s3_endpoint):
    """The conftest settings plus the webhook's: a secret, one topic, the loopback SNS host."""
    return settings.with_(ses_webhook_secret=SECRET, ses_sns_topic_arns=(TOPIC,), ses_sns_cert_hosts=("127.0.0.1",),
                          ses_s3_buckets=(BUCKET,), max_message_bytes=LIMIT, s3_endpoint=s3_endpoint)


@pytest.fixture
def sns_client(services, client, sns_host):
    """The API client, with the service's HTTPS getter trusting the loopback SNS's certificate."""
    services.ses_inbound.http_get = functools.partial(https_get, context=sns_host.client_context)
    sns_host.requests.clear()
    return client


@pytest.fixture
def signer(sns_host) -> SnsSigner:
    return SnsSigner(sns_host.cert_url)


@pytest.fixture
def hosting(services, tenant, dns):
    return hosted(services, tenant.token, dns, ready=False)


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    yield s3
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def post(client, doc: dict[str, Any] | bytes, secret: str | None = SECRET, content_type: str = "text/plain; "
         "charset=UTF-8"):
    """As SNS posts: JSON text with Content-Type text/plain, the secret in the subscription URL."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    query = f"?secret={secret}" if secret is not None else ""
    return client.post(f"/api/inbound/ses{query}", content=body, headers={"Content-Type": content_type})


def stored(services) -> tuple[int, int, int]:
    """(queue rows, messages, SNS message rows): what a refused request must leave at zero."""
    return count(services, inbound_queue), count(services, messages), count(services, sns_messages)


def rejections(services) -> list[dict[str, Any]]:
    return [e for e in audit_since(services, 0) if e["action"] == "inbound.ses_rejected"]


def received(signer: SnsSigner, clock, recipients: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    note = ses_received(recipients or [MAILBOX], clock.now(), **({"raw": RAW} | kwargs))
    return signer.sign(notification(note, clock.now()))


# -- received mail ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "encoding"), [("2", "BASE64"), ("1", "UTF8")])
def test_a_signed_notification_with_inline_content_is_delivered_and_readable(
        services, sns_client, signer, hosting, tenant, clock, version, encoding):
    doc = signer.sign(notification(ses_received([MAILBOX], clock.now(), RAW, encoding=encoding), clock.now()),
                      version)
    answer = post(sns_client, doc)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"queue_id": 0} == {"status": "accepted", "type": "Notification", "queue_id": 0,
                                              "message_id": doc["MessageId"], "accepted": 1, "refused": 0}
    services.inbound.process_due()
    [item] = sns_client.get("/api/messages", headers=tenant.headers).json()["items"]
    assert (item["subject"], item["mailbox"], item["from"]["address"]) == (
        "Order 42 arrived", MAILBOX, "alice@sender.example")
    message = sns_client.get(f"/api/messages/{item['id']}", headers=tenant.headers).json()
    assert "The parcel is here. Café." in message["text"]["content"]
    with services.infra.db.read() as conn:
        queued = conn.execute(select(inbound_queue)).one()._mapping
        row = conn.execute(select(sns_messages)).one()._mapping
    assert (queued["source"], queued["mail_from"], queued["client_ip"]) == ("ses", "alice@sender.example", None)
    assert (row["message_id"], row["status"], row["queue_id"]) == (doc["MessageId"], "done", queued["id"])
    [delivered] = [e for e in audit_since(services, 0) if e["action"] == "inbound.delivered"]
    assert (delivered["account_id"], delivered["interface"], delivered["mailbox"]) == (
        tenant.account["id"], "api", MAILBOX)


def test_an_s3_action_is_fetched_from_the_bucket_and_delivered(services, sns_client, signer, hosting, tenant,
                                                               clock, bucket):
    bucket.put_object(Bucket=BUCKET, Key="inbound/o3vrnil0e2ic28trm7dfhrc2v0", Body=RAW)
    doc = received(signer, clock, raw=None, s3=(BUCKET, "inbound/o3vrnil0e2ic28trm7dfhrc2v0"))
    answer = post(sns_client, doc)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    services.inbound.process_due()
    [item] = sns_client.get("/api/messages", headers=tenant.headers).json()["items"]
    assert item["subject"] == "Order 42 arrived"


def test_an_s3_action_naming_another_bucket_is_refused(services, sns_client, signer, hosting, clock, bucket):
    error = assert_error(post(sns_client, received(signer, clock, raw=None, s3=("litemx-blobs", "any"))), 403,
                         "forbidden")
    assert error["details"]["reason"] == "bucket_not_allowed"
    assert stored(services) == (0, 0, 0)
    assert rejections(services)[0]["actor_type"] == "system"


def test_a_missing_s3_object_answers_503_so_sns_retries_and_the_retry_delivers(
        services, sns_client, signer, hosting, clock, bucket):
    doc = received(signer, clock, raw=None, s3=(BUCKET, "inbound/later"))
    assert_error(post(sns_client, doc), 503, "unavailable")
    assert stored(services) == (0, 0, 0)  # the claim was released
    [event] = rejections(services)
    assert (event["outcome"], event["details"]["reason"], event["actor_type"]) == ("error", "s3_object_missing",
                                                                                   "system")
    bucket.put_object(Bucket=BUCKET, Key="inbound/later", Body=RAW)
    assert post(sns_client, doc).json()["status"] == "accepted"
    assert stored(services) == (1, 0, 1)


def test_a_stored_message_over_the_size_limit_is_refused_with_413(services, sns_client, signer, hosting, clock,
                                                                  bucket):
    bucket.put_object(Bucket=BUCKET, Key="big", Body=RAW + b"x" * LIMIT)
    assert_error(post(sns_client, received(signer, clock, raw=None, s3=(BUCKET, "big"))), 413, "payload_too_large")
    assert stored(services) == (0, 0, 0)


def test_refused_recipients_are_dropped_and_audited_like_the_mx_does(services, sns_client, signer, hosting,
                                                                     tenant, clock):
    doc = received(signer, clock, [MAILBOX, "nobody@project.dev", "x@elsewhere.example"])
    assert post(sns_client, doc).json() | {"queue_id": 0} == {
        "status": "accepted", "type": "Notification", "message_id": doc["MessageId"], "queue_id": 0,
        "accepted": 1, "refused": 2}
    refused = [(e["account_id"], e["resource_id"], e["details"]["reason"], e["outcome"])
               for e in audit_since(services, 0) if e["action"] == "inbound.rejected"]
    assert refused == [(tenant.account["id"], "nobody@project.dev", "unknown_user", "denied"),
                       (None, "x@elsewhere.example", "relay_denied", "denied")]
    everyone_refused = received(signer, clock, ["x@elsewhere.example"])
    assert post(sns_client, everyone_refused).json()["status"] == "rejected"
    assert count(services, inbound_queue) == 1


def test_a_redelivered_message_id_is_stored_once(services, sns_client, signer, hosting, tenant, clock):
    doc = received(signer, clock)
    first, again = post(sns_client, doc), post(sns_client, doc)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    assert again.json()["queue_id"] == first.json()["queue_id"]
    services.inbound.process_due()
    assert stored(services) == (1, 1, 1)


def test_a_claim_left_by_a_crash_is_taken_over_and_reuses_the_queued_mail(services, sns_client, signer, hosting,
                                                                         clock):
    doc = received(signer, clock)
    route = services.inbound.route_recipient(MAILBOX)
    with services.infra.db.write() as conn:  # a request that queued the mail, then died
        conn.execute(sns_messages.insert().values(message_id=doc["MessageId"], type="Notification", topic_arn=TOPIC,
                                                  status="processing", claimed_at=clock.now(), queue_id=None,
                                                  details={}))
    queue_id = services.inbound.accept(RAW, "alice@sender.example", [route], source="ses")
    assert_error(post(sns_client, doc), 503, "unavailable")  # a live claim: SNS retries later
    clock.advance(minutes=5)
    answer = post(sns_client, doc)
    assert (answer.json()["status"], answer.json()["queue_id"]) == ("accepted", queue_id)
    assert stored(services) == (1, 0, 1)


# -- subscriptions -----------------------------------------------------------------------------------
def test_a_subscription_confirmation_visits_the_subscribe_url_and_is_recorded(services, sns_client, signer,
                                                                              sns_host, clock):
    doc = signer.sign(confirmation("SubscriptionConfirmation", sns_host.base + "/", clock.now()))
    answer = post(sns_client, doc)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "confirmed" and answer.json()["subscription_arn"] == SUBSCRIPTION
    visited = [p for p in sns_host.requests if p.startswith("/?Action=ConfirmSubscription")]
    assert visited == [doc["SubscribeURL"].removeprefix(sns_host.base)]
    with services.infra.db.read() as conn:
        row = conn.execute(select(sns_messages)).one()._mapping
    assert (row["type"], row["topic_arn"], row["details"]["subscription_arn"]) == (
        "SubscriptionConfirmation", TOPIC, SUBSCRIPTION)
    [event] = [e for e in audit_since(services, 0) if e["action"] == "inbound.ses_subscription"]
    assert (event["account_id"], event["outcome"], event["resource_id"]) == (None, "ok", TOPIC)


def test_the_signing_certificate_is_fetched_once_and_cached(services, sns_client, signer, sns_host, hosting,
                                                            clock):
    for _ in range(3):
        assert post(sns_client, received(signer, clock)).status_code == 200
    assert sns_host.requests.count(sns_host.CERT_PATH) == 1


def test_an_unsubscribe_confirmation_is_audited_and_otherwise_ignored(services, sns_client, signer, sns_host,
                                                                      clock):
    doc = signer.sign(confirmation("UnsubscribeConfirmation", sns_host.base + "/", clock.now()))
    assert post(sns_client, doc).json()["status"] == "ignored"
    assert not [p for p in sns_host.requests if "Action=" in p]
    assert [e["action"] for e in audit_since(services, 0)] == ["inbound.ses_unsubscribe"]
    assert stored(services) == (0, 0, 0)


# -- bounces and complaints ------------------------------------------------------------------------
def test_signed_bounce_and_complaint_notifications_suppress_the_recipient(services, sns_client, signer, tenant,
                                                                          dns, clock):
    caller = hosted(services, tenant.token, dns)
    sent = services.sending.send_direct(caller, MAILBOX, ["bob@example.net", "carol@example.net"], subject="Hi")
    with services.infra.db.write() as conn:
        for delivery in sent["deliveries"]:
            sending_repo.update_delivery(conn, delivery["id"], {"status": "delivered", "provider_id": "0100-ses"})
    bounce = signer.sign(notification(ses_bounce("0100-ses", "bob@example.net", clock.now()), clock.now(),
                                      subject=None))
    complaint = signer.sign(notification(ses_complaint("0100-ses", "carol@example.net", clock.now()), clock.now()))
    assert post(sns_client, bounce).json()["matched"] == 1
    assert post(sns_client, complaint).json()["matched"] == 1
    assert post(sns_client, complaint).json()["status"] == "duplicate"
    listed = sns_client.get("/api/suppressions", headers=tenant.headers).json()["items"]
    assert sorted((s["address"], s["reason"]) for s in listed) == [("bob@example.net", "bounce"),
                                                                  ("carol@example.net", "complaint")]


# -- refusals ------------------------------------------------------------------------------------------
def _tampered(signer, clock, sns_host):
    doc = received(signer, clock)
    note = json.loads(doc["Message"])
    note["receipt"]["recipients"] = ["support@project.dev", "ceo@project.dev"]
    return {**doc, "Message": json.dumps(note)}


def _unsigned(signer, clock, sns_host):
    return {k: v for k, v in received(signer, clock).items() if k not in ("Signature", "SigningCertURL")}


def _stale(signer, clock, sns_host):
    doc = received(signer, clock)
    clock.advance(hours=1, seconds=1)
    return doc


REFUSALS = {
    "forged_signature": (_tampered, "bad_signature"),
    "unsigned": (_unsigned, "unsigned"),
    "signed_by_another_key": (lambda s, c, h: received(SnsSigner(h.cert_url, other_key()), c), "bad_signature"),
    "cert_on_a_foreign_host": (lambda s, c, h: received(SnsSigner("https://sns.evil.example/cert.pem"), c),
                               "cert_url_not_allowed"),
    "cert_over_http": (lambda s, c, h: received(SnsSigner(h.cert_url.replace("https:", "http:")), c),
                       "cert_url_not_https"),
    "cert_not_found": (lambda s, c, h: received(SnsSigner(h.base + "/other.pem"), c), "cert_url_unavailable"),
    "unknown_signature_version": (lambda s, c, h: s.sign(notification(
        ses_received([MAILBOX], c.now(), RAW), c.now()), "3"), "unsupported_signature_version"),
    "stale_timestamp": (_stale, "stale"),
    "topic_not_allowed": (lambda s, c, h: s.sign(notification(ses_received([MAILBOX], c.now(), RAW), c.now(),
                                                              topic=OTHER_TOPIC)), "topic_not_allowed"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_an_unverifiable_notification_is_refused_and_leaves_only_an_audit_row(
        services, sns_client, signer, sns_host, hosting, tenant, clock, case):
    build, reason = REFUSALS[case]
    error = assert_error(post(sns_client, build(signer, clock, sns_host)), 403, "forbidden")
    assert error["details"]["reason"] == reason
    assert stored(services) == (0, 0, 0)
    [event] = rejections(services)
    assert (event["outcome"], event["actor_type"], event["interface"], event["details"]["reason"]) == (
        "denied", "anonymous", "api", reason)
    assert event["account_id"] == tenant.account["id"]  # the recipient's domain names the account
    assert "Order 42" not in json.dumps(event, default=str)  # never the payload


@pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x"])
def test_a_missing_or_wrong_secret_is_refused_before_anything_is_fetched(services, sns_client, signer, sns_host,
                                                                         clock, secret):
    doc = received(signer, clock, ["someone@unhosted.example"])
    error = assert_error(post(sns_client, doc, secret=secret), 403, "forbidden")
    assert error["details"]["reason"] == "secret_mismatch"
    assert sns_host.requests == [] and stored(services) == (0, 0, 0)
    [event] = rejections(services)
    assert (event["account_id"], event["resource_id"], event["outcome"]) == (None, None, "denied")


def test_without_a_configured_secret_none_is_needed(services, sns_client, signer, hosting, clock):
    services.ses_inbound.policy = SnsPolicy("", (), ("127.0.0.1",), timedelta(hours=1))
    assert post(sns_client, received(signer, clock), secret=None).json()["status"] == "accepted"


def test_a_body_over_the_size_limit_is_413(services, sns_client):
    assert_error(post(sns_client, b"{" + b" " * (LIMIT * 2) + b"}"), 413, "payload_too_large")
    assert stored(services) == (0, 0, 0)


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"), (b"\xff\xfe{}", "body"), (b"[1, 2]", "body"), (b"[" * 50_000, "body"),
    (b'{"Type": "Surprise"}', "Type"), (b'{"Type": "Notification", "Message": 7}', "Message"),
    (b'{"Type": "Notification", "Message": "m", "Timestamp": "t", "TopicArn": "arn", "MessageId": "a\\u0000b"}',
     "MessageId"),
])
def test_malformed_bodies_answer_422_not_500(services, sns_client, body, field):
    error = assert_error(post(sns_client, body), 422, "invalid_request")
    assert error["details"]["field"] == field
    assert stored(services) == (0, 0, 0)
    assert [e["details"]["reason"] for e in rejections(services)] == ["invalid_request"]


def test_a_signed_message_that_is_not_an_ses_notification_is_422(services, sns_client, signer, clock):
    doc = signer.sign({**notification({}, clock.now()), "Message": "plain text someone published"})
    error = assert_error(post(sns_client, doc, content_type="application/json"), 422, "invalid_request")
    assert error["details"]["field"] == "Message"
    assert rejections(services)[0]["actor_type"] == "system"  # verified: it was SNS, just not for us


def test_ses_test_notifications_are_acknowledged_and_ignored(services, sns_client, signer, clock):
    doc = signer.sign(notification({"notificationType": "AmazonSnsSubscriptionSucceeded",
                                    "message": "You have successfully subscribed"}, clock.now()))
    assert post(sns_client, doc).json()["status"] == "ignored"
    assert stored(services) == (0, 0, 0)


# -- the pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "allowed"), [
    ("sns.us-east-1.amazonaws.com", True), ("SNS.eu-west-3.amazonaws.com", True),
    ("sns.cn-north-1.amazonaws.com.cn", True), ("sns.my-bucket.s3.amazonaws.com", False),
    ("sns.us-east-1.amazonaws.com.evil.example", False), ("evil.example", False), ("sqs.us-east-1.amazonaws.com", False),
])
def test_the_default_cert_hosts_are_sns_regional_endpoints_only(host, allowed):
    from litemx.settings import Settings

    assert sns.host_allowed(host, Settings().ses_sns_cert_hosts) is allowed


def test_the_canonical_string_follows_aws_documented_order():
    msg = sns.SnsMessage({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn", "Message": "hi\nthere",
                          "Timestamp": "2012-04-25T21:49:25.719Z", "Signature": "x", "SignatureVersion": "1",
                          "SigningCertURL": "u"})
    assert sns.canonical_string(msg) == (b"Message\nhi\nthere\nMessageId\nm-1\nTimestamp\n2012-04-25T21:49:25.719Z\n"
                                         b"TopicArn\narn\nType\nNotification\n")


def test_a_refusals_audit_details_carry_the_reason_and_never_the_payload(services, sns_client, clock):
    post(sns_client, b"{}", secret="nope")
    with services.infra.db.read() as conn:
        row = conn.execute(select(audit_events).where(audit_events.c.action == "inbound.ses_rejected")).one()
    assert row.details == {"reason": "secret_mismatch", "code": "forbidden"}
