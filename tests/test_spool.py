"""The accept spool (storage/spool.py, service/inbound_spool.py): a record is acknowledged only
once synced; every acknowledged record reaches the queue exactly once, also when an import is
cut off between its commit and its bookkeeping; a torn tail is never imported; a segment is
deleted only once its writer has let go of it and everything in it is stored."""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select

from litemx.app import Services
from litemx.service import inbound_spool
from litemx.service.inbound_spool import SpoolImport, spool_directory
from litemx.storage import spool
from litemx.storage.schema import inbound_queue
from litemx.storage.spool import SpoolWriter, import_spool
from tests.support.smtp import host_project, live_mx, message


class Stored:
    """A store callback that keeps what it is given (and can fail once, after storing)."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.calls: list[bool] = []
        self.fail_after_store = False

    def __call__(self, payloads: list[bytes], maybe_stored: bool) -> int:
        self.calls.append(maybe_stored)
        new = [p for p in payloads if not (maybe_stored and p in self.records)]
        self.records += new
        if self.fail_after_store:
            self.fail_after_store = False
            raise spool.StoreUnavailable("crashed after the commit")
        return len(new)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{spool.SUFFIX}"))


async def _append_all(writer: SpoolWriter, payloads: list[bytes]) -> list[str]:
    return list(await asyncio.gather(*(writer.append(p) for p in payloads)))


def test_concurrent_appends_are_acknowledged_and_imported_once_in_order(tmp_path: Path):
    payloads = [f"message {i}".encode() * (i + 1) for i in range(50)]

    async def scenario() -> list[str]:
        writer = SpoolWriter(tmp_path)
        refs = await _append_all(writer, payloads)
        stored = Stored()
        # The writer still holds its segment: imported, but kept for what comes next.
        assert import_spool(tmp_path, stored) == 50 and stored.records == payloads
        assert len(_segments(tmp_path)) == 1
        assert import_spool(tmp_path, stored) == 0 and stored.calls == [False]
        await writer.close()
        assert import_spool(tmp_path, stored) == 0  # sealed and fully stored: deleted
        return refs

    refs = asyncio.run(scenario())
    assert len(set(refs)) == 50
    assert not list(tmp_path.iterdir())


def test_a_writer_starts_new_segments_past_the_size_and_all_of_them_are_imported(tmp_path: Path):
    payloads = [os.urandom(700) for _ in range(40)]

    async def scenario() -> None:
        writer = SpoolWriter(tmp_path, segment_bytes=4096)
        for chunk in range(0, 40, 8):
            await _append_all(writer, payloads[chunk:chunk + 8])
        assert len(_segments(tmp_path)) > 3
        await writer.close()

    asyncio.run(scenario())
    stored = Stored()
    assert import_spool(tmp_path, stored, batch_bytes=2000) == 40
    assert stored.records == payloads
    assert not list(tmp_path.iterdir())


def test_a_torn_tail_is_never_imported_and_its_sealed_segment_goes(tmp_path: Path, caplog):
    async def scenario() -> None:
        writer = SpoolWriter(tmp_path)
        await _append_all(writer, [b"one", b"two"])
        await writer.close()

    asyncio.run(scenario())
    (segment,) = _segments(tmp_path)
    with segment.open("ab") as torn:  # a crash in the middle of appending a third record
        torn.write(spool.frame(b"three, never acknowledged")[:-5])
    stored = Stored()
    with caplog.at_level(logging.WARNING, "litemx.spool"):
        assert import_spool(tmp_path, stored) == 2
    assert stored.records == [b"one", b"two"]
    assert "incomplete record" in caplog.text
    assert not list(tmp_path.iterdir())


def test_an_import_cut_off_after_its_commit_is_not_stored_twice(tmp_path: Path):
    async def scenario() -> None:
        writer = SpoolWriter(tmp_path)
        await _append_all(writer, [b"a", b"b", b"c"])
        await writer.close()

    asyncio.run(scenario())
    stored = Stored()
    stored.fail_after_store = True  # committed, then died before recording it
    with pytest.raises(spool.ImportIncomplete):
        import_spool(tmp_path, stored)
    assert import_spool(tmp_path, stored) == 0
    assert stored.records == [b"a", b"b", b"c"] and stored.calls == [False, True]
    assert not list(tmp_path.iterdir())


def test_a_segment_being_created_or_imported_elsewhere_is_left_alone(tmp_path: Path):
    async def scenario() -> None:
        writer = SpoolWriter(tmp_path)
        await writer.append(b"x")
        (segment,) = _segments(tmp_path)
        state = os.open(segment.with_suffix(".state"), os.O_RDWR | os.O_CREAT)
        try:
            import fcntl

            fcntl.flock(state, fcntl.LOCK_EX)  # another importer is at work on it
            assert import_spool(tmp_path, Stored()) == 0
        finally:
            os.close(state)
        await writer.close()

    asyncio.run(scenario())
    assert import_spool(tmp_path, Stored()) == 1


def test_a_failed_sync_fails_its_records_and_the_next_ones_go_to_a_fresh_segment(tmp_path: Path, monkeypatch):
    def disk_error(fds: list[int]) -> None:
        raise OSError(5, "Input/output error")

    async def scenario() -> None:
        writer = SpoolWriter(tmp_path)
        with monkeypatch.context() as patch:
            patch.setattr(spool, "_fdatasync_all", disk_error)
            with pytest.raises(spool.SpoolError):
                await writer.append(b"not acknowledged")
        await writer.append(b"acknowledged")
        assert len(_segments(tmp_path)) == 2  # nothing is appended after a failed sync
        await writer.close()

    asyncio.run(scenario())
    stored = Stored()
    import_spool(tmp_path, stored)
    # The failed record may still be readable; it was never acknowledged, so storing it is at
    # worst the duplicate RFC 1047 allows, never a loss.
    assert stored.records[-1] == b"acknowledged"
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the inbound side


@pytest.mark.parametrize("backend", ["sqlite"])
def test_spooled_accepts_become_the_same_queue_rows_as_direct_ones_exactly_once(services: Services, tenant):
    host_project(services, tenant.token)
    inbound = services.inbound
    directory = spool_directory(services.infra.db)
    assert directory is not None
    route = inbound.route_recipient("support@project.dev")
    raws = [message(f"spooled {i}") for i in range(3)]

    async def accept_all() -> list[int | str]:
        inbound.spool = SpoolWriter(directory)
        try:
            return [await inbound.accept_async(raw, "alice@sender.example", [route], client_ip="192.0.2.1",
                                               helo="client.example") for raw in raws]
        finally:
            await inbound.spool.close()
            inbound.spool = None

    refs = asyncio.run(accept_all())
    assert all(isinstance(ref, str) for ref in refs)
    importer = SpoolImport(services.infra.db, directory)
    assert importer.run() == 3
    # A repeated import of rows already committed (a crash before `done`) adds nothing.
    rows = [inbound_spool.encode(r) for r in _queue_rows(services)]
    assert importer._store(rows, True) == 0
    queued = _queue_rows(services)
    assert [r["raw"] for r in queued] == raws
    assert {(r["mail_from"], r["client_ip"], r["helo"], r["status"]) for r in queued} == {
        ("alice@sender.example", "192.0.2.1", "client.example", "pending")}
    assert queued[0]["recipients"] == [{"rcpt": "support@project.dev", "mailbox_id": route.mailboxes[0]["id"]}]
    assert inbound.process_due() == 3


def _queue_rows(services: Services) -> list[dict]:
    with services.infra.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(inbound_queue).order_by(inbound_queue.c.id))]


def test_a_postgresql_database_has_no_spool(services: Services, backend: str):
    assert (spool_directory(services.infra.db) is None) == (backend == "postgresql")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_spool_that_cannot_be_written_answers_451_and_the_session_goes_on(services: Services, tenant,
                                                                             tmp_path: Path):
    host_project(services, tenant.token)
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")
    directory = spool_directory(services.infra.db)
    assert directory is not None
    with live_mx(services, worker=False) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        services.inbound.spool = SpoolWriter(blocked)
        try:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("alice@sender.example", ["support@project.dev"], message("First try"))
            services.inbound.spool = SpoolWriter(directory)
            client.sendmail("alice@sender.example", ["support@project.dev"], message("Second try"))
            asyncio.run_coroutine_threadsafe(services.inbound.spool.close(), mx.loop).result(10)
        finally:
            services.inbound.spool = None
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        451, b"4.3.0 Temporary local problem, please try again later")
    assert SpoolImport(services.infra.db, directory).run() == 1
    assert [mime_subject(r["raw"]) for r in _queue_rows(services)] == ["Second try"]


def mime_subject(raw: bytes) -> str:
    return message_from_bytes(raw)["Subject"]


# --------------------------------------------------------------------------- failures


def test_a_record_appended_while_a_failing_sync_runs_is_never_acknowledged(tmp_path: Path, monkeypatch):
    """Linux reports a writeback error once per open file: the fdatasync after a failed one may
    return 0 although the pages before it were lost, so a record appended during the failing
    round must fail too, and later ones go to a fresh segment."""
    real_sync = spool._fdatasync_all
    syncs: list[int] = []

    def first_sync_fails_slowly(fds: list[int]) -> None:
        syncs.append(len(fds))
        if len(syncs) == 1:
            import time

            time.sleep(0.3)
            raise OSError(5, "Input/output error")
        real_sync(fds)

    monkeypatch.setattr(spool, "_fdatasync_all", first_sync_fails_slowly)

    async def scenario() -> list[str]:
        writer = SpoolWriter(tmp_path)

        async def during_the_failing_sync() -> str:
            await asyncio.sleep(0.05)
            return await writer.append(b"appended meanwhile")

        results = await asyncio.gather(writer.append(b"first"), during_the_failing_sync(), return_exceptions=True)
        assert all(isinstance(r, spool.SpoolError) for r in results), results
        ref = await writer.append(b"after")
        await writer.close()
        return [ref]

    (ref,) = asyncio.run(scenario())
    first, fresh = _segments(tmp_path)
    assert ref.startswith(fresh.stem)
    stored = Stored()
    import_spool(tmp_path, stored)
    assert stored.records[-1] == b"after"


def _sealed_segment(directory: Path, payloads: list[bytes]) -> Path:
    _sealed_segment_in(directory, payloads)
    (segment,) = _segments(directory)
    return segment


@pytest.mark.parametrize("tail", [spool.frame(b"cut short")[:5], spool.frame(b"cut short")[:-3]])
def test_a_torn_tail_is_dropped(tmp_path: Path, tail: bytes):
    segment = _sealed_segment(tmp_path, [b"one"])
    with segment.open("ab") as file:
        file.write(tail)
    stored = Stored()
    assert import_spool(tmp_path, stored) == 1
    assert not list(tmp_path.iterdir())


def _zero(segment: Path, offset: int, length: int) -> None:
    fd = os.open(segment, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\0" * length, offset)
    finally:
        os.close(fd)


@pytest.mark.parametrize("damage", ["bad checksum", "lost pages", "bytes after a torn record"])
def test_a_damaged_segment_is_kept_aside_never_deleted(tmp_path: Path, caplog, damage: str):
    segment = _sealed_segment(tmp_path, [b"one", b"two", b"three"])
    second = len(spool.frame(b"one"))
    if damage == "bad checksum":
        _zero(segment, second + spool._HEADER.size, 3)  # a whole record, its payload not as written
    elif damage == "lost pages":
        _zero(segment, 0, second + 5)  # the pages of the first records never reached the disk
    else:
        with segment.open("ab") as file:
            file.write(spool.frame(b"cut short")[:-3] + spool.frame(b"more"))
    stored = Stored()
    with caplog.at_level(logging.ERROR, "litemx.spool"):
        import_spool(tmp_path, stored)
    assert "is damaged" in caplog.text
    assert _segments(tmp_path) == []
    kept = tmp_path / spool.DAMAGED / segment.name
    assert kept.read_bytes() and kept.with_suffix(".state").exists()
    # The good records before the damage are imported; the rest waits in damaged/.
    assert stored.records == {"bad checksum": [b"one"], "lost pages": [],
                              "bytes after a torn record": [b"one", b"two", b"three"]}[damage]


def _segments_of(directory: Path, batches: list[list[bytes]]) -> None:
    for payloads in batches:  # one writer each: one segment each, as several fronts
        _sealed_segment_in(directory, payloads)


def _sealed_segment_in(directory: Path, payloads: list[bytes]) -> None:
    async def write() -> None:
        writer = SpoolWriter(directory)
        await _append_all(writer, payloads)
        await writer.close()

    asyncio.run(write())


class Picky(Stored):
    """Refuses every batch holding POISON (with `error`), and can be down altogether."""

    def __init__(self, error: type[Exception]) -> None:
        super().__init__()
        self.error = error
        self.down = False

    def __call__(self, payloads: list[bytes], maybe_stored: bool) -> int:
        if self.down:
            raise spool.StoreUnavailable("database is locked")
        if b"POISON" in payloads:
            raise self.error("cannot take this row")
        return super().__call__(payloads, maybe_stored)


@pytest.mark.parametrize("error", [spool.RecordRejected, ValueError])
def test_a_poison_record_goes_to_dead_and_the_rest_is_imported(tmp_path: Path, caplog, error: type[Exception]):
    _segments_of(tmp_path, [[b"ok-1", b"POISON", b"ok-2"], [b"ok-3"]])
    stored = Picky(error)
    with caplog.at_level(logging.ERROR, "litemx.spool"):
        assert import_spool(tmp_path, stored) == 3
    assert sorted(stored.records) == [b"ok-1", b"ok-2", b"ok-3"]
    (dead,) = (tmp_path / spool.DEAD).iterdir()
    assert dead.read_bytes() == b"POISON"
    assert "cannot take this row" in caplog.text and str(dead) in caplog.text
    assert _segments(tmp_path) == []


def test_a_poison_record_alone_in_its_batch_goes_to_dead_when_the_store_works(tmp_path: Path):
    _segments_of(tmp_path, [[b"POISON"]])
    stored = Picky(ValueError)
    assert import_spool(tmp_path, stored) == 0
    assert [p.read_bytes() for p in (tmp_path / spool.DEAD).iterdir()] == [b"POISON"]


def test_a_failing_database_loses_nothing_and_the_records_are_imported_later(tmp_path: Path):
    _segments_of(tmp_path, [[b"ok-1", b"ok-2"], [b"ok-3"]])
    stored = Picky(ValueError)
    stored.down = True
    for _ in range(2):
        with pytest.raises(spool.ImportIncomplete) as failed:
            import_spool(tmp_path, stored)
        assert failed.value.stored == 0 and isinstance(failed.value.__cause__, spool.StoreUnavailable)
    assert len(_segments(tmp_path)) == 2 and not (tmp_path / spool.DEAD).exists()
    stored.down = False
    assert import_spool(tmp_path, stored) == 3
    assert sorted(stored.records) == [b"ok-1", b"ok-2", b"ok-3"]


def test_an_unknown_error_for_every_record_is_the_store_failing_not_poison(tmp_path: Path):
    _segments_of(tmp_path, [[b"ok-1", b"ok-2"]])

    def broken(payloads: list[bytes], maybe_stored: bool) -> int:
        raise RuntimeError("no connection")

    with pytest.raises(spool.ImportIncomplete):
        import_spool(tmp_path, broken)
    assert not (tmp_path / spool.DEAD).exists()
    stored = Stored()
    assert import_spool(tmp_path, stored) == 2


def test_a_failing_segment_does_not_keep_the_others_out(tmp_path: Path, monkeypatch):
    _segments_of(tmp_path, [[b"first"], [b"second"]])
    first = _segments(tmp_path)[0]
    real_import = spool._import_segment

    def unreadable_first(path: Path, store: spool.StoreRecords, batch_bytes: int) -> int:
        if path == first:
            raise PermissionError(13, "Permission denied")
        return real_import(path, store, batch_bytes)

    monkeypatch.setattr(spool, "_import_segment", unreadable_first)
    stored = Stored()
    with pytest.raises(spool.ImportIncomplete) as failed:
        import_spool(tmp_path, stored)
    assert failed.value.stored == 1 and stored.records == [b"second"]
    assert _segments(tmp_path) == [first]


# --------------------------------------------------------------------------- sealing, backlog


def test_an_idle_or_old_segment_is_sealed_so_it_is_imported_and_deleted(tmp_path: Path):
    async def scenario() -> None:
        writer = SpoolWriter(tmp_path, idle_seconds=0.2, age_seconds=0.5)
        await writer.append(b"then quiet")
        await asyncio.sleep(0.4)  # idle: sealed
        assert import_spool(tmp_path, Stored()) == 1 and _segments(tmp_path) == []
        await writer.close()
        writer = SpoolWriter(tmp_path, idle_seconds=60, age_seconds=0.3)
        first = (await writer.append(b"busy 0")).split(":")[0]
        for i in range(1, 6):  # never idle for long, but old: sealed all the same
            await asyncio.sleep(0.1)
            await writer.append(b"busy %d" % i)
        stored = Stored()
        assert import_spool(tmp_path, stored) == 6
        assert first not in [s.stem for s in _segments(tmp_path)]  # the old one was imported and deleted
        await writer.close()

    asyncio.run(scenario())


def test_a_front_answers_451_once_the_unimported_backlog_is_over_its_bound(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(spool, "BACKLOG_STAT_SECONDS", 0.0)

    async def scenario() -> None:
        writer = SpoolWriter(tmp_path, max_backlog=3000)
        for _ in range(3):
            await writer.append(os.urandom(1000))
        with pytest.raises(spool.SpoolError, match="backlog"):
            await writer.append(b"one too many")
        assert import_spool(tmp_path, Stored()) == 3
        await writer.close()
        assert import_spool(tmp_path, Stored()) == 0 and _segments(tmp_path) == []
        writer = SpoolWriter(tmp_path, max_backlog=3000)
        await writer.append(b"imported: room again")
        await writer.close()

    asyncio.run(scenario())


def test_the_spool_directory_is_private(tmp_path: Path):
    _sealed_segment_in(tmp_path / "spool", [b"x"])
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700


# --------------------------------------------------------------------------- the inbound side, failing


def _spooled_rows(services: Services, raws: list[bytes]) -> list[bytes]:
    inbound = services.inbound
    route = inbound.route_recipient("support@project.dev")
    return [inbound_spool.encode(inbound._queue_row(raw, f"key-{i}", True, "alice@sender.example", [route],
                                                    "192.0.2.1", "client.example", "smtp"))
            for i, raw in enumerate(raws)]


def test_a_record_of_an_unknown_version_is_refused_clearly():
    with pytest.raises(ValueError, match="version 2 is not one this LiteMX reads"):
        inbound_spool.decode(b"\x02" + b"\0" * 8)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_poison_record_in_a_batch_is_kept_in_dead_and_the_others_are_queued(services: Services, tenant):
    host_project(services, tenant.token)
    directory = spool_directory(services.infra.db)
    assert directory is not None
    good = _spooled_rows(services, [message("first"), message("third")])
    _sealed_segment_in(directory, [good[0], b"\x07 from a newer LiteMX", good[1]])
    assert SpoolImport(services.infra.db, directory).run() == 2
    assert [mime_subject(r["raw"]) for r in _queue_rows(services)] == ["first", "third"]
    assert [p.read_bytes() for p in (directory / spool.DEAD).iterdir()] == [b"\x07 from a newer LiteMX"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failing_database_keeps_the_spool_for_later_and_start_up_goes_on(services: Services, tenant,
                                                                           monkeypatch, caplog):
    host_project(services, tenant.token)
    directory = spool_directory(services.infra.db)
    assert directory is not None
    _sealed_segment_in(directory, _spooled_rows(services, [message("first"), message("second")]))
    from sqlalchemy.exc import OperationalError

    def locked(*args: object, **kwargs: object) -> None:
        raise OperationalError("BEGIN IMMEDIATE", {}, TimeoutError("database writer lock wait timed out"))

    with monkeypatch.context() as patch:
        patch.setattr(services.infra.db, "write", locked)
        with pytest.raises(spool.ImportIncomplete) as failed:
            SpoolImport(services.infra.db, directory).run()
        assert isinstance(failed.value.__cause__, spool.StoreUnavailable)
        with caplog.at_level(logging.ERROR, "litemx.spool"):
            assert inbound_spool.import_leftovers(services.infra.db) == 0  # logged, not raised
        assert "could not import the spool" in caplog.text
    assert len(_segments(directory)) == 1 and not (directory / spool.DEAD).exists()
    assert inbound_spool.import_leftovers(services.infra.db) == 2
    assert [mime_subject(r["raw"]) for r in _queue_rows(services)] == ["first", "second"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_full_backlog_answers_451_over_smtp_until_imports_catch_up(services: Services, tenant, monkeypatch):
    monkeypatch.setattr(spool, "BACKLOG_STAT_SECONDS", 0.0)
    host_project(services, tenant.token)
    directory = spool_directory(services.infra.db)
    assert directory is not None
    with live_mx(services, worker=False) as mx, smtplib.SMTP(mx.host, mx.port, timeout=10) as client:
        services.inbound.spool = SpoolWriter(directory, max_backlog=0)
        try:
            client.sendmail("alice@sender.example", ["support@project.dev"], message("Accepted"))
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("alice@sender.example", ["support@project.dev"], message("Backlog full"))
            assert SpoolImport(services.infra.db, directory).run() == 1
            asyncio.run_coroutine_threadsafe(services.inbound.spool.close(), mx.loop).result(10)
            assert SpoolImport(services.infra.db, directory).run() == 0  # sealed, imported: deleted
            client.sendmail("alice@sender.example", ["support@project.dev"], message("Room again"))
            asyncio.run_coroutine_threadsafe(services.inbound.spool.close(), mx.loop).result(10)
        finally:
            services.inbound.spool = None
    assert refused.value.smtp_code == 451
    assert SpoolImport(services.infra.db, directory).run() == 1
    assert [mime_subject(r["raw"]) for r in _queue_rows(services)] == ["Accepted", "Room again"]
