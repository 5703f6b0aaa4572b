"""The inbound worker stores a claimed batch in one transaction with a savepoint per message:
a message that fails is rolled back and deferred alone — nothing of it is stored, no audit
event claims it was delivered — while the rest of the batch is delivered and audited. The
batch's blobs are made durable together before that transaction, which drops the inline copies:
when they cannot be written, the whole batch stays pending with its bytes in its rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from litemx.service import inbound as inbound_module
from litemx.storage.schema import attachments, audit_events, inbound_queue, messages, threads
from tests.support.inbox import Mail

SUPPORT = "support@acme.example"


def _accept(services: Any, *mails: str | Mail) -> list[int]:
    """Accept each mail (a subject stands for a plain message with that subject)."""
    route = services.inbound.route_recipient(SUPPORT)
    return [services.inbound.accept((Mail(subject=m) if isinstance(m, str) else m).build(), "alice@sender.example",
                                    [route], client_ip="192.0.2.10", helo="client.example") for m in mails]


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

    def store_down(items: list[bytes]) -> list[str]:
        raise OSError("blob store unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(services.infra.blobs, "put_many", store_down)
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


MAILS = (Mail(subject="First"), Mail(subject="With a file", files=[("a.pdf", "application/pdf", b"%PDF-1 x")]),
         Mail(subject="Last"))


def test_a_batch_whose_blobs_cannot_be_written_stays_pending_with_its_bytes_and_is_delivered_later(
        api, services, monkeypatch) -> None:
    ids = _accept(services, *MAILS)
    originals = {i: bytes(r["raw"]) for i, r in _queue(services).items()}

    def store_down(items: list[bytes]) -> list[str]:
        raise OSError("blob store unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(services.infra.blobs, "put_many", store_down)
        assert services.inbound.process_due() == 3
    queue = _queue(services)
    assert all(queue[i]["status"] == "pending" and bytes(queue[i]["raw"]) == originals[i] for i in ids)
    assert all(queue[i]["last_error"] == "OSError: blob store unavailable" for i in ids)
    with services.infra.db.read() as conn:
        assert conn.execute(select(messages.c.id)).all() == []

    services.infra.clock.advance(minutes=5)
    assert services.inbound.process_due() == 3
    queue = _queue(services)
    assert all(queue[i]["status"] == "done" and queue[i]["raw"] is None for i in ids)
    assert all(services.infra.blobs.get(queue[i]["raw_key"]) == originals[i] for i in ids)
    with services.infra.db.read() as conn:
        (key,) = conn.execute(select(attachments.c.blob_key)).scalars()
    assert services.infra.blobs.get(key) == b"%PDF-1 x"


def test_rows_are_marked_done_only_after_their_blobs_and_attachments_are_durable(api, services,
                                                                                 monkeypatch) -> None:
    ids = _accept(services, *MAILS)
    durable: set[str] = set()
    real_put_many, real_finish = services.infra.blobs.put_many, inbound_module.inbound_repo.finish_done

    def put_many(items: list[bytes]) -> list[str]:
        keys = real_put_many(items)
        durable.update(keys)
        return keys

    def finish_done(conn: Any, queue_ids: list[int], at: Any) -> None:
        rows = conn.execute(select(inbound_queue.c.raw_key).where(inbound_queue.c.id.in_(queue_ids))).scalars()
        assert set(rows) <= durable
        files = conn.execute(select(attachments.c.blob_key).join(messages, messages.c.id == attachments.c.message_id)
                             .where(messages.c.queue_id.in_(queue_ids))).scalars()
        assert set(files) <= durable
        real_finish(conn, queue_ids, at)

    monkeypatch.setattr(services.infra.blobs, "put_many", put_many)
    monkeypatch.setattr(inbound_module.inbound_repo, "finish_done", finish_done)
    assert services.inbound.process_due() == 3
    assert all(r["status"] == "done" for r in _queue(services).values()) and len(ids) == 3


def test_one_message_whose_blob_cannot_be_written_is_deferred_alone(api, services, monkeypatch):
    """A blob store refusing one object (an S3 error) must not hold its batch neighbours back."""
    ids = _accept(services, Mail(subject="Good 1"),
                  Mail(subject="Refused", files=[("p.bin", "application/octet-stream", b"REFUSED-BLOB")]),
                  Mail(subject="Good 2"))
    real = services.infra.blobs.put_many

    def put_many(items: Any) -> Any:
        if b"REFUSED-BLOB" in items:
            raise OSError(27, "File too large")
        return real(items)

    monkeypatch.setattr(services.infra.blobs, "put_many", put_many)
    services.inbound.process_due()
    q = _queue(services)
    assert [q[i]["status"] for i in ids] == ["done", "pending", "done"]
    assert q[ids[1]]["raw"] is not None and "File too large" in q[ids[1]]["last_error"]


def test_a_failing_audit_event_is_rolled_back_with_its_message_alone(api, services, monkeypatch):
    """In the guarded pass each message's event and `done` are written inside its savepoint."""
    ids = _accept(services, Mail(subject="Good 1"), Mail(subject="Refused event"), Mail(subject="Good 2"))
    real_append, real_deliver = inbound_module.audit_repo.append_many, inbound_module.InboundService._deliver

    def deliver(self: Any, conn: Any, row: Any, target: Any, d: Any) -> Any:
        event = real_deliver(self, conn, row, target, d)
        if event is not None and d.parsed.subject == "Refused event":
            event["details"] = {**event["details"], "refuse": True}
        return event

    def append_many(conn: Any, events: Any) -> Any:
        if any(e["details"].get("refuse") for e in events):
            raise RuntimeError("event refused")
        return real_append(conn, events)

    monkeypatch.setattr(inbound_module.InboundService, "_deliver", deliver)
    monkeypatch.setattr(inbound_module.audit_repo, "append_many", append_many)
    services.inbound.process_due()
    q = _queue(services)
    assert [q[i]["status"] for i in ids] == ["done", "pending", "done"]
    subjects, _, _ = _stored(services)
    assert "Refused event" not in subjects


def test_a_row_another_worker_finished_meanwhile_is_not_delivered_twice(api, services, monkeypatch):
    """A lease can run out while a worker prepares its batch (a long DNS wait); another worker
    then leases and finishes the same row. The first worker's storing transaction re-reads
    which rows are still pending and leaves that one alone: its outcome stands."""
    ids = _accept(services, "Mine 1", "Taken over", "Mine 2")
    real = inbound_module.InboundService._write_blobs

    def write_blobs(self: Any, batch: Any) -> Any:
        written = real(self, batch)
        with services.infra.db.write() as conn:  # the other worker's commit, between the two steps
            inbound_module.inbound_repo.finish_done(conn, [ids[1]], services.infra.clock.now())
        return written

    monkeypatch.setattr(inbound_module.InboundService, "_write_blobs", write_blobs)
    services.inbound.process_due()
    subjects, _threads, delivered = _stored(services)
    assert subjects == ["Mine 1", "Mine 2"] and len(delivered) == 2
    assert all(r["status"] == "done" for r in _queue(services).values())


def test_a_batch_nobody_waits_for_is_stored_in_one_transaction(api, services, monkeypatch):
    """Each storing transaction ends in a commit (an fsync under the writer lock). While no
    other writer waits (SQLite's writer lock: Database.writer_contended) one transaction takes
    the whole batch; once one waits, it commits after STORE_MIN_MESSAGES and its short hold.
    PostgreSQL has no such lock and always keeps to the short hold."""
    monkeypatch.setattr(inbound_module, "STORE_ALONE_SECONDS", 60.0)  # never the bound here
    monkeypatch.setattr(inbound_module, "STORE_HOLD_SECONDS", 0.0)
    stored_per_transaction: list[int] = []
    real = inbound_module.InboundService._store_in

    def store_in(self: Any, conn: Any, batch: Any, next_pass: int, *, guarded: bool) -> Any:
        rest, leased = real(self, conn, batch, next_pass, guarded=guarded)
        stored_per_transaction.append(len(batch) - len(rest))
        return rest, leased

    monkeypatch.setattr(inbound_module.InboundService, "_store_in", store_in)
    _accept(services, *[f"Alone {i}" for i in range(10)])
    assert services.inbound.process_due() == 10
    alone = [10] if services.infra.db.dialect == "sqlite" else [4, 4, 2]
    assert stored_per_transaction == alone

    stored_per_transaction.clear()
    monkeypatch.setattr(services.infra.db, "writer_contended", lambda: True)  # an accept waits
    _accept(services, *[f"Waited for {i}" for i in range(10)])
    assert services.inbound.process_due() == 10
    assert stored_per_transaction == [4, 4, 2]
    assert len(_stored(services)[0]) == 20


def test_a_worker_pass_leases_the_next_one_in_its_last_storing_transaction(api, services, monkeypatch):
    """Two workers each leasing at the start of a pass waited for each other's storing and
    fell into step; the worker's pass leases the next pass's rows while it still holds the
    writer lock. Those rows are processed by the next call, and only once."""
    monkeypatch.setattr(inbound_module, "STORE_ALONE_SECONDS", 60.0)
    leases: list[str] = []
    real = inbound_module.inbound_repo.lease_due

    def lease_due(conn: Any, now: Any, lease: Any, limit: int) -> Any:
        rows = real(conn, now, lease, limit)
        leases.append(f"{len(rows)} of {limit}")
        return rows

    monkeypatch.setattr(inbound_module.inbound_repo, "lease_due", lease_due)
    ids = _accept(services, *[f"Pass {i}" for i in range(5)])
    assert services.inbound.process_due(2, lease_ahead=True) == 2
    assert leases == ["2 of 2", "2 of 2"]  # its own rows, then the next pass's (same transaction)
    queue = _queue(services)
    assert [queue[i]["status"] for i in ids] == ["done", "done", "pending", "pending", "pending"]
    assert queue[ids[2]]["next_attempt_at"] > services.infra.clock.now()  # leased: no other worker takes it
    assert services.inbound.process_due(2, lease_ahead=True) == 2
    assert services.inbound.process_due(2, lease_ahead=True) == 1
    assert services.inbound.process_due(2, lease_ahead=True) == 0
    assert leases == ["2 of 2", "2 of 2", "1 of 2", "0 of 2", "0 of 2"]
    subjects, _threads, delivered = _stored(services)
    assert subjects == [f"Pass {i}" for i in range(5)] and len(delivered) == 5


def test_rows_leased_ahead_are_given_back_when_the_service_closes(api, services):
    ids = _accept(services, "Stored", "Leased ahead")
    assert services.inbound.process_due(1, lease_ahead=True) == 1
    queue = _queue(services)
    assert queue[ids[1]]["next_attempt_at"] > services.infra.clock.now()
    services.inbound.close()
    queue = _queue(services)
    assert queue[ids[1]]["status"] == "pending" and queue[ids[1]]["attempts"] == 0
    assert queue[ids[1]]["next_attempt_at"] <= services.infra.clock.now()  # due again, for any worker


def test_a_pass_without_lease_ahead_leaves_nothing_leased(api, services):
    """simulate (in a front process) drives process_due itself: it must not leave rows leased
    in a process whose loop will not come back for them."""
    ids = _accept(services, "Simulated", "Waiting for the worker")
    assert services.inbound.process_due(1) == 1
    assert _queue(services)[ids[1]]["next_attempt_at"] <= services.infra.clock.now()


def test_mail_whose_part_type_has_raw_bytes_is_delivered(api, services):
    """Accepted with `250`, so it must be storable: a Content-Type with a raw 8-bit byte or a NUL
    once reached the attachment row as text the database refuses, and the row failed for ever."""
    from tests.test_mime import _CONTENT_TYPES_WITH_RAW_BYTES, _with_part_type

    route = services.inbound.route_recipient(SUPPORT)
    ids = [services.inbound.accept(_with_part_type(ctype), "alice@sender.example", [route]) for ctype in
           _CONTENT_TYPES_WITH_RAW_BYTES]
    while services.inbound.process_due():
        pass
    queue = _queue(services)
    assert [queue[i]["status"] for i in ids] == ["done"] * len(ids), [queue[i]["last_error"] for i in ids]
    with services.infra.db.read() as conn:
        assert conn.execute(select(attachments.c.content_type)).scalars().all() != []
