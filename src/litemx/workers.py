"""Background work inside `litemx serve`: the inbound queue (more join with later issues)."""

from __future__ import annotations

import asyncio
import logging

from litemx.app import Services

log = logging.getLogger("litemx.workers")


class InboundWorker:
    """Drains the inbound queue; woken at once by each accepted message, and polls as a backstop."""

    def __init__(self, services: Services, poll_seconds: float = 2.0):
        self.services = services
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        services.inbound.on_accept = lambda: self.loop.call_soon_threadsafe(self.wake.set)

    async def run(self) -> None:
        inbound = self.services.inbound
        released = await asyncio.to_thread(inbound.release_leases)
        if released:
            log.info("re-driving %d inbound messages left by a previous process", released)
        while True:
            self.wake.clear()
            claimed = await asyncio.to_thread(inbound.process_due)
            if claimed:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
