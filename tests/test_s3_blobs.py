"""The S3 blob store (`LITEMX_BLOB_URL=s3://bucket/prefix` + `LITEMX_S3_ENDPOINT`) against moto's
S3-compatible server on a loopback port: the BlobStore contract, the whole inbound pipeline on
it, and retention deleting blobs there too."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from litemx.app import build_blob_store, build_services
from litemx.errors import InvalidRequest, Unavailable
from litemx.storage import messages_repo
from litemx.storage import s3 as s3_module
from litemx.storage.s3 import S3BlobStore, parse_s3_url
from tests.support.inbox import Mail
from tests.support.live import free_port
from tests.support.moto_s3 import s3_endpoint  # noqa: F401 - pytest fixture
from tests.support.retention_helpers import SUPPORT, T0, days, host, ingest

BUCKET = "litemx-test"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh, empty bucket and dummy credentials (moto accepts any)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _objects(client) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listed.get("Contents", [])}


def test_the_s3_store_keeps_the_content_addressed_contract(s3, s3_endpoint):
    store = S3BlobStore.from_url(f"s3://{BUCKET}/mail/blobs", s3_endpoint)
    data = b"raw message bytes \x00\xff"
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest() and store.put(data) == key
    assert _objects(s3) == {f"mail/blobs/{key[:2]}/{key[2:4]}/{key}"}
    assert store.get(key) == data and store.exists(key)
    assert store.delete(key) is True and store.delete(key) is False
    assert not store.exists(key)
    with pytest.raises(KeyError):
        store.get(key)
    with pytest.raises(KeyError):
        store.get("../../etc/passwd")


def test_the_s3_store_deletes_many_blobs_per_request(s3, s3_endpoint, monkeypatch):
    """DeleteObjects, DELETE_BATCH keys a request (1,000 on S3; 2 here), and no HEAD: a key
    already absent counts as removed (S3 does not tell the two apart); a malformed key is skipped."""
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)
    store = S3BlobStore.from_url(f"s3://{BUCKET}/mail/blobs", s3_endpoint)
    keys = [store.put(f"blob {i}".encode()) for i in range(5)]
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    assert store.delete_many(keys + ["0" * 64, "../not-a-key"]) == (6, {})
    assert _objects(s3) == set() and calls == ["DeleteObjects"] * 3


def test_a_dead_endpoint_deletes_nothing_and_raises(s3):
    nobody = f"http://127.0.0.1:{free_port()}"  # a closed loopback port
    dead = S3BlobStore(BUCKET, "", client=boto3.client("s3", endpoint_url=nobody,
                                                       config=Config(retries={"max_attempts": 1}, connect_timeout=1)))
    with pytest.raises(Unavailable):  # nothing reached the store: certain nothing went, so blob_refs may roll back
        dead.delete_many(["a" * 64, "b" * 64])


def _refuse_delete_objects(**_: object) -> None:
    raise ClientError({"Error": {"Code": "MissingContentMD5", "Message": "refused"}}, "DeleteObjects")


def _lose_the_answer(**_: object) -> None:
    raise ConnectionClosedError(endpoint_url="http://127.0.0.1")  # after the store carried it out


@pytest.mark.parametrize("failure", [("before-call", _refuse_delete_objects), ("after-call", _lose_the_answer)],
                         ids=["refused", "answer-lost"])
def test_a_failed_delete_objects_goes_one_key_at_a_time(s3, s3_endpoint, failure):
    """Some S3-compatible stores refuse DeleteObjects; and a request whose answer was lost may
    have been carried out. Either way the store finds out key by key what is still there, so the
    count is what this call removed and nothing is reported failed (no rollback with blobs gone)."""
    store = S3BlobStore.from_url(f"s3://{BUCKET}/mail/blobs", s3_endpoint)
    keys = [store.put(f"blob {i}".encode()) for i in range(3)]
    event, handler = failure
    calls: list[str] = []  # recorded at the first event of a call, before any failure
    store.client.meta.events.register("provide-client-params.s3", lambda model, **_: calls.append(model.name))
    store.client.meta.events.register(f"{event}.s3.DeleteObjects", handler)
    gone, failed = store.delete_many(keys)
    assert failed == {} and _objects(s3) == set()
    assert calls[0] == "DeleteObjects" and calls.count("HeadObject") == 3
    assert gone == (3 if event == "before-call" else 0)  # a lost answer's deletes were not ours to count


def test_a_lost_answer_then_a_dead_store_is_never_reported_as_nothing_deleted(s3, s3_endpoint):
    """DeleteObjects was carried out but its answer lost, and the store then stops answering:
    what went cannot be known, so this reports the keys failed rather than raise (a raise would
    roll back rows whose blobs are gone; the orphan sweep takes any that stayed)."""
    store = S3BlobStore.from_url(f"s3://{BUCKET}/mail/blobs", s3_endpoint)
    keys = [store.put(f"blob {i}".encode()) for i in range(3)]
    store.client.meta.events.register("after-call.s3.DeleteObjects", _lose_the_answer)

    def down(**_: object) -> None:
        raise EndpointConnectionError(endpoint_url=s3_endpoint)

    store.client.meta.events.register("before-call.s3.HeadObject", down)
    gone, failed = store.delete_many(keys)
    assert gone == 0 and set(failed) == set(keys) and _objects(s3) == set()


def test_the_s3_store_lists_the_keys_written_before_a_moment(s3, s3_endpoint):
    store = S3BlobStore.from_url(f"s3://{BUCKET}/mail/blobs", s3_endpoint)
    keys = {store.put(b"one"), store.put(b"two")}
    s3.put_object(Bucket=BUCKET, Key="mail/blobs/ab/cd/not-a-key", Body=b"x")  # never a candidate
    s3.put_object(Bucket=BUCKET, Key="elsewhere/" + next(iter(keys)), Body=b"x")  # outside the prefix
    now = datetime.now(timezone.utc)
    assert set(store.keys_written_before(now + timedelta(minutes=1))) == keys
    assert list(store.keys_written_before(now - timedelta(hours=1))) == []


def test_an_unreachable_or_missing_bucket_is_unavailable_not_a_crash(s3_endpoint, s3):
    with pytest.raises(Unavailable):
        S3BlobStore("no-such-bucket", "", s3_endpoint).put(b"x")
    nobody = f"http://127.0.0.1:{free_port()}"  # a closed loopback port
    dead = S3BlobStore(BUCKET, "", client=boto3.client("s3", endpoint_url=nobody,
                                                       config=Config(retries={"max_attempts": 1}, connect_timeout=1)))
    with pytest.raises(Unavailable):
        dead.get("a" * 64)


def test_blob_urls_are_parsed_and_chosen_by_scheme(settings, s3_endpoint, s3):
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(InvalidRequest):
        parse_s3_url("s3:///prefix")
    store = build_blob_store(settings.with_(blob_url=f"s3://{BUCKET}/p", s3_endpoint=s3_endpoint))
    assert isinstance(store, S3BlobStore) and store.prefix == "p"
    with pytest.raises(InvalidRequest):
        build_blob_store(settings.with_(blob_url="ftp://x"))


@pytest.fixture
def s3_services(settings, clock, s3_endpoint, s3):
    svc = build_services(settings.with_(blob_url=f"s3://{BUCKET}/litemx", s3_endpoint=s3_endpoint), clock=clock,
                         migrate=False)
    yield svc
    svc.close()


def test_mail_lands_in_s3_and_retention_deletes_it_there(s3_services, s3, tenant, clock):
    services = s3_services
    clock.current = T0
    acme = host(services, tenant.token)
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 4
    old = ingest(services, clock, T0, Mail(subject="Old", text="gone soon", to=SUPPORT,
                                           files=[("x.pdf", "application/pdf", pdf)]))[0]
    new = ingest(services, clock, T0 + days(50), Mail(subject="New", text="stays", to=SUPPORT))[0]
    stored = _objects(s3)
    assert len(stored) == 3  # two raw messages and one attachment

    result = services.retention.run(acme, T0 + days(70))

    assert result["counts"]["messages_cleaned"] == 1 and result["counts"]["blobs_deleted"] == 2
    left = _objects(s3)
    assert len(left) == 1
    with services.infra.db.read() as conn:
        kept = messages_repo.message_by_id(conn, new)
        gone = messages_repo.message_by_id(conn, old)
    assert left == {f"litemx/{kept['raw_key'][:2]}/{kept['raw_key'][2:4]}/{kept['raw_key']}"}
    assert gone["raw_key"] is None and gone["subject"] == "Old"
    assert b"Subject: New" in services.infra.blobs.get(kept["raw_key"])
