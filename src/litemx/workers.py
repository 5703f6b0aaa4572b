"""Background work inside `litemx serve`: the inbound queue (more join with later issues)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from litemx.app import Services
from litemx.service.retention import RunInterrupted

log = logging.getLogger("litemx.workers")


class InboundWorker:
    """Drains the inbound queue; woken at once by each accepted message, and polls as a backstop.

    Durability does not depend on it: every row it has not finished stays pending in the
    database, and a restarted worker (here or on another node) re-drives it.
    """

    def __init__(self, services: Services, poll_seconds: float = 2.0, release_leases: bool = True):
        self.services = services
        self.poll_seconds = poll_seconds
        # False beside other live workers (supervisor.py): releasing would hand their claimed
        # rows to us as well; the supervisor releases a dead process's leases once, at start.
        self.release_leases = release_leases
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        services.inbound.on_accept = self._wake_from_thread

    def _wake_from_thread(self) -> None:
        # Called from the executor thread that committed the message.
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake.set)

    async def run(self) -> None:
        inbound = self.services.inbound
        try:
            await self._step(self._warm_up)
            # What a dead process had leased is due again now (processing is idempotent).
            while self.release_leases and (released := await self._step(inbound.release_leases)) is None:
                await self._idle()
            if self.release_leases and released:
                log.info("re-driving %d inbound messages left by a previous process", released)
            while True:
                self.wake.clear()
                if not await self._step(self._pass):
                    await self._idle()
        finally:
            if inbound.on_accept == self._wake_from_thread:
                inbound.on_accept = None

    def _warm_up(self) -> int:
        self.services.inbound.warm_up()  # before the first message, not while it waits
        return 0

    def _pass(self) -> int:
        # Called again at once while it finds work, so it may lease the next pass's rows.
        return self.services.inbound.process_due(lease_ahead=True)

    async def _step(self, work: Callable[[], int]) -> int | None:
        """Run one unit of work in a thread; None when it failed (logged, tried again later)."""
        job = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: let it finish its transaction before whoever
            # cancelled us closes the database under it.
            await asyncio.wait([job])
            raise
        except Exception:  # noqa: BLE001 - top-level handler: a database outage must not end the
            # worker; the rows stay pending and the next pass tries again.
            log.exception("inbound worker pass failed")
            return None

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.poll_seconds)


class DnsRecheckWorker:
    """Re-checks every domain's DNS records every `dns_recheck_seconds` (0 turns it off), so
    readiness follows DNS changes nobody asked about and each change lands in the audit log
    (`domain.dns_changed`). Every node polls; the `dns_recheck` job lease lets one of them run
    each due pass, so several nodes never audit the same change twice."""

    JOB = "dns_recheck"
    LEASE = timedelta(minutes=15)

    def __init__(self, services: Services, interval_seconds: float | None = None, holder: str | None = None):
        self.services = services
        self.interval = services.infra.settings.dns_recheck_seconds if interval_seconds is None else interval_seconds
        self.poll = min(max(self.interval, 1), 300)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Cancelling the task cannot stop its thread; this tells the pass to stop between domains.
        self.stopping = threading.Event()

    async def run(self) -> None:
        if self.interval <= 0:
            log.info("DNS re-check disabled (dns_recheck_seconds=0)")
            return
        while True:
            await self.run_once()
            await asyncio.sleep(self.poll)

    async def run_once(self) -> dict[str, int] | None:
        """One pass if it is due and ours; a failed pass is logged and the next one runs on schedule."""
        try:
            summary = await asyncio.to_thread(self._pass)
        except asyncio.CancelledError:
            self.stopping.set()
            raise
        except Exception:  # noqa: BLE001 - top-level handler: a database hiccup must not end the loop
            log.exception("DNS re-check pass failed")
            return None
        if summary is not None:
            log.info("DNS re-check: %(checked)d checked, %(changed)d changed, %(unavailable)d unavailable",
                     summary)
        return summary

    def _pass(self) -> dict[str, int] | None:
        jobs = self.services.jobs
        if not jobs.claim(self.JOB, self.holder, self.LEASE, timedelta(seconds=self.interval)):
            return None
        ran = False
        try:
            summary = self.services.domains_dns.recheck_all(self.stopping.is_set)
            ran = True
            return summary
        finally:
            jobs.finish(self.JOB, self.holder, ran=ran)


class RetentionWorker:
    """The scheduled retention cleanup (SPEC §10): every `retention_interval_seconds` across the
    cluster, not per node — each node polls, and the `job_locks` lease plus its `last_run_at`
    let exactly one of them run each due pass. 0 turns the schedule off.

    A pass runs in a thread in short batches; stopping the server sets `stopping`, and the
    pass ends at the next batch boundary (every batch is its own transaction, so that is safe)
    without being marked done, so the next start — here or on another node — runs it again.
    """

    def __init__(self, services: Services, interval_seconds: float | None = None,
                 poll_seconds: float | None = None, holder: str | None = None):
        self.services = services
        settings = services.infra.settings
        self.interval = settings.retention_interval_seconds if interval_seconds is None else interval_seconds
        self.poll = poll_seconds if poll_seconds is not None else min(max(self.interval, 1), 300)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self._renewed = time.monotonic()

    async def run(self) -> None:
        if self.interval <= 0:
            log.info("scheduled retention disabled (retention_interval_seconds=0)")
            return
        while True:
            await self.run_once()
            await asyncio.sleep(self.poll)

    async def run_once(self) -> dict[str, Any] | None:
        """Claim and run one pass if it is due; None when not due, not ours, or failed (logged)."""
        try:
            return await asyncio.to_thread(self._pass)
        except asyncio.CancelledError:
            self.stopping.set()
            raise
        except Exception:  # noqa: BLE001 - top-level handler: a failed pass (database or blob store
            # outage) must not end the schedule; the lease is released and a later poll retries.
            log.exception("retention pass failed")
            return None

    def _pass(self) -> dict[str, Any] | None:
        retention = self.services.retention
        if not retention.claim_job(self.holder, timedelta(seconds=self.interval)):
            return None
        self._renewed = time.monotonic()
        ran = False
        try:
            result = retention.run_all(heartbeat=self._heartbeat)
            ran = True
            return result
        except RunInterrupted:
            log.info("retention pass interrupted by shutdown; it runs again on the next start")
            return None
        finally:
            retention.finish_job(self.holder, ran=ran)

    def _heartbeat(self) -> None:
        """Between batches: stop when asked, and keep the lease alive during a long pass.

        Raises: RunInterrupted when the server is stopping.
        """
        if self.stopping.is_set():
            raise RunInterrupted()
        if time.monotonic() - self._renewed > 60:
            self.services.retention.renew_job(self.holder)
            self._renewed = time.monotonic()


class OutboundWorker:
    """Drains the outbound delivery queue (SPEC §6): claim due deliveries, hand them to the
    transport, record each outcome. Woken at once by each accepted send; polls as a backstop
    for retries coming due. Nothing lives only here: unrecorded claims come due again when
    their lease ends (service/delivery.py).
    """

    def __init__(self, services: Services, poll_seconds: float = 5.0, batch: int = 50):
        self.services = services
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.wake: asyncio.Event | None = None

    async def step(self) -> int:
        """One pass: claim, deliver, record; returns how many deliveries were attempted.

        Raises: database and blob store errors (`run` logs them and carries on).
        """
        outbound = self.services.outbound
        items = await asyncio.to_thread(outbound.claim_due, self.batch)
        if not items:
            return 0
        outcomes = await outbound.transport.deliver(items)
        await asyncio.to_thread(outbound.record, outcomes)
        return len(items)

    async def run(self) -> None:
        loop, wake = asyncio.get_running_loop(), asyncio.Event()
        self.wake = wake
        sending = self.services.sending
        sending.on_queue = lambda: loop.is_closed() or loop.call_soon_threadsafe(wake.set)
        try:
            while True:
                wake.clear()
                if not await self._guarded_step():
                    await self._idle(wake)
        finally:
            sending.on_queue = None

    async def _guarded_step(self) -> int:
        try:
            attempted = await self.step()
            if not attempted:
                await asyncio.to_thread(self.services.outbound.prune)
            return attempted
        except Exception:  # noqa: BLE001 - top-level handler: an outage must not end the worker;
            # leased deliveries come due again when their lease ends.
            log.exception("outbound worker pass failed")
            return 0

    async def _idle(self, wake: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(wake.wait(), self.poll_seconds)
        except TimeoutError:
            pass
