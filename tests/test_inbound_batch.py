"""The inbound worker stores a claimed batch in one transaction with a savepoint per message:
a message that fails is rolled back and deferred alone — nothing of it is stored, no audit
event claims it was delivered — while the rest of the batch is delivered and audited."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from litemx.service import inbound as inbound_module
from litemx.storage.schema import audit_events, inbound_queue, messages, threads
from tests.support.api import Api
from tests.support.inbox import Mail, hosted

SUPPORT = "support@acme.example"


@pytest.fixture
def api(client, tenant) -> Api:
    a = Api(client, tenant.token)
    hosted(a)
    return a


def _accept(services: Any, *subjects: str) -> list[int]:
    route = services.inbound.route_recipient(SUPPORT)
    return [services.inbound.accept(Mail(subject=s).build(), "alice@sender.example", [route],
                                    client_ip="192.0.2.10", helo="client.example") for s in subjects]


def _queue(services: Any) -> dict[int, dict[str, Any]]:
    with services.infra.db.read() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(inbound_queue)).mappings()}


def _stored(services: Any) -> tuple[list[str], list[str], list[str]]:
    """Subjects of the stored messages, of the threads, and the delivered events' message ids."""
    with services.infra.db.read() as conn:
        subjects = sorted(conn.execute(select(messages.c.subject)).scalars())
        thread_subjects = sorted(conn.execute(select(threads.c.subject)).scalars())
        delivered = list(conn.execute(select(audit_events.c.resource_id)
                                      .where(audit_events.c.action == "inbound.delivered")).scalars())
        ids = sorted(conn.execute(select(messages.c.id)).scalars())
    assert sorted(delivered) == ids
    return subjects, thread_subjects, delivered


def test_a_message_that_fails_to_store_is_deferred_alone_and_the_batch_is_delivered(api, services, monkeypatch):
    first, poison, last = _accept(services, "First", "Poison", "Last")
    real = inbound_module.messages_repo.add_message

    def add_message(conn: Any, values: dict[str, Any]) -> int:
        seq = real(conn, values)  # written, then refused: the savepoint must undo it
        if values["subject"] == "Poison":
            raise RuntimeError("constraint violated")
        return seq

    monkeypatch.setattr(inbound_module.messages_repo, "add_message", add_message)
    assert services.inbound.process_due() == 3
    subjects, thread_subjects, delivered = _stored(services)
    assert subjects == ["First", "Last"] and thread_subjects == ["First", "Last"] and len(delivered) == 2
    queue = _queue(services)
    assert (queue[first]["status"], queue[last]["status"]) == ("done", "done")
    assert queue[poison]["status"] == "pending" and queue[poison]["attempts"] == 1
    assert queue[poison]["last_error"] == "RuntimeError: constraint violated"
    assert queue[poison]["next_attempt_at"] > services.infra.clock.now()


def _lose_bytes(services: Any, queue_id: int) -> None:
    """The row's bytes are gone from its row and from the blob store."""
    with services.infra.db.write() as conn:
        conn.execute(inbound_queue.update().where(inbound_queue.c.id == queue_id).values(raw=None))
    services.infra.blobs.delete(_queue(services)[queue_id]["raw_key"])


def test_a_message_that_cannot_be_prepared_is_deferred_and_the_others_are_delivered(api, services):
    first, lost = _accept(services, "First", "Lost")
    _lose_bytes(services, lost)
    assert services.inbound.process_due() == 2
    assert _stored(services)[0] == ["First"]
    queue = _queue(services)
    assert queue[first]["status"] == "done"
    assert queue[lost]["status"] == "pending" and queue[lost]["last_error"].startswith("KeyError")


def test_a_small_message_waits_in_its_queue_row_until_the_worker_has_written_its_blob(api, services,
                                                                                      monkeypatch):
    (queued,) = _accept(services, "Inline")
    row = _queue(services)[queued]
    original = bytes(row["raw"])
    assert not services.infra.blobs.exists(row["raw_key"])

    def store_down(data: bytes) -> str:
        raise OSError("blob store unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(services.infra.blobs, "put", store_down)
        assert services.inbound.process_due() == 1
    row = _queue(services)[queued]
    # Nothing stored, nothing lost: the bytes are still in the row for the next attempt.
    assert row["status"] == "pending" and row["raw"] is not None and row["last_error"].startswith("OSError")
    assert _stored(services)[0] == []

    services.infra.clock.advance(minutes=5)
    assert services.inbound.process_due() == 1
    row = _queue(services)[queued]
    assert row["status"] == "done" and row["raw"] is None
    assert services.infra.blobs.get(row["raw_key"]) == original
    assert _stored(services)[0] == ["Inline"]
