#!/usr/bin/env python3
"""The Python ceiling: a bare aiosmtpd listener that accepts every recipient and discards DATA.

    python bench/aiosmtpd_sink.py PORT

Same aiosmtpd, same SMTP options and the same event loop as `litemx serve` (see
litemx.adapters.smtp.smtp_factory), but no routing, no storage, no thread hop.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session


class Discard:
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK discarded"


async def main(port: int) -> None:
    handler = Discard()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=25 * 1024 * 1024, enable_SMTPUTF8=True, decode_data=False,
                     hostname="sink.bench.example", ident="bench aiosmtpd sink", timeout=300,
                     command_call_limit=1000),
        host="127.0.0.1", port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
