"""`litemx serve`: HTTP (REST, OpenAPI, /mcp), the SMTP MX and the background workers.

With `processes=1` everything runs on one asyncio loop in this process. Otherwise (the default
on a machine with several CPUs) supervisor.py forks front processes that serve HTTP and SMTP on
shared listening sockets and background processes that run the workers: one Python process is
CPU-bound long before the machine is (issue 8, bench/PROFILE.md).

Either way a SIGTERM/SIGINT stops cleanly: the MX stops taking mail first (what was
acknowledged is durable and re-driven on the next start), the workers stop, uvicorn finishes
in-flight requests, then the database pool is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from litemx.adapters.http.app import create_app
from litemx.adapters.smtp import MxListener, start_mx
from litemx.app import Services, build_services
from litemx.service.inbound_spool import import_leftovers
from litemx.settings import Settings
from litemx.workers import DnsRecheckWorker, InboundWorker, OutboundWorker, RetentionWorker

log = logging.getLogger("litemx")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: Settings) -> None:
    """Raises: OSError when a port cannot be bound, InvalidRequest for bad TLS settings."""
    configure_logging(settings.log_level)
    from litemx.supervisor import ProcessPlan, supervise

    plan = ProcessPlan.for_settings(settings, os.cpu_count() or 1)
    if not plan.single:
        supervise(settings, plan)
        return
    services = build_services(settings)
    try:
        # What an earlier pre-fork server spooled (supervisor.py); logs and goes on when it cannot.
        import_leftovers(services.infra.db)
        asyncio.run(_serve(settings, services))
    finally:
        services.close()


async def _serve(settings: Settings, services: Services) -> None:
    # Bind before anything starts so a port in use is a plain OSError for the CLI to report.
    http_socket = bind_http(settings)
    stop = stop_event()
    front = await Front.start(settings, services, http_socket)
    workers = start_workers(settings, services)
    log_listening(settings, "")
    await front.run_until(stop)
    await front.stop_mx()
    await stop_workers(workers, front)
    log.info("litemx stopped")


def bind_http(settings: Settings, address: tuple[str, int] | None = None, *, reuse_port: bool = False) -> socket.socket:
    """The HTTP listening socket, on `address` (default: the settings'), listening."""
    sock = socket.create_server(address or settings.http_host_port, reuse_port=reuse_port)
    # asyncio disables Nagle only on sockets it knows are TCP (proto 6); create_server makes
    # proto 0, so every keep-alive response waited ~40 ms for the client's delayed ACK.
    # Accepted sockets inherit the option on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def stop_event(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> asyncio.Event:
    """Set by any of `signals` (this process owns them; uvicorn's handlers are off)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    return stop


def log_listening(settings: Settings, processes: str) -> None:
    host, port = settings.http_host_port
    log.info("litemx serving HTTP on http://%s:%d, SMTP on %s%s%s%s (data: %s)", host, port, settings.smtp,
             " with STARTTLS" if settings.tls_cert else "", "" if settings.inbound_worker else ", inbound worker off",
             processes, settings.data_dir)


@dataclass
class Front:
    """The listeners of one process: uvicorn (REST, OpenAPI, /mcp) and the MX."""

    http: uvicorn.Server
    http_task: asyncio.Task[None]
    mx: MxListener

    @classmethod
    async def start(cls, settings: Settings, services: Services, http_socket: socket.socket,
                    smtp_socket: socket.socket | None = None) -> Front:
        config = uvicorn.Config(create_app(services), log_level=settings.log_level.lower(), access_log=False,
                                lifespan="on")
        server = _Server(config)
        mx = await start_mx(settings, services.inbound, sock=smtp_socket)
        return cls(server, asyncio.create_task(server.serve(sockets=[http_socket])), mx)

    async def run_until(self, stop: asyncio.Event) -> None:
        await asyncio.wait([self.http_task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)

    async def stop_mx(self) -> None:
        await self.mx.aclose()

    async def stop_http(self) -> None:
        self.http.should_exit = True
        await self.http_task


def start_workers(settings: Settings, services: Services, *, scheduled: bool = True,
                  release_leases: bool = True) -> list[asyncio.Task[None]]:
    """The background work; LITEMX_INBOUND_WORKER=0 / LITEMX_OUTBOUND_WORKER=0 leave a queue
    for a later start (or another node) to drain. `scheduled`: the DNS re-check, retention and
    outbound delivery, which one process per node runs (their job leases span nodes)."""
    runs = [DnsRecheckWorker(services).run(), RetentionWorker(services).run()] if scheduled else []
    if settings.inbound_worker:
        runs.append(InboundWorker(services, release_leases=release_leases).run())
    if scheduled and settings.outbound_worker:
        runs.append(OutboundWorker(services).run())
    return [asyncio.create_task(run) for run in runs]


async def stop_workers(workers: list[asyncio.Task[None]], front: Front | None = None) -> None:
    for worker in workers:
        worker.cancel()
    if front is not None:
        await front.stop_http()
    await asyncio.gather(*workers, return_exceptions=True)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM and stops every
    listener in order (uvicorn would otherwise re-raise the signal after its own shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
