"""A real HTTP server on a loopback port, in a thread, for tests that need sockets (CLI, MCP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from litemx.adapters.http.app import create_app
from litemx.app import Services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_http(services: Services, timeout: float = 10.0) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextmanager
def live_smtp(services: Services, timeout: float = 10.0, worker: bool = True) -> Iterator[tuple[str, int]]:
    """The MX listener (and, unless told not to, the inbound worker) on a loopback port."""
    import asyncio

    from litemx.adapters.smtp import start_smtp
    from litemx.workers import InboundWorker

    port = free_port()
    settings = services.infra.settings.with_(smtp=f"127.0.0.1:{port}")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        state["server"] = await start_smtp(settings, services.inbound)
        if worker:
            state["worker"] = asyncio.ensure_future(InboundWorker(services, poll_seconds=0.2).run())
        ready.set()

    thread = threading.Thread(target=loop.run_forever, name="live-smtp", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(timeout)
    try:
        yield "127.0.0.1", port
    finally:
        async def stop() -> None:
            server = state["server"]
            server.close()  # type: ignore[attr-defined]
            task = state.get("worker")
            if task is not None:
                task.cancel()  # type: ignore[attr-defined]
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
        services.inbound.on_accept = None


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)
