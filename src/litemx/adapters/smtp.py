"""The MX listener (SPEC §5) on aiosmtpd 1.4: the handler hooks are the SMTP seam.

RCPT is decided at SMTP time by the routing service; DATA answers `250` only after
InboundService has made the message durable: a small one synced into the front process's spool
(storage/spool.py) or its queue row committed, from the event loop; a large one fsynced into the
blob store and its row committed, from a thread.
Database and blob-store work runs in the MX's own thread pool so the event loop keeps serving
other sessions. It is sized for waiting, not for CPU: an accept spends most of its time in
fsync with the GIL released, and the more accepts are in flight the more queue rows share one
group commit (storage/group_commit.py); asyncio's default pool has cpu_count + 4 threads.

`MxSMTP` adapts aiosmtpd where an Internet-facing MX needs more than its defaults:

- a cap on concurrent sessions (`421 4.7.0`), and an idle timeout that says `421 4.4.2`
  before it closes (RFC 5321 §4.5.3.2, §3.8);
- a DATA reader that is liberal about content — lines over 998 octets, bare LF and NUL are
  stored as sent, the parser copes — strict about framing — only CRLF.CRLF ends the data
  (RFC 5321 §4.1.1.4), so bare-LF "smuggling" variants stay message content — and holds at most
  the size limit in memory whatever the client sends (RFC 1870, `552 5.3.4`);
- an RFC 3463 enhanced status code on every reply, so ENHANCEDSTATUSCODES (RFC 2034) is true;
- no AUTH: this is an MX, not a submission server (sending goes through the API);
- a `Received:` trace header (RFC 5321 §4.4) prepended to every stored message;
- a per-session limit of refused recipients (`421 4.7.0`), which bounds address probing and
  the `inbound.rejected` audit rows one connection can cause.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import re
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from email.utils import format_datetime
from functools import partial
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from litemx.core.ids import new_id
from litemx.errors import InvalidRequest
from litemx.service.inbound import InboundService, SpoolError
from litemx.service.routing import Route
from litemx.settings import Settings

log = logging.getLogger("litemx.smtp")

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: servers must accept at least 100
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3: reverse-path and forward-path, in octets
SHUTDOWN_GRACE = 10.0  # seconds a session storing a message may take to get its reply
MX_THREADS = 32  # routing lookups and accepts in flight at once (capped by smtp_max_connections)

TEMPFAIL = "451 4.3.0 Temporary local problem, please try again later"
TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"  # RFC 1870 §6.3
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"  # RFC 5321 §4.5.3.1.10: client retries the rest
TOO_MANY_REJECTED = "421 4.7.0 Too many rejected recipients, closing connection"
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address requires SMTPUTF8"  # RFC 6531 §3.7.4.1

# The one SMTP reply table for routing refusals.
REJECT_REPLIES: dict[str, str] = {
    "invalid_address": "501 5.1.3 Bad recipient address syntax",
    "relay_denied": "550 5.7.1 Relaying denied: this server does not accept mail for that domain",
    "unknown_user": "550 5.1.1 Recipient address rejected: user unknown",
    "mailbox_disabled": "550 5.2.1 Mailbox disabled, not accepting messages",
    "domain_disabled": "550 5.7.1 Domain disabled, not accepting messages",
}

# RFC 3463 codes for the replies aiosmtpd writes itself without one (RFC 2034 §3: with
# ENHANCEDSTATUSCODES every 2xx/4xx/5xx reply but the greeting and HELO/EHLO carries one).
_ENHANCED: dict[str, str] = {
    "421": "4.7.0", "451": "4.3.0", "452": "4.5.3", "454": "4.7.0", "500": "5.5.2", "501": "5.5.4",
    "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0", "538": "5.7.11", "552": "5.3.4",
    "553": "5.1.3", "554": "5.7.0", "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")


def with_enhanced_code(reply: str) -> str:
    """Insert an RFC 3463 code into a 2xx/4xx/5xx reply that lacks one; others pass unchanged."""
    if len(reply) < 4 or reply[0] not in "245" or _HAS_ENHANCED.match(reply):
        return reply
    code, sep, text = reply[:3], reply[3], reply[4:]
    return f"{code}{sep}{_ENHANCED.get(code, code[0] + '.0.0')} {text}".rstrip()


# --------------------------------------------------------------------------- sessions


class SessionGate:
    """The live sessions of one listener: the connection cap, and ending them at shutdown."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sessions: set[MxSMTP] = set()
        self._emptied: asyncio.Event | None = None

    def admit(self, session: MxSMTP) -> bool:
        if len(self.sessions) >= self.limit:
            return False
        self.sessions.add(session)
        return True

    def release(self, session: MxSMTP) -> None:
        self.sessions.discard(session)
        if not self.sessions and self._emptied is not None:
            self._emptied.set()

    async def drain(self, grace: float) -> None:
        """End every session: idle ones at once, ones storing a message after their reply."""
        self._emptied = asyncio.Event()
        for session in list(self.sessions):
            session.shut_down()
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), grace)
        for session in list(self.sessions):
            session.say_goodbye(session.shutdown_reply)


class MxEnvelope(Envelope):
    """aiosmtpd's envelope plus the routing decision of each accepted RCPT."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[Route] = []


class MxSMTP(SMTP):
    """aiosmtpd's protocol with the MX behaviour described in the module docstring."""

    def __init__(self, handler: MxHandler, gate: SessionGate, *, max_rejected: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps command_size_limits on the class and every EHLO of every session
        # grows it; an instance dict keeps each session's limits its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.gate = gate
        self.max_rejected = max_rejected
        self.rejected_recipients = 0
        self.admitted = False  # counted by the gate (a refused connection never is)
        self.greeted = False
        self.verbatim = False  # HELO/EHLO answers carry no enhanced code (RFC 2034 §3)
        self.busy = False  # the DATA hook is storing a message
        self.closing = False  # the server is stopping: close after the current reply
        self.last_touch = 0.0
        self.shutdown_reply = f"421 4.3.2 {self.hostname} Service shutting down"

    # -- connection lifecycle -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # a new connection, not the STARTTLS re-entry
            if not self.gate.admit(self):
                # RFC 5321 §3.1: a server that cannot take the session answers 421 and closes.
                _write_and_close(transport, f"421 4.7.0 {self.hostname} Too many connections, try again later")
                return
            self.admitted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.admitted:
            return  # refused at the door: aiosmtpd set nothing up to tear down
        self.gate.release(self)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        if self.transport is None:
            return  # the connection ended while the timer was armed
        # RFC 5321 §4.5.3.2 lets a server drop a silent client; §3.8 says to answer 421 first.
        self.say_goodbye(f"421 4.4.2 {self.hostname} Error: timeout exceeded")

    def shut_down(self) -> None:
        self.closing = True
        if not self.busy:
            self.say_goodbye(self.shutdown_reply)

    def say_goodbye(self, reply: str) -> None:
        """Write a final reply and close, outside the command loop (timer, shutdown)."""
        if self.transport is not None and not self.transport.is_closing():
            _write_and_close(self.transport, reply)

    def _touch(self) -> None:
        """Re-arm the idle timer while DATA flows, at most a few times per timeout period."""
        now = self.loop.time()
        if now - self.last_touch >= min(1.0, self._timeout_duration / 4):
            self.last_touch = now
            self._reset_timeout()

    # -- replies --------------------------------------------------------------------------
    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = self._enhance(status)
        await super().push(status)

    def _enhance(self, reply: str) -> str:
        if not self.greeted:  # the 220 greeting is exempt (RFC 2034 §3)
            self.greeted = True
            return reply
        return reply if self.verbatim else with_enhanced_code(reply)

    def _create_envelope(self) -> MxEnvelope:
        return MxEnvelope()

    def __dir__(self) -> list[str]:
        return _hook_names(type(self), ("smtp_", "auth_"))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parsing (the same email._header_value_parser calls and limits)
        without the typing.Protocol class it defines on every MAIL and RCPT: ~3 % of an MX
        process's CPU under load. Returns (None, None) for a path that does not parse."""
        if not arg:
            return "", ""
        parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
        try:
            address, rest = parse(arg)
        except HeaderParseError:
            return None, None
        addr = str(address.addr_spec)
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if self.transport is None or self.transport.is_closing():
            # Closed by a limit, the timer or shutdown: pipelined commands still in the buffer
            # must not reach the database. This reply is never delivered.
            return "421 4.3.0 Session closing"
        return await super()._call_handler_hook(command, *args)

    # -- commands -------------------------------------------------------------------------
    async def smtp_EHLO(self, hostname: str) -> None:
        self.verbatim = bool(hostname)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self.verbatim = False

    async def smtp_HELO(self, hostname: str) -> None:
        self.verbatim = bool(hostname)
        try:
            await super().smtp_HELO(hostname)
        finally:
            self.verbatim = False

    async def smtp_AUTH(self, arg: str) -> None:
        await self.push("502 5.5.1 AUTH not available: this is an MX, not a submission server")

    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(arg)
        if self.rejected_recipients >= self.max_rejected and self.transport is not None:
            # Like Postfix's hard error limit: a client probing addresses is cut off.
            await self.push(TOO_MANY_REJECTED)
            self.transport.close()

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_data()
        if content is None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(TOO_BIG)  # RFC 5321 §4.2.5: the reply waits for the end of the data
            return
        self.envelope.content = self.envelope.original_content = content
        await self.push(await self._store())
        if self.closing:
            self.say_goodbye(self.shutdown_reply)

    async def _store(self) -> str:
        """Run the DATA hook with the idle timer stopped: this wait is ours, not the client's.

        An exception goes on to aiosmtpd's guard, which answers through handle_exception (451).
        """
        self.busy = True
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            return cast(str, await self._call_handler_hook("DATA"))
        finally:
            self.busy = False
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            if self.transport is not None:
                self._reset_timeout()

    async def _read_data(self) -> bytes | None:
        """The DATA payload with dot-stuffing undone (RFC 5321 §4.5.2); None when too big.

        Past the size limit the rest is read and dropped, so memory stays bounded.
        """
        limit = self.data_size_limit or 0
        body = bytearray()
        size = 0
        at_line_start = True
        self.last_touch = self.loop.time()
        while True:
            chunk = await self._read_chunk()
            self._touch()
            if at_line_start and chunk == b".\r\n":
                break
            if at_line_start and chunk[:1] == b".":
                chunk = chunk[1:]
            at_line_start = chunk.endswith(b"\r\n")
            size += len(chunk)
            if not limit or size <= limit:
                body += chunk
            elif body:
                body.clear()
        return bytes(body) if not limit or size <= limit else None

    async def _read_chunk(self) -> bytes:
        """One CRLF-terminated line, or a piece of a line longer than the reader's buffer limit."""
        try:
            return await self._reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as overrun:
            return await self._reader.read(overrun.consumed)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("connection closed during DATA") from None


_HOOK_NAMES: dict[tuple[type, tuple[str, ...]], list[str]] = {}


def _hook_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The attribute names aiosmtpd looks for on each new connection, once per class.

    aiosmtpd's SMTP.__init__ finds the command methods (`smtp_*`), AUTH mechanisms (`auth_*`)
    and handler hooks (`handle_*`) with dir() and inspect.getmembers() of the protocol and the
    handler, for every connection (with inspect.signature below, MxSMTP() took 0.26-0.39 ms of
    CPU here, 0.10-0.19 ms without). Those names are fixed by the classes, so MxSMTP and
    MxHandler answer dir() with them alone, computed on first use. (dir() of these objects
    therefore lists only their hooks.)
    """
    names = _HOOK_NAMES.get((cls, prefixes))
    if names is None:
        names = _HOOK_NAMES[(cls, prefixes)] = sorted(n for n in dir(cls) if n.startswith(prefixes))
    return list(names)


def _write_and_close(transport: asyncio.BaseTransport, reply: str) -> None:
    writer = cast(asyncio.WriteTransport, transport)
    writer.write(reply.encode("ascii") + b"\r\n")
    writer.close()  # flushes what was written, then closes


# --------------------------------------------------------------------------- handler


class MxHandler:
    """The hooks: envelope checks, routing, durable acceptance."""

    def __init__(self, inbound: InboundService, executor: ThreadPoolExecutor | None = None):
        self.inbound = inbound
        self.executor = executor  # None: asyncio's default pool

    def __dir__(self) -> list[str]:
        return _hook_names(type(self), ("handle_", "auth_"))  # see _hook_names

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args, **kwargs))

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return ehlo_lines(responses)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        # aiosmtpd has already refused a SIZE= over the limit (552, RFC 1870 §6.1).
        problem = _path_problem(address, envelope.smtp_utf8, "5.1.7", "sender")
        if problem is not None:
            return problem
        envelope.mail_from = address  # "<>" for the null reverse-path; see reverse_path()
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        mx_envelope = cast(MxEnvelope, envelope)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TOO_MANY_RECIPIENTS
        problem = _path_problem(address, envelope.smtp_utf8, "5.1.3", "recipient")
        if problem is not None:
            return problem
        route = self.inbound.cached_route(address) or await self._run(
            self.inbound.route_recipient, address, client_ip=peer_ip(session), audit=True)
        if not route.accepted:
            cast(MxSMTP, server).rejected_recipients += 1
            return REJECT_REPLIES.get(route.reject or "", "550 5.1.1 Recipient address rejected")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        mx_envelope.routes.append(route)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        txid = new_id("tx")
        trace = received_header(Trace(
            helo=session.host_name, client_ip=peer_ip(session), hostname=server.hostname,
            protocol=trace_protocol(session.extended_smtp, envelope.smtp_utf8, session.ssl is not None),
            txid=txid, recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
            at=self.inbound.clock.now()), eol_of(raw))
        message = trace + raw
        store = (self.inbound.accept_async if self.inbound.accepts_on_loop(message)
                 else partial(self._run, self.inbound.accept))  # a large one is fsynced into the blob store first
        queue_id = await store(message, reverse_path(envelope.mail_from), list(cast(MxEnvelope, envelope).routes),
                               client_ip=peer_ip(session), helo=session.host_name, source="smtp")
        log.info("accepted %s as queue %s: %d bytes for %d recipient(s) from %s", txid, queue_id, len(raw),
                 len(envelope.rcpt_tos), peer_ip(session))
        # A spool place (`segment:offset`) names a process id: the peer gets the transaction id only.
        return f"250 2.0.0 OK id={txid} queued" + (f" as {queue_id}" if isinstance(queue_id, int) else "")

    async def handle_exception(self, error: Exception) -> str:
        # Never an exception text to the peer: log it, and ask the sender to retry (SPEC §5).
        if isinstance(error, SpoolError):  # a known state (backlog full, segment failed): one line
            log.warning("SMTP accept refused for now: %s", error)
        else:
            log.error("SMTP session error", exc_info=error)
        return TEMPFAIL


# aiosmtpd inspects the EHLO hook's signature on every connection (to tell its old 4-argument
# form from the 5-argument one); a precomputed __signature__ spares inspect its work.
MxHandler.handle_EHLO.__signature__ = inspect.signature(MxHandler.handle_EHLO)  # type: ignore[attr-defined]


def ehlo_lines(responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO answer (SIZE, 8BITMIME, SMTPUTF8, STARTTLS when configured) without AUTH
    and HELP, plus PIPELINING — commands are read one by one from the stream, so pipelined
    clients are served correctly (RFC 2920) — and ENHANCEDSTATUSCODES (RFC 2034)."""
    greeting, *offered = (line[4:] for line in responses)
    keywords = [k for k in offered if k.split(" ")[0] not in ("AUTH", "HELP")]
    lines = [greeting, *keywords, "PIPELINING", "ENHANCEDSTATUSCODES"]
    return [f"250{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)]


def _path_problem(address: str, smtputf8: bool, code: str, role: str) -> str | None:
    """A reply for a path LiteMX cannot take, or None when it is fine to route."""
    try:
        octets = len(address.encode("utf-8"))
    except UnicodeEncodeError:  # aiosmtpd kept undecodable bytes as surrogates
        return f"501 {code} Bad {role} address syntax"
    if octets > MAX_PATH:
        return f"501 {code} Path too long"  # RFC 5321 §4.5.3.1.10
    if not address.isascii() and not smtputf8:
        return NEEDS_SMTPUTF8
    return None


def peer_ip(session: Session) -> str | None:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def reverse_path(mail_from: str | None) -> str:
    """The stored reverse-path: '' for the null sender `<>` (bounces, RFC 5321 §4.5.5)."""
    return "" if not mail_from or mail_from == "<>" else mail_from


# --------------------------------------------------------------------------- trace header


@dataclass(frozen=True)
class Trace:
    helo: str | None
    client_ip: str | None
    hostname: str
    protocol: str
    txid: str
    recipient: str | None  # named only for a single recipient (RFC 5321 §7.6)
    at: datetime


def trace_protocol(extended: bool, smtputf8: bool, tls: bool) -> str:
    """The `with` keyword: RFC 3848 (SMTP, ESMTP, ESMTPS) and RFC 6531 §3.7.3 (UTF8SMTP[S])."""
    base = "UTF8SMTP" if smtputf8 else "ESMTP" if extended else "SMTP"
    return base + ("S" if tls else "")


def received_header(t: Trace, eol: bytes = b"\r\n") -> bytes:
    """The RFC 5321 §4.4 time stamp line, folded. A header prepended above a DKIM signature
    leaves it valid: the signature covers only the fields named in its h= tag."""
    ip = t.client_ip or "unknown"
    literal = f"IPv6:{ip}" if ":" in ip else ip  # RFC 5321 §4.1.3 address literals
    # The HELO name is a domain or an address literal (RFC 5321 §4.1.1.1): ASCII only.
    lines = [f"Received: from {_trace_text(t.helo or 'unknown', ascii_only=True)} ([{literal}])",
             f"\tby {t.hostname} (LiteMX) with {t.protocol} id {t.txid}"]
    stamp = format_datetime(t.at)
    if t.recipient:
        lines.append(f"\tfor <{_trace_text(t.recipient)}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return eol.join(line.encode("utf-8") for line in lines) + eol


def _trace_text(value: str, ascii_only: bool = False) -> str:
    """Client-supplied text made safe for a header: no controls, spaces, comment or clause
    delimiters, or undecodable bytes; at most 255 characters."""
    return "".join(c if c.isprintable() and c not in ' ()<>;\\"' and (c.isascii() or not ascii_only) else "?"
                   for c in value[:255])


def eol_of(raw: bytes) -> bytes:
    """The message's own line ending, so the trace header matches a bare-LF message."""
    end = raw.find(b"\n")
    return b"\n" if end == 0 or (end > 0 and raw[end - 1:end] != b"\r") else b"\r\n"


# --------------------------------------------------------------------------- wiring


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context, or None when no certificate is configured (SPEC §5).

    Raises: InvalidRequest when only one of tls_cert / tls_key is set; OSError or ssl.SSLError
    when they cannot be loaded (a misconfigured MX must not quietly run without TLS).
    """
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        missing = "tls_key" if settings.tls_cert else "tls_cert"
        raise InvalidRequest("tls_cert and tls_key must be set together", {"field": missing})
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # no client certificates asked
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def smtp_factory(settings: Settings, inbound: InboundService, gate: SessionGate,
                 executor: ThreadPoolExecutor | None = None) -> Callable[[], MxSMTP]:
    handler = MxHandler(inbound, executor)
    context = tls_context(settings)

    def make() -> MxSMTP:
        return MxSMTP(handler, gate, max_rejected=settings.smtp_max_rejected_recipients,
                      data_size_limit=settings.max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
                      hostname=settings.hostname, ident="LiteMX ESMTP", tls_context=context,
                      timeout=settings.smtp_idle_timeout, command_call_limit=settings.smtp_max_commands,
                      auth_exclude_mechanism=("LOGIN", "PLAIN"))  # an MX takes no logins

    return make


@dataclass
class MxListener:
    """A running MX: the listening socket and its sessions."""

    server: asyncio.Server
    gate: SessionGate
    executor: ThreadPoolExecutor | None = None

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop listening, then end every session with 421 4.3.2 (RFC 5321 §3.8); one that is
        storing a message gets its reply first, within `grace` seconds."""
        self.server.close()
        await self.gate.drain(grace)
        if self.executor is not None:
            # Routing or storing work of sessions that were cut off finishes before we return,
            # so whoever closes the database next finds no thread still using it.
            await asyncio.to_thread(self.executor.shutdown, wait=True)


async def start_mx(settings: Settings, inbound: InboundService, sock: socket.socket | None = None) -> MxListener:
    """Listen on settings.smtp, or on `sock` (a listening socket shared by several processes).

    Raises: what tls_context raises, OSError when the port cannot be bound.
    """
    # aiosmtpd logs every command line at INFO; LiteMX logs one line per accepted message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    gate = SessionGate(settings.smtp_max_connections)
    host, port = settings.smtp_host_port
    executor = ThreadPoolExecutor(max_workers=max(1, min(MX_THREADS, settings.smtp_max_connections)),
                                  thread_name_prefix="litemx-mx")
    try:
        factory = smtp_factory(settings, inbound, gate, executor)
        loop = asyncio.get_running_loop()
        server = await (loop.create_server(factory, sock=sock) if sock is not None
                        else loop.create_server(factory, host=host, port=port))
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return MxListener(server, gate, executor)


async def start_smtp(settings: Settings, inbound: InboundService) -> asyncio.Server:
    """The listening socket alone, for callers that only ever close it."""
    return (await start_mx(settings, inbound)).server
