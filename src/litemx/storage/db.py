"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

SQLite: WAL so readers never block the writer, synchronous=FULL so a committed transaction
survives power loss (SPEC §5: `250` means durable), and write transactions opened with
BEGIN IMMEDIATE so two writers serialise at BEGIN instead of failing at COMMIT.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from litemx.storage.types import json_loads

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE = "litemx_write"
_BEGIN_READ, _BEGIN_WRITE = "BEGIN DEFERRED", "BEGIN IMMEDIATE"
SQLITE_POOL_SIZE = 20  # kept connections, and as many more on demand (see _create_engine)


class Database:
    """An engine plus the two ways to open a transaction: read() and write()."""

    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = url
        self.engine: Engine = _create_engine(url, **engine_kwargs)
        database = make_url(url).database
        self.writer = (WriterLock(Path(database))
                       if self.dialect == "sqlite" and database and database != ":memory:" else None)
        self._peek = threading.local()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def peek(self, sql: str) -> Any:
        """The first column of the first row of a tiny read-only query, or None when this
        database has no cheap path for it (PostgreSQL: a network round trip, so callers use a
        thread). SQLite: this thread's own read-only connection, no pool and no transaction,
        a few microseconds: safe to call on an event loop."""
        if self.writer is None:
            return None
        conn = getattr(self._peek, "conn", None)
        if conn is None or getattr(self._peek, "pid", 0) != os.getpid():
            uri = self.writer.database.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._peek.conn, self._peek.pid = conn, os.getpid()
        row = conn.execute(sql).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, background: bool = False) -> Iterator[Connection]:
        """A write transaction. `background` (inbound processing): on SQLite it waits while any
        other process's foreground writer (an SMTP accept, a request) waits, see WriterLock."""
        with self._one_writer(background), self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def writer_contended(self) -> bool:
        """Whether a writer that goes before background work (a request, an accept: see
        WriterLock.contended) waits for the writer lock this thread holds: a transaction that
        may run long (inbound storing) ends early for it. PostgreSQL has no database-wide writer
        lock, so the answer is always yes there: such transactions keep to their short bound
        (they hold row locks others may want)."""
        return self.writer is None or self.writer.contended()

    @contextmanager
    def _one_writer(self, background: bool) -> Iterator[None]:
        if self.writer is None:
            yield  # PostgreSQL: row locks, no database-wide writer lock
            return
        with self.writer.hold(background):
            yield

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        with self.engine.begin() as conn:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        conn = getattr(self._peek, "conn", None)
        if conn is not None:
            conn.close()
            self._peek.conn = None
        self.engine.dispose()


class WriterLock:
    """One SQLite writer at a time across every process and thread sharing the database file,
    foreground writers first.

    SQLite serialises writers itself, but a writer that finds the lock taken polls for it
    with sleeps of 1, 2, 5, 10 ms and more (sqlite3_busy_timeout), so it goes on sleeping after
    the lock is free. With several `litemx serve` processes (supervisor.py) those sleeps were
    the limit on SMTP accepts. A blocking flock on a side file (`-writer.lock`) instead wakes
    the next writer the moment the current one releases it.

    Priority: a `250` waits for its queue row's commit, so inbound processing must not sit in
    front of it. Foreground writers hold a shared flock on `-writer.queue` while they wait for
    and hold the writer lock; a background writer first takes that file exclusively, which it
    gets only when no foreground writer of another process is waiting, and lets go of it as
    soon as it holds the writer lock. Under a burst of mail, processing waits; the queue is
    durable and it catches up after.

    Foreground writers also hold `-writer.wanted` shared from before they queue until they
    hold the writer lock, so a background holder can tell that one waits (`contended`) and end
    a long transaction early for it; another background writer waiting does not end it (its
    work is serial anyway, and yielding to each other every few messages kept two workers
    storing in lockstep, each idle half the time).

    flock belongs to an open file, not a thread, so the threads of one process first queue on
    a re-entrant lock of their own (priority applies between processes). Files are opened
    lazily so a forked child gets its own. A process that dies releases its locks.

    Raises (on enter): OperationalError when this process's own writers have waited
    WAIT_SECONDS (the busy timeout's bound); the wait for another process is the kernel's.
    """

    WAIT_SECONDS = 30.0
    QUIET_SECONDS = 0.005  # a background writer waits for this long a pause in foreground writes ...
    DEFER_SECONDS = 0.25  # ... but never longer than this per transaction, so processing always moves

    def __init__(self, path: Path):
        self.database = path
        self.paths = tuple(path.with_name(f"{path.name}-writer.{name}") for name in ("lock", "queue", "wanted"))
        self.local = threading.RLock()
        self.depth = 0
        self.fds: tuple[int, int, int] | None = None  # (writer, queue, wanted)
        self.pulse: mmap.mmap | None = None
        self.held: tuple[int, int, int] = (-1, -1, -1)
        self.opening = threading.Lock()
        self.pid = 0
        self.waiting = 0  # this process's threads waiting for `local` (see contended)
        self.background = False  # whether the holder is a background writer
        self.counting = threading.Lock()

    @contextmanager
    def hold(self, background: bool = False) -> Iterator[None]:
        if background and not self._held_here():
            self._wait_for_quiet()  # before the local lock: this process's own accepts go on meanwhile
        self._count_waiting(1)
        try:
            acquired = self.local.acquire(timeout=self.WAIT_SECONDS)
        finally:
            self._count_waiting(-1)
        if not acquired:
            raise OperationalError("BEGIN IMMEDIATE", {}, TimeoutError("database writer lock wait timed out"))
        try:
            if self.depth == 0:
                self._take(background)
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self._release()
        finally:
            self.local.release()

    def _count_waiting(self, step: int) -> None:
        with self.counting:  # `+=` on an attribute is not atomic between threads
            self.waiting += step

    def contended(self) -> bool:
        """For a background holder: whether a writer it should make way for waits, i.e. a
        thread of this process (on `local`) or another process's foreground writer (it holds
        `-writer.wanted` shared while it waits). Two flock calls; the probe holds the file for
        no longer than they take. A foreground holder is always answered yes."""
        if self.waiting or not self.background:
            return True
        _writer, _queue, wanted = self.held
        try:
            fcntl.flock(wanted, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(wanted, fcntl.LOCK_UN)
        return False

    def _wait_for_quiet(self) -> None:
        """Defer a background transaction while foreground writers are busy: until none has
        taken the lock for QUIET_SECONDS, at most DEFER_SECONDS. Between the arrivals of a burst
        of mail the writer lock is free for a moment, and a background transaction taken then
        makes the next accepts wait for it; at a steady, lighter rate the gaps are long enough."""
        deadline = time.monotonic() + self.DEFER_SECONDS
        while True:
            now = time.monotonic()
            wait = self.QUIET_SECONDS - (now - self._last_foreground())
            if not 1e-4 < wait <= self.QUIET_SECONDS or now >= deadline:
                return  # quiet (to within 0.1 ms), a clock from before a reboot, or waited enough
            time.sleep(min(wait, deadline - now))

    def _last_foreground(self) -> float:
        self._fds()
        assert self.pulse is not None
        return float(struct.unpack("d", self.pulse[:8])[0])

    def _held_here(self) -> bool:
        """This thread already holds the lock (a nested write: waiting would only delay itself)."""
        return bool(self.local._is_owned())  # type: ignore[attr-defined]

    def _take(self, background: bool) -> None:
        writer, queue, wanted = self.held = self._fds()
        self.background = background
        if background:
            fcntl.flock(queue, fcntl.LOCK_EX)  # no foreground writer is waiting or writing now
            try:
                fcntl.flock(writer, fcntl.LOCK_EX)
            finally:
                fcntl.flock(queue, fcntl.LOCK_UN)
            return
        fcntl.flock(wanted, fcntl.LOCK_SH)  # until this writer holds the lock: see contended()
        try:
            fcntl.flock(queue, fcntl.LOCK_SH)
            try:
                fcntl.flock(writer, fcntl.LOCK_EX)
            except BaseException:
                fcntl.flock(queue, fcntl.LOCK_UN)
                raise
        finally:
            fcntl.flock(wanted, fcntl.LOCK_UN)
        assert self.pulse is not None
        self.pulse[:8] = struct.pack("d", time.monotonic())  # CLOCK_MONOTONIC: one clock for all processes

    def _release(self) -> None:
        writer, queue, _wanted = self.held  # the files _take locked, whatever _fds opens meanwhile
        fcntl.flock(writer, fcntl.LOCK_UN)
        fcntl.flock(queue, fcntl.LOCK_UN)  # a no-op for a background writer (released in _take)

    def _fds(self) -> tuple[int, int, int]:
        with self.opening:  # two threads' first use must not open (and lock) two sets of files
            return self._open()

    def _open(self) -> tuple[int, int, int]:
        if self.fds is None or self.pid != os.getpid():
            writer, queue, wanted = (os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for path in self.paths)
            self.fds = (writer, queue, wanted)
            if os.fstat(self.fds[1]).st_size < 8:
                os.ftruncate(self.fds[1], 8)
            # The queue file's 8 bytes: when a foreground writer last took the lock (shared memory).
            self.pulse = mmap.mmap(self.fds[1], 8)
            self.pid = os.getpid()
        return self.fds


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _create_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Reads run side by side (a WAL snapshot each), so under load every request thread holds
        # a connection at once. SQLAlchemy's default pool keeps 5 and closes overflow connections
        # on return: each request past the fifth then opened its own connection, PRAGMAs included.
        # A SQLite connection is only a file handle and a page cache, so keep enough of them.
        kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        kwargs.setdefault("max_overflow", SQLITE_POOL_SIZE)
    # JSON columns are text on SQLite, decoded on every row read (a list's verdicts and
    # recipients): pydantic's parser takes a third of json.loads' time (see types.json_loads).
    kwargs.setdefault("json_deserializer", json_loads)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
    _install_sqlite_hooks(engine)
    return engine


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (see module doc).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        sql = _BEGIN_WRITE if conn.get_execution_options().get(_WRITE) else _BEGIN_READ
        # On the DBAPI connection itself: `exec_driver_sql` spent more than SQLite does on
        # the BEGIN (about 20 µs of an empty 37 µs transaction), once per request and per
        # audit commit. An error is still SQLAlchemy's, as every other statement's.
        try:
            conn.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, (), exc, sqlite3.Error) from exc
