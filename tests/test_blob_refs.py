"""A shared blob is never deleted under a row about to reference it (service/blob_refs).

The store is content-addressed: the PDF an old message carried and the PDF a new message
carries are one blob. A retention run deleting the old message's copy must not delete the
blob while a writer that stored (or found) it has not committed its own reference yet —
whichever transaction runs first, the new row ends up pointing at bytes that exist.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from litemx.errors import Unavailable
from litemx.service import blob_refs
from litemx.service import inbound as inbound_module
from litemx.service.retention import ORPHAN_GRACE
from litemx.storage import retention_repo, sending_repo
from litemx.storage.blobs import content_key
from tests.support.inbox import Mail
from tests.support.retention_helpers import SUPPORT, T0, attachment_rows, blob_keys, days, host, ingest, row
from tests.support.sending import MAILBOX as SENDING_BOX
from tests.support.sending import hosted

PDF = b"%PDF-1.4 shared quarterly report " + bytes(range(256)) * 8
KEY = content_key(PDF)
LATER = T0 + days(70)  # the old message (60-day window) has expired by then


@pytest.fixture
def acme(services, tenant, clock):
    clock.current = T0
    return host(services, tenant.token)


def _old_message_with_the_pdf(services, clock) -> str:
    old = ingest(services, clock, T0, Mail(subject="Q3", text="report", to=SUPPORT, message_id="<old@sender.example>",
                                           files=[("report.pdf", "application/pdf", PDF)]))[0]
    assert KEY in blob_keys(services, old) and services.infra.blobs.exists(KEY)
    return old


def _hook_put_many(monkeypatch, services, on_pdf):
    """Call on_pdf() right after the blob store has stored a batch holding the PDF (once)."""
    blobs = services.infra.blobs
    original = blobs.put_many
    armed = [True]

    def put_many(items):
        keys = original(items)
        if armed[0] and PDF in items:
            armed[0] = False
            on_pdf()
        return keys

    monkeypatch.setattr(blobs, "put_many", put_many)


@pytest.mark.parametrize("claim_seconds", [1.0, 0.05])
def test_a_deleter_never_deletes_a_blob_a_writer_holds(services, acme, clock, monkeypatch, claim_seconds):
    """Writer first: a draft stores the PDF inside its transaction and has not committed; a
    retention run removing the old message's reference must not delete it — it waits for the
    draft's commit and then sees its reference, or (when the writer holds on longer than the
    deleter keeps trying) leaves the key alone."""
    monkeypatch.setattr(blob_refs, "CLAIM_SECONDS", claim_seconds)
    _old_message_with_the_pdf(services, clock)
    stored, go = threading.Event(), threading.Event()

    def pause_inside_the_draft_transaction():
        stored.set()
        assert go.wait(20)

    _hook_put_many(monkeypatch, services, pause_inside_the_draft_transaction)
    clock.current = LATER
    results: dict[str, object] = {}

    def create_draft():
        results["draft"] = services.drafts.create(acme, SUPPORT, to=["bob@example.net"], subject="fwd", attachments=[
            {"filename": "report.pdf", "content_type": "application/pdf",
             "content_base64": base64.b64encode(PDF).decode("ascii")}])

    _retention_while_writing(services, acme, create_draft, stored, go, results)
    assert services.infra.blobs.exists(KEY)
    with services.infra.db.read() as conn:
        files = sending_repo.draft_attachments_of(conn, [results["draft"]["id"]])[results["draft"]["id"]]
    assert [f["blob_key"] for f in files] == [KEY]
    assert services.infra.blobs.get(KEY) == PDF


def _retention_while_writing(services, acme, write, paused: threading.Event, go: threading.Event,
                             results: dict[str, object]) -> None:
    """Run `write` until it pauses (inside its transaction), start a retention run that expires
    the old copy, let the writer finish; both must end, and the run must have cleaned it."""
    writer = threading.Thread(target=write)
    writer.start()
    assert paused.wait(20)
    deleter = threading.Thread(target=lambda: results.update(run=services.retention.run(acme, LATER)))
    deleter.start()
    deleter.join(0.3)  # the run reaches its claim (PostgreSQL) or the write lock (SQLite) meanwhile
    go.set()
    writer.join(20)
    deleter.join(20)
    assert not writer.is_alive() and not deleter.is_alive()
    assert results["run"]["counts"]["messages_cleaned"] == 1


def test_inbound_holds_its_blobs_until_its_rows_commit(services, acme, clock, monkeypatch):
    """Writer first on the inbound path: the storing transaction has begun (and held the batch's
    keys) but not committed; a retention run dropping the old copy must leave the PDF."""
    old = _old_message_with_the_pdf(services, clock)
    storing, go = threading.Event(), threading.Event()
    real = inbound_module.InboundService._store

    def store(self, conn, row, d, done):
        storing.set()
        assert go.wait(20)
        return real(self, conn, row, d, done)

    monkeypatch.setattr(inbound_module.InboundService, "_store", store)
    results: dict[str, object] = {}
    _retention_while_writing(services, acme, lambda: results.update(new=ingest(
        services, clock, LATER, Mail(subject="Q4", text="again", to=SUPPORT,
                                     files=[("report.pdf", "application/pdf", PDF)]))), storing, go, results)
    assert [a["blob_key"] for a in attachment_rows(services, old)] == [None]
    assert [a["blob_key"] for a in attachment_rows(services, results["new"][0])] == [KEY]
    assert services.infra.blobs.get(KEY) == PDF


def test_inbound_puts_back_a_blob_deleted_before_its_transaction(services, acme, clock, monkeypatch):
    """Deleter first: inbound processing writes a batch's blobs before its storing
    transaction; a retention run that commits in between deletes the PDF (no committed row
    references it any more). The storing transaction puts it back before referencing it."""
    old = _old_message_with_the_pdf(services, clock)
    runs: list[dict] = []
    _hook_put_many(monkeypatch, services, lambda: runs.append(services.retention.run(acme, LATER)))

    new = ingest(services, clock, LATER, Mail(subject="Q4", text="report again", to=SUPPORT,
                                              files=[("report.pdf", "application/pdf", PDF)]))[0]

    assert runs and runs[0]["counts"]["messages_cleaned"] == 1  # the old copy went in between
    assert [a["blob_key"] for a in attachment_rows(services, old)] == [None]
    assert [a["blob_key"] for a in attachment_rows(services, new)] == [KEY]
    assert services.infra.blobs.get(KEY) == PDF


def _file(name: str, data: bytes) -> dict[str, str]:
    return {"filename": name, "content_type": "application/octet-stream",
            "content_base64": base64.b64encode(data).decode("ascii")}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite serialises the two edits
def test_two_draft_edits_swapping_their_files_both_succeed(services, acme, monkeypatch):
    """Each edit holds its new file and drops its old one, the other's new file: a deleter that
    waited for a holder would deadlock with the other edit (both hold, both wait)."""
    a, b = b"file A " + bytes(range(256)) * 4, b"file B " + bytes(range(256)) * 4
    x = services.drafts.create(acme, SUPPORT, to=["bob@example.net"], subject="x", attachments=[_file("a", a)])
    y = services.drafts.create(acme, SUPPORT, to=["bob@example.net"], subject="y", attachments=[_file("b", b)])
    both_stored = threading.Barrier(2, timeout=10)
    original = services.infra.blobs.put_many

    def put_many(items):  # each edit has held and stored its new file; only then may either delete
        keys = original(items)
        both_stored.wait()
        return keys

    monkeypatch.setattr(services.infra.blobs, "put_many", put_many)
    errors: list[BaseException] = []

    def edit(draft_id: str, name: str, data: bytes) -> None:
        try:
            services.drafts.update(acme, draft_id, {"attachments": [_file(name, data)]})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    edits = [threading.Thread(target=edit, args=(x["id"], "b", b)),
             threading.Thread(target=edit, args=(y["id"], "a", a))]
    for t in edits:
        t.start()
    for t in edits:
        t.join(30)
    assert errors == []
    assert services.infra.blobs.get(content_key(a)) == a and services.infra.blobs.get(content_key(b)) == b


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite takes no advisory locks
def test_a_transaction_holds_a_bounded_number_of_advisory_locks(services):
    """PostgreSQL's lock table is shared and small: however many blobs a batch references (a
    message may carry 999 attachments), one transaction takes at most BLOB_LOCK_BUCKETS locks."""
    keys = [content_key(str(i).encode()) for i in range(20_000)]
    with services.infra.db.write() as conn:
        retention_repo.hold_blob_keys(conn, keys)
        held = conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND pid = pg_backend_pid()").scalar()
        assert held == retention_repo.BLOB_LOCK_BUCKETS
        assert retention_repo.claim_blob_keys(conn, keys[:10]) == set(keys[:10])  # its own holds never stop it


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite: the write lock orders them
def test_sending_a_draft_holds_its_files_until_it_commits(services, tenant, clock, dns, monkeypatch):
    """Sending a draft moves its file's key from draft_attachments to the sent message's
    attachments: until that commits, no deleter may claim the key."""
    clock.current = T0
    caller = hosted(services, tenant.token, dns)
    draft = services.drafts.create(caller, SENDING_BOX, to=["bob@example.net"], subject="fwd",
                                   attachments=[_file("report.pdf", PDF)])
    ready, go = threading.Event(), threading.Event()
    real_release = sending_repo.release_draft_blobs

    def release(conn, draft_id):  # the send, about to commit
        real_release(conn, draft_id)
        ready.set()
        assert go.wait(20)

    monkeypatch.setattr(sending_repo, "release_draft_blobs", release)
    results: dict[str, object] = {}
    sender = threading.Thread(target=lambda: results.update(sent=services.sending.send_draft(caller, draft["id"])))
    sender.start()
    assert ready.wait(20)
    with services.infra.db.write() as conn:
        claimed_during = retention_repo.claim_blob_keys(conn, {KEY})
    go.set()
    sender.join(30)
    assert claimed_during == set() and "sent" in results
    with services.infra.db.write() as conn:
        assert retention_repo.claim_blob_keys(conn, {KEY}) == {KEY}  # released at its commit


def test_a_reference_check_is_one_statement(services):
    """Under READ COMMITTED each statement has its own snapshot: a reference moving between two
    tables while a check read them one by one would be seen in neither."""
    statements: list[str] = []
    with services.infra.db.write() as conn:
        event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        retention_repo.referenced_keys(conn, [KEY, content_key(b"other")])
    assert len(statements) == 1


def test_the_scheduled_run_sweeps_blobs_nothing_references_once_past_the_grace(services, acme, clock):
    """A writer that rolled back after storing its bytes leaves a blob no row references. The
    scheduled runs delete it once it is older than ORPHAN_GRACE on the real clock (each day's run
    looks at one sixteenth of the store); blobs rows reference stay, and nothing young goes."""
    kept = ingest(services, clock, datetime.now(UTC), Mail(subject="Q3", text="report", to=SUPPORT,
                                                           files=[("report.pdf", "application/pdf", PDF)]))[0]
    orphans = {services.infra.blobs.put(f"stored, then rolled back {i}".encode()) for i in range(6)}
    start = datetime.now(UTC)
    clock.current = start + ORPHAN_GRACE / 2
    assert services.retention.run_all()["instance"]["orphans_deleted"] == 0  # too young, whatever the shard
    swept = 0
    for day in range(16):
        clock.current = start + ORPHAN_GRACE + days(day + 1)
        swept += services.retention.run_all()["instance"]["orphans_deleted"]
    assert swept == len(orphans) and not any(services.infra.blobs.exists(k) for k in orphans)
    referenced = blob_keys(services, kept)
    assert len(referenced) == 2 and all(services.infra.blobs.exists(k) for k in referenced)


def test_the_scheduled_run_removes_temp_files_a_crash_left(services, acme):
    """A crash between a blob's write and its rename leaves `.tmp-*` in a fan-out directory:
    the day's sweep removes those older than ORPHAN_GRACE, and never a write in progress (a
    young temp file) or a blob."""
    store = services.infra.blobs
    key = store.put(b"a blob beside the temp files")
    directory = os.path.dirname(store._file(key))
    stale, young = (os.path.join(directory, f".tmp-{name}") for name in ("crashed", "writing"))
    stray = os.path.join(directory, "not-a-temp-file")  # never the sweep's: only .tmp-* are
    for path in (stale, young, stray):
        with open(path, "wb") as f:
            f.write(b"half a blob")
    now = next(t for t in (datetime.now(UTC) + days(d) for d in range(16))
               if f"{t.toordinal() % 16:x}" == key[0])  # the day whose sixteenth holds the directory
    for path, age in ((stale, ORPHAN_GRACE * 2), (stray, ORPHAN_GRACE * 2), (young, ORPHAN_GRACE / 2),
                      (store._file(key), ORPHAN_GRACE / 2)):
        os.utime(path, ((now - age).timestamp(),) * 2)
    services.infra.clock.current = now
    assert services.retention.run_all()["instance"]["temp_files_removed"] == 1
    assert not os.path.exists(stale) and os.path.exists(young) and os.path.exists(stray) and store.get(key)


def _age(services, key: str, by: timedelta) -> None:
    old = (datetime.now(UTC) - by).timestamp()
    os.utime(services.infra.blobs._file(key), (old, old))


def test_a_large_message_whose_bytes_were_seen_before_keeps_its_blob(services, acme, clock, monkeypatch):
    """SES (or simulate) hands over the same bytes again: an earlier attempt stored the large
    raw blob and its queue row never committed, so it is an old orphan. Accepting it again finds
    the blob there; a sweep running before the queue row commits must not leave the acknowledged
    message without its bytes."""
    raw = Mail(subject="big", text="x" * 400_000, to=SUPPORT, message_id="<big@ses.example>").build()
    key = services.infra.blobs.put(raw)  # attempt 1: the blob, and no queue row
    _age(services, key, ORPHAN_GRACE * 2)
    clock.current = datetime.now(UTC) + days(16)  # the sweep's shard of the day: whichever, see below
    original = services.inbound._queue_rows.add

    def add_after_a_sweep(row):
        for day in range(16):  # every shard: the key's own is among them
            clock.current = datetime.now(UTC) + days(day)
            services.retention.run_all()
        return original(row)

    monkeypatch.setattr(services.inbound._queue_rows, "add", add_after_a_sweep)
    services.inbound.accept(raw, "alice@sender.example", [services.inbound.route_recipient(SUPPORT)], source="ses")
    assert services.infra.blobs.get(key) == raw


def test_the_file_walk_skips_what_another_run_deletes_meanwhile(services):
    store = services.infra.blobs
    keys = sorted(store.put(f"blob {i}".encode()) for i in range(3))
    for key in keys:
        _age(services, key, ORPHAN_GRACE * 2)
    walk = store.keys_written_before(datetime.now(UTC) - ORPHAN_GRACE)
    first = next(walk)
    for key in set(keys) - {first}:
        store.delete(key)
    assert list(walk) == []


def _undeletable(services, key: str) -> str:
    """A directory where the blob's file was: unlink fails on it (IsADirectoryError), root or not."""
    path = services.infra.blobs._file(key)
    os.unlink(path)
    os.mkdir(path)
    return path


def test_a_blob_that_cannot_be_deleted_stays_and_the_others_go(services, acme, clock, caplog):
    """Retention removed the rows: a blob the store fails to delete is logged and stays (space,
    not data), the others go, and the batch commits (rolling back would restore rows pointing at
    blobs already deleted)."""
    old = _old_message_with_the_pdf(services, clock)
    raw_key = (blob_keys(services, old) - {KEY}).pop()
    path = _undeletable(services, raw_key)
    clock.current = LATER
    with caplog.at_level(logging.WARNING, logger="litemx.blobs"):
        counts = services.retention.run_all()["accounts"][acme.principal.account_id]
    assert counts["messages_cleaned"] == 1 and counts["blobs_deleted"] == 1
    assert not services.infra.blobs.exists(KEY) and os.path.isdir(path)
    assert row(services, old)["raw_key"] is None
    assert "could not delete 1 of 2 blob(s)" in caplog.text and raw_key in caplog.text


def test_when_no_blob_can_be_deleted_the_batch_changes_nothing(services, acme, clock):
    """Every delete failed, so nothing is gone yet: the run fails (Unavailable) and rolls back,
    and the next run, once the store works again, does the job."""
    old = _old_message_with_the_pdf(services, clock)
    keys = blob_keys(services, old)
    paths = [_undeletable(services, key) for key in keys]
    clock.current = LATER
    with pytest.raises(Unavailable):
        services.retention.run_all()
    assert row(services, old)["raw_key"] in keys and blob_keys(services, old) == keys
    for path in paths:
        os.rmdir(path)
    counts = services.retention.run_all()["accounts"][acme.principal.account_id]
    assert counts["messages_cleaned"] == 1 and counts["blobs_deleted"] == 0  # their files were already gone
    assert blob_keys(services, old) == set()
