"""SQLite writers across processes (storage/db.py WriterLock): one at a time, no lost or
failed transaction under contention, and a waiting foreground writer (an SMTP accept) goes
before a waiting background one (inbound processing)."""

from __future__ import annotations

import multiprocessing
import struct
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from litemx.storage.db import Database
from tests.support.live import wait_for

SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited locks or pools


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _increment(url: str, threads: int, times: int) -> None:
    import threading

    db = Database(url)

    def run() -> None:
        for _ in range(times):
            with db.write() as conn:
                value = conn.execute(text("SELECT n FROM counter")).scalar_one()
                conn.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    db.dispose()


def _hold(url: str, background: bool, name: str, log: str, release: Any, holding: Any) -> None:
    db = Database(url)
    with db.write(background=background) as conn:
        conn.execute(text("INSERT INTO turns (name) VALUES (:n)"), {"n": name})
        Path(log).open("a").write(name + "\n")
        if holding is not None:
            holding.set()
            release.wait(30)
    db.dispose()


def _setup(path: Path) -> str:
    url = _url(path)
    db = Database(url)
    with db.write() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
        conn.execute(text("CREATE TABLE turns (name TEXT NOT NULL)"))
    db.dispose()
    return url


def _blocked_on_flock(pid: int) -> bool:
    """True while `pid` waits for a flock (a `->` line of /proc/locks names the waiter)."""
    return any("->" in line and "FLOCK" in line and f" {pid} " in line
               for line in Path("/proc/locks").read_text().splitlines())


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    url = _setup(tmp_path / "w.db")
    procs = [SPAWN.Process(target=_increment, args=(url, 4, 40)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = Database(url)
    with db.read() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 3 * 4 * 40
    db.dispose()


def test_a_waiting_foreground_writer_goes_before_a_waiting_background_writer(tmp_path):
    url = _setup(tmp_path / "p.db")
    log = str(tmp_path / "order.log")
    release, holding = SPAWN.Event(), SPAWN.Event()
    first = SPAWN.Process(target=_hold, args=(url, False, "first", log, release, holding))
    first.start()
    assert holding.wait(60)
    background = SPAWN.Process(target=_hold, args=(url, True, "background", log, None, None))
    background.start()
    wait_for(lambda: _blocked_on_flock(background.pid), timeout=60)  # type: ignore[arg-type]
    foreground = SPAWN.Process(target=_hold, args=(url, False, "foreground", log, None, None))
    foreground.start()
    wait_for(lambda: _blocked_on_flock(foreground.pid), timeout=60)  # type: ignore[arg-type]
    release.set()
    for p in (first, background, foreground):
        p.join(60)
        assert p.exitcode == 0
    assert Path(log).read_text().split() == ["first", "foreground", "background"]


class _FakeTime:
    """time.monotonic/time.sleep for WriterLock: sleeping advances the clock, and each sleep
    may see a foreground writer take the lock again (`busy_until`)."""

    def __init__(self, lock: Any, start: float):
        self.now, self.lock, self.slept, self.busy_until = start, lock, [], start

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.now < self.busy_until:  # a burst goes on: another accept just committed
            self.lock.pulse[:8] = struct.pack("d", self.now)


def _writer_lock(tmp_path: Path, monkeypatch: Any) -> tuple[Any, _FakeTime]:
    from litemx.storage import db as db_module

    lock = db_module.WriterLock(tmp_path / "q.db")
    fake = _FakeTime(lock, 1000.0)
    monkeypatch.setattr(db_module, "time", fake)
    return lock, fake


def test_a_background_writer_waits_for_a_pause_in_foreground_writes(tmp_path, monkeypatch):
    lock, fake = _writer_lock(tmp_path, monkeypatch)
    with lock.hold():  # a foreground writer (an accept) just committed
        pass
    with lock.hold(background=True):
        pass
    assert fake.slept == [lock.QUIET_SECONDS]


def test_a_background_writer_is_not_held_back_when_all_is_quiet_or_for_ever(tmp_path, monkeypatch):
    lock, fake = _writer_lock(tmp_path, monkeypatch)
    with lock.hold():
        pass
    fake.now += 1.0  # nothing written for a second
    with lock.hold(background=True):
        pass
    assert fake.slept == []
    fake.busy_until = fake.now + 60.0  # a flood: foreground writes never pause
    with lock.hold():
        pass
    with lock.hold(background=True):
        pass
    assert sum(fake.slept) == pytest.approx(lock.DEFER_SECONDS)


def _wait_foreground(url: str, started: Any) -> None:
    db = Database(url)
    started.set()
    with db.write() as conn:
        conn.execute(text("INSERT INTO turns (name) VALUES ('foreground')"))
    db.dispose()


def test_a_background_holder_sees_when_a_writer_it_should_make_way_for_waits(tmp_path):
    # Inbound storing keeps its transaction open while nobody it should make way for waits (one
    # fsync per batch) and commits soon once an accept or request does: contended() is what it
    # asks. Another worker's storing waiting does not count: that work is serial anyway.
    import threading

    url = _setup(tmp_path / "c.db")
    log = str(tmp_path / "order.log")
    db = Database(url)
    with db.write(background=True):
        assert not db.writer_contended()
        worker = SPAWN.Process(target=_hold, args=(url, True, "background", log, None, None))
        worker.start()
        wait_for(lambda: _blocked_on_flock(worker.pid), timeout=60)  # type: ignore[arg-type]
        assert not db.writer_contended()  # another process's background writer waits
        started = SPAWN.Event()
        accept = SPAWN.Process(target=_wait_foreground, args=(url, started))
        accept.start()
        wait_for(lambda: _blocked_on_flock(accept.pid), timeout=60)  # type: ignore[arg-type]
        assert db.writer_contended()  # ... and now a foreground writer (an accept) waits behind it
    for p in (worker, accept):
        p.join(60)
        assert p.exitcode == 0
    assert Path(log).read_text().split() == ["background"]
    with db.write(background=True):
        assert not db.writer_contended()
        local = threading.Thread(target=lambda: db.write().__enter__().__exit__(None, None, None))
        local.start()
        wait_for(lambda: db.writer is not None and db.writer.waiting > 0, timeout=60)
        assert db.writer_contended()  # a thread of this process waits
    local.join(60)
    with db.write():
        assert db.writer_contended()  # a foreground holder cannot probe: it is always told yes
    with db.write(background=True):
        assert not db.writer_contended()  # ... and the probes left nothing locked behind them
    db.dispose()


def test_postgresql_transactions_are_always_told_someone_waits():
    db = Database("postgresql+psycopg://x@127.0.0.1:1/none")  # never connected: no writer lock
    assert db.writer_contended()
