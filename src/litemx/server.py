"""`litemx serve`: HTTP (REST, OpenAPI, /mcp) now; the SMTP listener and workers join here.

Runs everything on one asyncio loop and stops cleanly on SIGTERM/SIGINT: uvicorn stops
accepting, finishes in-flight requests, then the database pool is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
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
    config = uvicorn.Config(create_app(services), host=host, port=port, log_level=settings.log_level.lower(),
                            access_log=False, lifespan="on")
    server = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    smtp = await start_mx(settings, services.inbound)
    # LITEMX_INBOUND_WORKER=0: accept and queue only; a later start (or another node) delivers.
    worker = asyncio.create_task(InboundWorker(services).run()) if settings.inbound_worker else None
    recheck = asyncio.create_task(DnsRecheckWorker(services).run())
    retention = asyncio.create_task(RetentionWorker(services).run())
    outbound = asyncio.create_task(OutboundWorker(services).run()) if settings.outbound_worker else None  # noqa: F841
    task = asyncio.create_task(server.serve())
    log.info("litemx serving HTTP on http://%s:%d, SMTP on %s%s%s (data: %s)", host, port, settings.smtp,
             " with STARTTLS" if settings.tls_cert else "", "" if worker else ", inbound worker off",
             settings.data_dir)
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    # Stop taking mail first; what was acknowledged is already durable and is re-driven on start.
    await smtp.aclose()
    if worker is not None:
        worker.cancel()
    recheck.cancel()
    retention.cancel()
    server.should_exit = True
    await task
    log.info("litemx stopped")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM and stops every
    listener in order (uvicorn would otherwise re-raise the signal after its own shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
