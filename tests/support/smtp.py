"""Helpers for the MX tests: a live listener with chosen limits, a raw line-level SMTP client,
a hosted domain, database probes, a self-signed certificate and `litemx serve` as a process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import ipaddress
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, text

from litemx.adapters.smtp import MxListener, start_mx
from litemx.app import Services
from litemx.service.principal import Caller
from litemx.storage.schema import audit_events, inbound_queue, messages
from litemx.workers import InboundWorker
from tests.support.live import free_port, wait_for

LITEMX = [sys.executable, "-m", "litemx.adapters.cli"]
T = TypeVar("T")


# --------------------------------------------------------------------------- tenant


def host_project(services: Services, token: str) -> Caller:
    """project.dev with the mailbox support@ (plus-addresses reach it too); returns the admin caller.

    Each test module wraps this in its own `hosted` fixture.
    """
    caller = services.auth.authenticate(token, "api", None, None)
    services.directory.create_domain(caller, "project.dev")
    services.directory.create_mailbox(caller, "support@project.dev")
    return caller


# --------------------------------------------------------------------------- live listener


@dataclass
class LiveMx:
    host: str
    port: int
    listener: MxListener
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the listener's loop (e.g. listener.aclose())."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


@contextmanager
def live_mx(services: Services, *, worker: bool = True, timeout: float = 10.0, **settings: Any) -> Iterator[LiveMx]:
    """The MX (and the inbound worker) in a thread on a loopback port, with Settings overrides."""
    config = services.infra.settings.with_(smtp="127.0.0.1:0", **settings)  # the kernel picks a free port
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-mx", daemon=True)
    thread.start()

    async def start() -> tuple[MxListener, asyncio.Task[None] | None]:
        listener = await start_mx(config, services.inbound)
        task = asyncio.ensure_future(InboundWorker(services, poll_seconds=0.2).run()) if worker else None
        return listener, task

    listener, task = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout)

    async def stop() -> None:
        await listener.aclose(grace=timeout / 2)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # Routing or storing threads of sessions that were cut off finish before the test's
        # database is closed.
        await asyncio.get_running_loop().shutdown_default_executor()

    try:
        yield LiveMx("127.0.0.1", listener.port, listener, loop)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
        services.inbound.on_accept = None


# --------------------------------------------------------------------------- raw client


class RawSmtp:
    """A line-level client for what smtplib will not send: pipelined batches, odd bytes,
    half-sent DATA. Every read is bounded by the socket timeout."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One reply line without CRLF; b'' once the server has closed the connection."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> list[bytes]:
        """One (possibly multi-line) reply."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def command(self, line: bytes) -> list[bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server has closed (EOF after any pending bytes)."""
        return self.line() == b"" and not self.buffer


def message(subject: str, body: str = "Hello, can you help?", *, sender: str = "alice@sender.example",
            to: str = "support@project.dev", extra: str = "") -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@sender.example>\r\n"
    return (head + extra + "\r\n" + body + "\r\n").encode("utf-8")


def send(host: str, port: int, raw: bytes, to: list[str] | None = None, sender: str = "alice@sender.example",
         **options: Any) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(host, port, timeout=10) as client:
        return client.sendmail(sender, to or ["support@project.dev"], raw, **options)


# --------------------------------------------------------------------------- database probes


def count(services: Services, table: Any = messages, *where: Any) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def rows(services: Services, table: Any = messages, *where: Any) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        return [dict(r) for r in conn.execute(select(table).where(*where)).mappings()]


def delivered(services: Services, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Wait until `n` messages rows exist and the queue is drained; return the rows."""
    wait_for(lambda: count(services) >= n and count(services, inbound_queue, inbound_queue.c.status == "pending") == 0,
             timeout)
    return rows(services)


def fts_seqs(conn: Any, word: str) -> set[int]:
    """messages.seq of every full-text hit for one plain word, on either backend."""
    if conn.dialect.name == "sqlite":
        found = conn.execute(text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q"), {"q": f'"{word}"'})
    else:
        found = conn.execute(text("SELECT seq FROM message_fts WHERE doc @@ plainto_tsquery('simple', :q)"),
                             {"q": word})
    return {int(r[0]) for r in found}


def audit_rows(services: Services, action: str) -> list[dict[str, Any]]:
    return rows(services, audit_events, audit_events.c.action == action)


# --------------------------------------------------------------------------- TLS


def self_signed(directory: Path, hostname: str = "mx.litemx.test") -> tuple[Path, Path]:
    """A throwaway certificate and key (PEM files) for STARTTLS tests."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# --------------------------------------------------------------------------- litemx serve


@contextmanager
def serve_process(services: Services, database_url: str, dns: Any, log_path: Path,
                  **env: str) -> Iterator[ServeProcess]:
    """`litemx serve` on the test's own database and blob directory (services reads the result);
    killed at the end if the test left it running."""
    base = {"LITEMX_DATA_DIR": str(services.infra.settings.data_dir), "LITEMX_DATABASE_URL": database_url,
            "LITEMX_DNS_SERVERS": dns.address, "LITEMX_HOSTNAME": "mx.litemx.test", "LITEMX_DNS_RECHECK_SECONDS": "0"}
    process = ServeProcess({**base, **env}, log_path)
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()


@dataclass
class ServeProcess:
    """`litemx serve` as a user runs it, restartable on the same ports."""

    env: dict[str, str]
    log_path: Path
    smtp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> ServeProcess:
        full = {**os.environ, **self.env, "LITEMX_SMTP": f"127.0.0.1:{self.smtp_port}",
                "LITEMX_HTTP": f"127.0.0.1:{self.http_port}", **env}
        # Output to a file, not a pipe: a full pipe would stall a busy server.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*LITEMX, "serve"], env=full, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._smtp_answers, timeout=30, interval=0.05)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _smtp_answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "litemx serve exited early"
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2) as sock:
                return sock.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power cut of the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self._collect()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._collect()

    def _collect(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)
