"""`litemx serve`: HTTP (REST, OpenAPI, /mcp), the SMTP MX and the background workers.

Runs everything on one asyncio loop and stops cleanly on SIGTERM/SIGINT: the MX stops taking
mail first (what was acknowledged is durable and re-driven on the next start), the workers
stop, uvicorn finishes in-flight requests, then the database pool is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from litemx.adapters.http.app import create_app
from litemx.adapters.smtp import start_mx
from litemx.app import Services, build_services
from litemx.settings import Settings
from litemx.workers import DnsRecheckWorker, InboundWorker, OutboundWorker, RetentionWorker

log = logging.getLogger("litemx")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    services = build_services(settings)
    try:
        asyncio.run(_serve(settings, services))
    finally:
        services.close()


async def _serve(settings: Settings, services: Services) -> None:
    host, port = settings.http_host_port
    # Bind before anything starts so a port in use is a plain OSError for the CLI to report.
    http_socket = socket.create_server((host, port))
    config = uvicorn.Config(create_app(services), log_level=settings.log_level.lower(), access_log=False,
                            lifespan="on")
    server = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    smtp = await start_mx(settings, services.inbound)
    workers = _start_workers(settings, services)
    task = asyncio.create_task(server.serve(sockets=[http_socket]))
    log.info("litemx serving HTTP on http://%s:%d, SMTP on %s%s%s (data: %s)", host, port, settings.smtp,
             " with STARTTLS" if settings.tls_cert else "", "" if settings.inbound_worker else ", inbound worker off",
             settings.data_dir)
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    await smtp.aclose()
    for worker in workers:
        worker.cancel()
    server.should_exit = True
    await task
    await asyncio.gather(*workers, return_exceptions=True)
    log.info("litemx stopped")


def _start_workers(settings: Settings, services: Services) -> list[asyncio.Task[None]]:
    """The background work; LITEMX_INBOUND_WORKER=0 / LITEMX_OUTBOUND_WORKER=0 leave a queue
    for a later start (or another node) to drain."""
    runs = [DnsRecheckWorker(services).run(), RetentionWorker(services).run()]
    if settings.inbound_worker:
        runs.append(InboundWorker(services).run())
    if settings.outbound_worker:
        runs.append(OutboundWorker(services).run())
    return [asyncio.create_task(run) for run in runs]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM and stops every
    listener in order (uvicorn would otherwise re-raise the signal after its own shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
