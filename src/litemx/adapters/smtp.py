"""The MX listener (SPEC §5) on aiosmtpd: the handler hooks are the whole SMTP seam.

RCPT is decided at SMTP time by the routing service; DATA answers `250` only after the
inbound service has durably stored the message. Database work runs in the default executor so
the event loop keeps serving other sessions. Replies follow RFC 5321 §4.2 with RFC 3463
enhanced status codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from litemx.service.inbound import InboundService
from litemx.service.routing import Route
from litemx.settings import Settings

log = logging.getLogger("litemx.smtp")

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: servers must accept at least 100
TEMPFAIL = "451 4.3.0 Temporary local problem, please try again later"

# The one SMTP reply table for routing refusals.
REJECT_REPLIES: dict[str, str] = {
    "invalid_address": "501 5.1.3 Bad recipient address syntax",
    "relay_denied": "550 5.7.1 Relaying denied: this server does not accept mail for that domain",
    "unknown_user": "550 5.1.1 Recipient address rejected: user unknown",
    "mailbox_disabled": "550 5.2.1 Mailbox disabled, not accepting messages",
    "domain_disabled": "550 5.7.1 Domain disabled, not accepting messages",
}


class MxHandler:
    def __init__(self, inbound: InboundService, max_bytes: int):
        self.inbound = inbound
        self.max_bytes = max_bytes

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kwargs))

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads commands one by one from the stream, so pipelined clients are served
        # correctly (RFC 2920); advertise it so clients save round trips.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        declared = _size_param(mail_options)
        if declared is not None and declared > self.max_bytes:
            return "552 5.3.4 Message size exceeds fixed maximum message size"  # RFC 1870 §6.1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.routes = []  # type: ignore[attr-defined]
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"  # the client sends the rest in a new transaction
        route: Route = await self._run(self.inbound.route_recipient, address)
        if not route.accepted:
            return REJECT_REPLIES.get(route.reject or "", "550 5.1.1 Recipient address rejected")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.routes.append(route)  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.max_bytes:
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        queue_id = await self._run(self.inbound.accept, raw, envelope.mail_from or "",
                                   list(getattr(envelope, "routes", [])), client_ip=peer,
                                   helo=session.host_name, source="smtp")
        return f"250 2.0.0 OK queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Never an exception text to the peer: log it, and ask the sender to retry (SPEC §5).
        log.error("SMTP session error", exc_info=error)
        return TEMPFAIL


def _size_param(options: list[str]) -> int | None:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def smtp_factory(settings: Settings, inbound: InboundService) -> Callable[[], SMTP]:
    handler = MxHandler(inbound, settings.max_message_bytes)

    def make() -> SMTP:
        return SMTP(handler, data_size_limit=settings.max_message_bytes, enable_SMTPUTF8=True,
                    decode_data=False, hostname=settings.hostname, ident="LiteMX ESMTP",
                    timeout=300, command_call_limit=1000)

    return make


async def start_smtp(settings: Settings, inbound: InboundService) -> asyncio.Server:
    host, port = settings.smtp_host_port
    loop = asyncio.get_running_loop()
    return await loop.create_server(smtp_factory(settings, inbound), host=host, port=port)
