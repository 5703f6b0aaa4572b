"""`litemx serve` on several processes: one Python process is CPU-bound long before the machine is.

The supervisor (this process) migrates the database, binds the HTTP and SMTP ports, and forks
(pre-fork, like Postfix's master or gunicorn):

- `processes` front processes. Each serves HTTP (uvicorn) on a listening socket of its own,
  all bound to one port (SO_REUSEPORT, _http_listeners), and SMTP (the MX) on one socket they share;
  the kernel hands each new connection to one of them.
- `worker_processes` background processes, at a lower CPU priority so that accepting mail and
  answering requests come first while processing catches up. Each drains the inbound queue
  (leases keep them apart); the first also runs outbound delivery, the DNS re-check and
  retention (their job leases keep nodes apart too).

Nothing is shared in memory: every process has its own database pool and caches, and the
database is the only place state lives (ARCHITECTURE.md: several nodes may share one
database). A front process wakes the workers through a pipe (one byte per accepted message
or queued send), so processing starts at once instead of at the next poll.

On SQLite a front answers `250` once the message is synced into its own spool file, and the
workers import the spools into the queue (storage/spool.py, SpoolImporter below): accepting
never waits for the database's single writer lock, which the workers' transactions hold too.
The supervisor imports what is left before it starts the children and after they stopped.

A child that dies is started again (a bounded number of times per minute); a child whose
supervisor dies is killed by the kernel (PR_SET_PDEATHSIG), so a crash of `litemx serve` is
a crash of all of it, never orphaned listeners. SIGTERM/SIGINT stop the children with SIGTERM
(each shuts down cleanly, see server.py) and wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from litemx.adapters.smtp import tls_context
from litemx.app import Services, build_services
from litemx.server import Front, bind_http, log_listening, start_workers, stop_event, stop_workers
from litemx.service.inbound_spool import SpoolImport, import_leftovers, spool_directory
from litemx.settings import Settings
from litemx.storage.db import Database
from litemx.storage.spool import ImportIncomplete, SpoolWriter

log = logging.getLogger("litemx")

WORKER_NICE = 10  # background processes yield the CPU to the listeners under load, but not so far
# that one holding the database's writer lock is starved while accepts wait for it
STOP_SECONDS = 30.0  # a child's clean shutdown (MX grace 10 s + in-flight requests) before SIGKILL
RESTARTS_PER_MINUTE = 5  # more than this and the supervisor gives up instead of crash-looping
LISTEN_BACKLOG = 1024  # connections the kernel queues for the listeners while all are busy
MAX_AUTO_PROCESSES = 8
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SPOOL_POLL_SECONDS = 1.0  # a worker imports the spool at least this often (wake-ups come first)
SPOOL_IMPORT_GAP = 0.05  # ... and at most this often
SPOOL_RETRY_FIRST = 0.5  # after a failed import (database down, locked), wait this long, doubling ...
SPOOL_RETRY_MAX = 30.0  # ... up to this


@dataclass(frozen=True)
class ProcessPlan:
    fronts: int
    workers: int

    @property
    def single(self) -> bool:
        return self.fronts <= 1

    @classmethod
    def for_settings(cls, settings: Settings, cpus: int) -> ProcessPlan:
        auto = max(1, min(cpus, MAX_AUTO_PROCESSES))
        return cls(settings.processes or auto, settings.worker_processes or auto)


class Nudge:
    """A non-blocking pipe: any process pokes it, a worker process waits on it."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def poke(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups nobody has read yet: the worker is busy anyway

    def listen(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        loop.add_reader(self.read_fd, self._drain, wake)

    def _drain(self, wake: Callable[[], None]) -> None:
        try:
            os.read(self.read_fd, 65536)
        except BlockingIOError:
            return  # another worker process took these bytes
        wake()


@dataclass
class Shared:
    """What the supervisor makes once and every child inherits."""

    settings: Settings
    http: list[socket.socket]  # one listening socket per front process, all on one port: _http_listeners
    smtp: socket.socket  # one, shared by every front: see _http_listeners for why not one each
    inbound: Nudge = field(default_factory=Nudge)
    outbound: Nudge = field(default_factory=Nudge)


def supervise(settings: Settings, plan: ProcessPlan) -> None:
    """Run `plan` until SIGTERM/SIGINT. Raises: OSError (ports), InvalidRequest (TLS, blob store,
    outbound settings), SystemExit(1) when children keep dying."""
    services = build_services(settings)  # migrate once, and fail here on bad settings
    try:
        # What a previous server had claimed is due again now; the workers never release leases
        # themselves (a restarted one would take its live siblings' claimed rows too).
        services.inbound.release_leases()
        # Mail a previous server spooled and did not import (logged, not fatal: the workers retry).
        import_leftovers(services.infra.db)
    finally:
        services.close()
    tls_context(settings)
    smtp = _listen(socket.create_server(settings.smtp_host_port))
    shared = Shared(settings, _http_listeners(settings, plan.fronts), smtp)
    supervisor = Supervisor(shared, [("front", i) for i in range(plan.fronts)] +
                            [("worker", i) for i in range(plan.workers)])
    log_listening(settings, f", {plan.fronts} front + {plan.workers} worker processes")
    run_then_import(supervisor, settings)
    log.info("litemx stopped")


def run_then_import(supervisor: Supervisor, settings: Settings) -> None:
    """Run the children; then, however that ended (also SystemExit when they keep dying),
    queue what the fronts spooled last."""
    try:
        supervisor.run()
    finally:
        _import_at_stop(settings)


def _import_at_stop(settings: Settings) -> None:
    """Queue what the fronts spooled last, so a stopped server leaves nothing in its spool."""
    db = Database(settings.resolved_database_url)
    try:
        import_leftovers(db)
    except Exception:  # noqa: BLE001 - top-level: the records stay and the next start imports them
        log.exception("could not import the spool at stop")
    finally:
        db.dispose()


def _listen(sock: socket.socket) -> socket.socket:
    sock.listen(LISTEN_BACKLOG)
    return sock


def _http_listeners(settings: Settings, count: int) -> list[socket.socket]:
    """One HTTP listening socket per front process, all on one port (SO_REUSEPORT): the
    kernel spreads new connections over them by a hash of each connection's addresses. With
    one shared socket, the front that woke first took every pending connection (asyncio's
    accept loop takes up to its backlog at once), and 16 keep-alive clients often all landed
    on one of two fronts (bench/PROFILE.md, session 8). The supervisor keeps every socket open,
    so connections hashed to a front that is being restarted wait in its queue for it. The
    trade-off: the kernel does not look at whether a front is accepting, so a front that hangs
    (alive, its loop blocked) holds its share of new connections, where a shared socket would
    have let the others take them.

    HTTP only. SMTP keeps one shared socket: its sessions are short, so the load still spreads
    as fronts get busy. Gathering them on the front that is awake also makes its spool's group
    commits larger: with one socket per front the durable ingest was 8-15 % slower (A/B, two
    runs each: 1,032 and 1,092 against 1,139 and 1,232 msg/s)."""
    first = bind_http(settings, reuse_port=True)
    host, port = settings.http_host_port[0], first.getsockname()[1]  # the port it got, for port 0
    rest = [bind_http(settings, (host, port), reuse_port=True) for _ in range(count - 1)]
    return [_listen(sock) for sock in (first, *rest)]


class Supervisor:
    def __init__(self, shared: Shared, roles: list[tuple[str, int]]):
        self.shared = shared
        self.roles = roles
        self.children: dict[int, tuple[str, int]] = {}
        self.restarts: list[float] = []
        self.stopping = False

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        gc.freeze()  # what was built so far stays shared copy-on-write with every child
        for role in self.roles:
            self._spawn(role)
        try:
            while not self.stopping:
                self._reap()
                time.sleep(0.2)
        finally:
            self._stop_all()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _spawn(self, role: tuple[str, int]) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(role, self.shared, parent)  # never returns
        self.children[pid] = role

    def _reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            role = self.children.pop(pid, None)
            if role is None or self.stopping:
                continue
            log.error("%s process %d (pid %d) exited with status %d; starting it again", role[0], role[1], pid,
                      os.waitstatus_to_exitcode(status))
            self._count_restart()
            self._spawn(role)

    def _count_restart(self) -> None:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > RESTARTS_PER_MINUTE:
            log.error("processes keep dying (%d restarts in a minute): stopping", len(self.restarts))
            self.stopping = True
            raise SystemExit(1)

    def _stop_all(self) -> None:
        for pid in self.children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in self.children:
            log.error("pid %d did not stop within %.0f s: killed", pid, STOP_SECONDS)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children.clear()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- children


def _child(role: tuple[str, int], shared: Shared, parent: int) -> None:
    """The body of a forked child; leaves only through os._exit."""
    code = 1
    try:
        _die_with(parent)
        # The terminal's Ctrl-C reaches the whole process group; the supervisor then sends SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if role[0] == "worker":
            os.nice(WORKER_NICE)
            asyncio.run(_run_worker(shared, role[1]))
        else:
            asyncio.run(_run_front(shared, role[1]))
        code = 0
    except BaseException:  # noqa: BLE001 - top-level handler of a child process: log, exit non-zero
        log.exception("%s process %d failed", *role)
    finally:
        logging.shutdown()
        os._exit(code)


def _die_with(parent: int) -> None:
    """Ask the kernel to SIGKILL this child when the supervisor dies (Linux), then check it is alive."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: a dead supervisor leaves its children to their next SIGTERM
    if os.getppid() != parent:
        os._exit(1)


async def _run_front(shared: Shared, index: int) -> None:
    services = build_services(shared.settings, migrate=False)
    try:
        services.inbound.on_accept = shared.inbound.poke
        services.sending.on_queue = shared.outbound.poke
        directory = spool_directory(services.infra.db)
        spool = services.inbound.spool = SpoolWriter(directory) if directory is not None else None
        stop = stop_event((signal.SIGTERM,))
        front = await Front.start(shared.settings, services, shared.http[index], shared.smtp)
        await front.run_until(stop)
        await front.stop_mx()
        if spool is not None:
            await spool.close()  # sealed: the workers (or the supervisor at stop) import the rest
        await front.stop_http()
    finally:
        services.close()


async def _run_worker(shared: Shared, index: int) -> None:
    services = build_services(shared.settings, migrate=False)
    try:
        stop = stop_event((signal.SIGTERM,))
        scheduled = index == 0
        workers = start_workers(shared.settings, services, scheduled=scheduled, release_leases=False)
        loop = asyncio.get_running_loop()
        directory = spool_directory(services.infra.db)
        importer = SpoolImporter.start(services, directory) if directory is not None else None
        if importer is not None:
            # Even with processing off (LITEMX_INBOUND_WORKER=0), accepted mail reaches the queue.
            shared.inbound.listen(loop, importer.wake.set)
        elif shared.settings.inbound_worker:
            shared.inbound.listen(loop, lambda: _call(services.inbound.on_accept))
        if scheduled and shared.settings.outbound_worker:
            shared.outbound.listen(loop, lambda: _call(services.sending.on_queue))
        await stop.wait()
        await stop_workers([*workers, *([importer.task] if importer is not None else [])])
    finally:
        services.close()


def _call(wake: Callable[[], None] | None) -> None:
    if wake is not None:
        wake()


@dataclass
class SpoolImporter:
    """A worker process's part of the accept spool: woken by the fronts' pipe (and polling as a
    backstop), it moves spooled records into the queue, then wakes the inbound worker."""

    services: Services
    spool: SpoolImport
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] = field(init=False)

    @classmethod
    def start(cls, services: Services, directory: Path) -> SpoolImporter:
        importer = cls(services, SpoolImport(services.infra.db, directory))
        importer.task = asyncio.create_task(importer.run())
        return importer

    retry: float = 0.0  # the wait after the last failed pass; 0 while imports succeed

    async def run(self) -> None:
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(self.wake.wait(), SPOOL_POLL_SECONDS)
            self.wake.clear()
            if await self._import() or woken:
                # Woken also for mail that bypassed the spool (large messages are committed directly).
                _call(self.services.inbound.on_accept)
            # A pass that finds records costs a transaction and three fsyncs however many it
            # carries: during a burst, one pass per gap imports many at once, not one per wake-up.
            # A failing database is not hammered (nor the log flooded) every gap.
            await asyncio.sleep(max(SPOOL_IMPORT_GAP, self.retry))

    async def _import(self) -> int:
        job = asyncio.ensure_future(asyncio.to_thread(self.spool.run))
        try:
            stored = await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])  # let the thread finish its transaction before the pool closes
            raise
        except Exception as exc:  # noqa: BLE001 - top-level handler: the records stay for the next pass
            self._failed(exc)
            return exc.stored if isinstance(exc, ImportIncomplete) else 0
        self.retry = 0.0
        return stored

    def _failed(self, exc: Exception) -> None:
        first = self.retry == 0.0
        self.retry = min(SPOOL_RETRY_MAX, self.retry * 2 or SPOOL_RETRY_FIRST)
        cause = exc.__cause__ or exc
        # The traceback once per streak of failures; then one line per attempt.
        log.error("spool import failed (%s: %s); next attempt in %.1f s", type(cause).__name__, cause,
                  self.retry, exc_info=exc if first else None)
