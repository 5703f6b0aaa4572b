"""The accept spool: an append-only file per front process, made durable in groups.

Why: with several front processes on one SQLite database, every `250` waited for a commit of
its queue row, behind SQLite's single writer lock, which the inbound workers' transactions
hold too (bench/PROFILE.md, session 2). A front process instead appends each accepted message
to its own segment file and fdatasyncs it — one fdatasync for every record appended while the
previous one ran (group commit) — and only then answers `250`. No lock is shared with any other
process on that path. The worker processes import the records into `inbound_queue` in large
batches (service/inbound_spool.py); a segment is deleted once it is sealed and imported.

Durability (SPEC §5: a crash after `250` loses nothing): a record is acknowledged only after
fdatasync of its segment returned, and a segment's directory entry is fsynced before its first
record is written. A record is `MAGIC | length | crc32 | payload`; a torn or unsynced tail
(a crash mid-append) fails its check and is never imported, and a writer that sees an error
abandons its segment instead of rewriting it, so the valid records of a segment are always a
prefix of it. After a failed fdatasync nothing appended to that segment is acknowledged, not
even what a later fdatasync of it seems to cover (Linux reports a writeback error once per open
file, while the pages before may be lost). An importer deletes what follows the last good record
of a sealed segment only when it is a torn tail (an append cut short at the end of the file);
any other damage moves the segment to `damaged/`, for an operator, never deleted.

Nothing stops the imports for good: a record the store rejects alone is written to `dead/`
(one file per record, to re-inject), a failing segment does not hold the others back, and a
failing database leaves every record where it is for a later pass. A front stops accepting
(451) while the un-imported backlog is over MAX_BACKLOG_BYTES, and seals its segment once idle
or old, so raw mail is imported and deleted promptly even on a quiet server.

Exactly once: each segment has a `.state` file (two offsets, fdatasynced): `intent`, written
before the import's database transaction, and `done`, written after its commit. After a crash
between the two, the records in [done, intent) are imported again with `maybe_stored`, and the
caller skips those already in the database. Importers (threads or processes) take the state
file's flock, so one segment has one importer at a time.

Sealed: a front holds an exclusive flock on its live segment for as long as it appends to it
(it takes it before the file gets its final name). An importer that can take that flock knows
no record will follow (the front moved on to a new segment, stopped, or died).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("litemx.spool")

MAGIC = b"LMXS"
_HEADER = struct.Struct(">4sII")  # magic, payload length, crc32 of the payload
_STATE = struct.Struct(">QQ")  # intent, done
SUFFIX = ".spool"
SEGMENT_BYTES = 8 * 1024 * 1024  # a front starts a new segment past this size
IMPORT_BATCH_BYTES = 8 * 1024 * 1024  # records per import transaction, by size
MAX_RECORD = 64 * 1024 * 1024  # a length above this is corruption, not a record
# A segment is sealed (so imported and deleted) once idle or old: raw mail must not linger on
# disk for months on a quiet server (SPEC retention). A new one is started on the next append.
SEAL_IDLE_SECONDS = 60.0
SEAL_AGE_SECONDS = 300.0
# Past this much un-imported spool in the directory (imports stalled: database down or locked)
# a front answers 451 instead of filling the disk.
MAX_BACKLOG_BYTES = 512 * 1024 * 1024
BACKLOG_STAT_SECONDS = 1.0  # the directory is measured at most this often
DAMAGED = "damaged"  # segments whose records past some point cannot be read (never deleted)
DEAD = "dead"  # records the store rejected, one file each, for an operator to re-inject

# payloads -> how many were stored; `maybe_stored`: some may be in the database already. It
# raises RecordRejected for a record that can never be stored, StoreUnavailable when the store
# itself is failing; another error is judged by the record's neighbours (_store_one_by_one).
# Called with no payloads, it only checks that the store takes writes.
StoreRecords = Callable[[list[bytes], bool], int]


class SpoolError(RuntimeError):
    """A record could not be made durable (the OS error is chained); the caller answers 451."""


class RecordRejected(ValueError):
    """Raised by a StoreRecords callback: a record in the batch can never be stored (it cannot
    be decoded, it breaks a constraint), unlike a database that is failing for every record."""


class StoreUnavailable(RuntimeError):
    """Raised by a StoreRecords callback: the store fails whatever the records (database down,
    locked, disk full). Nothing is set aside; the records are imported on a later pass."""


class ImportIncomplete(RuntimeError):
    """Some segments could not be imported (the first error is chained); `stored` records of
    the others were. Their records stay for the next pass."""

    def __init__(self, stored: int, failed: int):
        super().__init__(f"{failed} spool segment(s) could not be imported")
        self.stored = stored


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


# --------------------------------------------------------------------------- writing


@dataclass(eq=False)
class _Segment:
    path: Path
    fd: int
    end: int = 0  # bytes written
    broken: bool = False  # a write or sync failed: nothing in it is acknowledged any more
    opened: float = field(default_factory=time.monotonic)
    appended: float = field(default_factory=time.monotonic)  # the last append


@dataclass(eq=False)
class _Waiter:
    segment: _Segment
    future: asyncio.Future[None]


class SpoolWriter:
    """One process's appends, made durable by group fdatasync. Use from one event loop.

    `append` writes on the loop (a page-cache copy, no disk wait) and waits for the next sync
    round; one round at a time runs fdatasync on a thread of its own, so the loop keeps
    serving other sessions while the disk works, and every record appended during a round is
    covered by the next.
    """

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES,
                 idle_seconds: float = SEAL_IDLE_SECONDS, age_seconds: float = SEAL_AGE_SECONDS,
                 max_backlog: int = MAX_BACKLOG_BYTES):
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.idle_seconds = idle_seconds
        self.age_seconds = age_seconds
        self._backlog = _Backlog(directory, max_backlog)
        self._seal_timer: asyncio.TimerHandle | None = None
        self._segment: _Segment | None = None
        self._retired: list[_Segment] = []  # rotated away from, closed once synced
        self._waiting: list[_Waiter] = []
        self._rounds: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def append(self, payload: bytes) -> str:
        """Append one record; returns `segment:offset` once it is durable.

        Raises: SpoolError when it could not be written or synced, or the un-imported backlog
        is over its bound.
        """
        if self._backlog.full():
            raise SpoolError("the spool's un-imported backlog is full (are imports failing?)")
        try:
            segment = self._writable()
        except OSError as exc:
            raise SpoolError("could not start a spool segment") from exc
        offset = segment.end
        try:
            _write_all(segment.fd, frame(payload))
        except OSError as exc:
            self._abandon(segment)  # a partial record stays as the segment's (never imported) tail
            raise SpoolError("could not append to the spool") from exc
        segment.end += _HEADER.size + len(payload)
        segment.appended = time.monotonic()
        self._backlog.added(_HEADER.size + len(payload))
        self._arm_seal_timer()
        waiter = _Waiter(segment, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        if self._rounds is None:
            self._rounds = asyncio.get_running_loop().create_task(self._sync_rounds())
        await waiter.future
        return f"{segment.path.stem}:{offset}"

    async def close(self) -> None:
        """Wait for the records appended so far to be synced, then release the segment (sealed)."""
        if self._seal_timer is not None:
            self._seal_timer.cancel()
            self._seal_timer = None
        if self._rounds is not None:
            await asyncio.shield(self._rounds)
        for segment in [*self._retired, *([self._segment] if self._segment else [])]:
            os.close(segment.fd)
        self._retired, self._segment = [], None
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def _writable(self) -> _Segment:
        segment = self._segment
        if segment is None or segment.broken or segment.end >= self.segment_bytes:
            if segment is not None:
                self._retire(segment)
            # Blocks the loop for one directory fsync, once per segment (SEGMENT_BYTES of mail).
            segment = self._segment = _create_segment(self.directory)
        return segment

    def _arm_seal_timer(self) -> None:
        if self._seal_timer is None and self._segment is not None:
            delay = self._seal_due(self._segment) - time.monotonic()
            self._seal_timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._seal_if_due)

    def _seal_due(self, segment: _Segment) -> float:
        return min(segment.appended + self.idle_seconds, segment.opened + self.age_seconds)

    def _seal_if_due(self) -> None:
        """Seal the live segment once idle or old enough (the next append starts a new one), so
        the importers can finish and delete it; otherwise check again when it will be."""
        self._seal_timer = None
        segment = self._segment
        if segment is None:
            return
        if time.monotonic() < self._seal_due(segment):
            self._arm_seal_timer()
            return
        self._retire(segment)
        if self._rounds is None:  # else the running round closes it once its records are synced
            self._close_retired()

    def _retire(self, segment: _Segment) -> None:
        if segment not in self._retired:
            self._retired.append(segment)
        if self._segment is segment:
            self._segment = None

    def _abandon(self, segment: _Segment) -> None:
        segment.broken = True
        self._retire(segment)
        if self._rounds is None:  # nothing will sync it: close it now
            self._close_retired()

    async def _sync_rounds(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Waiter] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                # Appended to a segment whose sync (or write) failed meanwhile: the next fdatasync
                # of that file may return 0 although the pages before them were lost (Linux
                # reports a writeback error once per open file), so they are never acknowledged.
                batch = _fail_broken(batch)
                segments = list({id(w.segment): w.segment for w in batch}.values())
                error = await self._sync(loop, segments) if segments else None
                for waiter in batch:
                    _settle(waiter.future, error or (_broken_error() if waiter.segment.broken else None))
                self._close_retired()
        finally:
            self._rounds = None
            # Ended by anything but an empty queue (cancelled, an unexpected error): no session
            # may wait for ever for a round that will not come.
            for waiter in [*batch, *self._waiting]:
                _settle(waiter.future, SpoolError("the spool's sync rounds stopped"))
            self._waiting = []

    async def _sync(self, loop: asyncio.AbstractEventLoop, segments: list[_Segment]) -> SpoolError | None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="litemx-spool-sync")
        try:
            await loop.run_in_executor(self._thread, _fdatasync_all, [s.fd for s in segments])
        except OSError as exc:
            # After a failed fdatasync the kernel may have dropped the dirty pages: nothing in
            # these segments is trusted to be durable any more, so no record goes after them.
            for segment in segments:
                segment.broken = True
                self._retire(segment)
            error = SpoolError("could not sync the spool")
            error.__cause__ = exc
            return error
        return None

    def _close_retired(self) -> None:
        """Close the retired segments no waiting record still needs synced. Only between sync
        rounds: a closed descriptor's number is reused at once, and a sync in flight must never
        reach another file."""
        needed = [w.segment for w in self._waiting]
        for segment in [s for s in self._retired if s not in needed]:
            os.close(segment.fd)  # releases its flock: sealed, the importers may finish it
            self._retired.remove(segment)


def _broken_error() -> SpoolError:
    return SpoolError("an earlier write or sync of this spool segment failed")


def _fail_broken(waiters: list[_Waiter]) -> list[_Waiter]:
    """Fail the waiters whose segment is broken; returns the others."""
    for waiter in waiters:
        if waiter.segment.broken:
            _settle(waiter.future, _broken_error())
    return [w for w in waiters if not w.segment.broken]


class _Backlog:
    """The un-imported bytes in a spool directory, measured at most once a second (a stat per
    segment) and counted up by this writer's own appends in between."""

    def __init__(self, directory: Path, limit: int):
        self.directory = directory
        self.limit = limit
        self._bytes = 0
        self._measured = float("-inf")

    def full(self) -> bool:
        now = time.monotonic()
        if now - self._measured >= BACKLOG_STAT_SECONDS:
            self._bytes, self._measured = _spool_bytes(self.directory), now
        return self._bytes > self.limit

    def added(self, size: int) -> None:
        self._bytes += size


def _spool_bytes(directory: Path) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(SUFFIX):
                with contextlib.suppress(FileNotFoundError):  # imported and deleted meanwhile
                    total += entry.stat().st_size
    return total


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the session went away meanwhile; its record is durable all the same
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fdatasync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fdatasync(fd)


def _create_segment(directory: Path) -> _Segment:
    """A new, locked, empty segment whose name is durable. It is locked before it gets its
    `.spool` name, so no importer can ever see it unlocked (and take it for sealed) while in use."""
    _ensure_directory(directory)
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
    temporary = directory / f"{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = directory / f"{name}{SUFFIX}"
        os.rename(temporary, path)
        _fsync_dir(directory)
    except BaseException:
        os.close(fd)
        raise
    return _Segment(path, fd)


def _ensure_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # raw mail: the server's user only
    _fsync_dir(directory.parent)  # the directory's own entry survives a power cut too


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- importing


def import_spool(directory: Path, store: StoreRecords, *, batch_bytes: int = IMPORT_BATCH_BYTES) -> int:
    """Store every complete record not stored yet, oldest segment first; returns how many.

    Segments another importer is working on are skipped (it stores them). A sealed segment is
    deleted once everything in it is stored. A record `store` rejects (RecordRejected) alone is
    moved to `dead/`; one segment's failure does not keep the others from being imported.

    Raises: ImportIncomplete (the first error chained: the records stay for the next import).
    """
    if not directory.is_dir():
        return 0
    stored = failed = 0
    first_error: Exception | None = None
    for path in sorted(directory.iterdir()):
        if path.suffix == SUFFIX:
            try:
                stored += _import_segment(path, store, batch_bytes)
            except Exception as exc:  # noqa: BLE001 - the other segments are still imported
                failed += 1
                first_error = first_error or exc
        elif path.suffix == ".tmp" or (path.suffix == ".state" and not path.with_suffix(SUFFIX).exists()):
            _remove_if_unlocked(path)  # a segment never named (crash at creation), an orphaned state
    if first_error is not None:
        raise ImportIncomplete(stored, failed) from first_error
    return stored


def _import_segment(path: Path, store: StoreRecords, batch_bytes: int) -> int:
    with _state(path.with_suffix(".state")) as state:
        if state is None:
            return 0  # another importer has it
        sealed = _is_sealed(path)  # before reading: a sealed segment gets no more records
        if sealed is None:
            return 0  # deleted meanwhile by the importer before us
        stored = _import_records(path, state, store, batch_bytes)
        if sealed:
            _finish(path, state)
        return stored


def _import_records(path: Path, state: _StateFile, store: StoreRecords, batch_bytes: int) -> int:
    intent, done = state.read()
    stored = 0
    with _open_ro(path) as fd:
        while True:
            records, end = read_records(fd, done, batch_bytes)
            if not records:
                return stored
            maybe_stored = intent > done  # an import of [done, intent) may have committed
            intent = max(intent, end)
            state.write(intent, done)
            try:
                stored += store(records, maybe_stored)
            except StoreUnavailable:
                raise
            except Exception:  # noqa: BLE001 - one bad record must not keep the others out
                # One record at a time, so only the bad ones stay out. Maybe stored: the error
                # may have come after the batch's commit (a connection lost at the answer).
                stored += _store_one_by_one(path, state, store, records, done)
            done = end
            state.write(intent, done)


def _store_one_by_one(path: Path, state: _StateFile, store: StoreRecords, records: list[bytes], start: int) -> int:
    """Store `records` (from offset `start`) one per call; returns how many were stored. A record
    that fails alone is moved to `dead/` when it is the record's fault: RecordRejected, or an
    error while the store takes other writes (a neighbour was stored, or the empty check passes).

    Raises: StoreUnavailable, or a record's error when the store takes no write at all (it is
    failing: the records from that one on stay, for a later pass).
    """
    intent, _ = state.read()
    failures: dict[int, Exception] = {}
    stored = succeeded = 0
    for index, payload in enumerate(records):
        try:
            stored += store([payload], True)
            succeeded += 1
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - judged below, with its neighbours
            failures[index] = exc
    if failures and not succeeded and not all(isinstance(e, RecordRejected) for e in failures.values()):
        store([], False)  # raises when the store itself is failing: nothing is set aside
    offset = start
    for index, payload in enumerate(records):
        if index in failures:
            _dead_letter(path, offset, payload, failures[index])
        offset += _HEADER.size + len(payload)
    state.write(intent, offset)
    return stored


def _dead_letter(path: Path, offset: int, payload: bytes, error: Exception) -> None:
    """Keep a record the store will never take as a file of its own (written durably before the
    import moves past it), so no accepted mail is deleted unstored."""
    directory = path.parent / DEAD
    _ensure_directory(directory)
    target = directory / f"{path.stem}-{offset}.record"
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, target)
    _fsync_dir(directory)
    cause = error.__cause__ or error
    log.error("spool record %s:%d cannot be stored (%s: %s): kept in %s for an operator to re-inject",
              path.name, offset, type(cause).__name__, cause, target)


def read_records(fd: int, start: int, limit: int) -> tuple[list[bytes], int]:
    """Complete, intact records from `start`, up to about `limit` bytes of them (at least one);
    and the offset after the last. Stops at the first record that is short or fails its check:
    still being written, or the torn tail of a crash."""
    records: list[bytes] = []
    offset = size = start
    while size - start < limit:
        header = os.pread(fd, _HEADER.size, offset)
        if len(header) < _HEADER.size:
            break
        magic, length, crc = _HEADER.unpack(header)
        if magic != MAGIC or length > MAX_RECORD:
            break
        payload = os.pread(fd, length, offset + _HEADER.size)
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = size = offset + _HEADER.size + length
    return records, offset


def _finish(path: Path, state: _StateFile) -> None:
    """Delete a sealed segment whose records are all stored, and its state. What may follow
    them is only a torn, never-acknowledged tail (a crash mid-append); anything else means
    records were lost or damaged on disk, and the segment is kept in `damaged/` instead."""
    _, done = state.read()
    size = path.stat().st_size
    if done < size:
        with _open_ro(path) as fd:
            torn = _is_torn_tail(fd, done, size)
        if not torn:
            _quarantine(path, state, done, size)
            return
        log.warning("spool segment %s: dropping a %d-byte incomplete record (never acknowledged)", path.name,
                    size - done)
    path.unlink()
    state.path.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # a deleted segment must not come back to be imported twice


def _is_torn_tail(fd: int, offset: int, size: int) -> bool:
    """Whether the bytes from `offset` (not a good record) to the end are one append cut short:
    a header cut short, or an intact header whose record runs past the end of the file. A whole
    record failing its check, or anything after it, is damage, not a torn tail."""
    header = os.pread(fd, _HEADER.size, offset)
    if len(header) < _HEADER.size:
        return True
    magic, length, _ = _HEADER.unpack(header)
    return magic == MAGIC and length <= MAX_RECORD and offset + _HEADER.size + length > size


def _quarantine(path: Path, state: _StateFile, done: int, size: int) -> None:
    directory = path.parent / DAMAGED
    _ensure_directory(directory)
    os.rename(path, directory / path.name)
    os.rename(state.path, directory / state.path.name)  # where the import stopped, for the operator
    _fsync_dir(directory)
    _fsync_dir(path.parent)
    log.error("spool segment %s is damaged at offset %d (%d bytes after its last good record): the records "
              "before were imported; moved to %s for an operator, nothing was deleted", path.name, done,
              size - done, directory)


def _is_sealed(path: Path) -> bool | None:
    """True when no writer holds the segment; None when it no longer exists."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _remove_if_unlocked(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # in use: a front creating a segment, or an importer finishing one
        finally:
            os.close(fd)


@contextlib.contextmanager
def _open_ro(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass
class _StateFile:
    path: Path
    fd: int

    def read(self) -> tuple[int, int]:
        data = os.pread(self.fd, _STATE.size, 0)
        return _STATE.unpack(data) if len(data) == _STATE.size else (0, 0)

    def write(self, intent: int, done: int) -> None:
        os.pwrite(self.fd, _STATE.pack(intent, done), 0)
        os.fdatasync(self.fd)


@contextlib.contextmanager
def _state(path: Path) -> Iterator[_StateFile | None]:
    """The segment's import state, locked by this importer; None when another one holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        state = _StateFile(path, fd)
        if os.fstat(fd).st_size < _STATE.size:
            state.write(0, 0)
            _fsync_dir(path.parent)  # losing the state would import the segment twice
        yield state
    finally:
        os.close(fd)
