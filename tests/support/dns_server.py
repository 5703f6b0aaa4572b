"""A real authoritative DNS server on loopback (UDP and TCP), serving zones given as Python data.

    with LoopbackDnsServer({"example.com": [("MX", "10 mx.example.net"), ("TXT", "v=spf1 -all")]}) as dns:
        resolver = DnsResolver((dns.address,))
        dns.set("example.com", [])          # records can change between test steps
        dns.fail("broken.example")          # answer SERVFAIL for a name

Values: A/AAAA/PTR as text; MX as "10 host" or (10, "host"); TXT as a str (cut into
255-byte character-strings, RFC 1035 §3.3.14) or a list of str/bytes (the exact strings).
UDP answers over 512 bytes are truncated with TC set (RFC 1035 §4.2.1), so clients retry over
TCP on the same port, as they must for large TXT records.

Each test file that needs it defines its own fixture, e.g.:

    @pytest.fixture
    def dns_server() -> Iterator[LoopbackDnsServer]:
        with LoopbackDnsServer() as server:
            yield server
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSHeader, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

RecordSpec = tuple[str, Any]
UDP_LIMIT = 512
TTL = 60
_BIND_ATTEMPTS = 20
_STOP_TIMEOUT = 5.0


class _ZoneResolver:
    """dnslib resolver over a lock-protected, mutable {name: [(type, value)]} map."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[RecordSpec]] = {}
        self.failing: set[str] = set()
        self.queries: list[tuple[str, str, str]] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()  # aa and ra set, question copied
        with self.lock:
            self.queries.append((name, qtype, handler.protocol))
            self._answer(reply, name, qtype)
        return reply

    def _answer(self, reply: DNSRecord, name: str, qtype: str) -> None:
        if name in self.failing:
            reply.header.rcode = RCODE.SERVFAIL
            return
        if not self._exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
            return
        for rtype, value in self.records.get(name, []):
            if rtype == qtype:
                reply.add_answer(RR(name + ".", getattr(QTYPE, rtype), ttl=TTL, rdata=_rdata(rtype, value)))

    def _exists(self, name: str) -> bool:
        """A name with records, or an empty non-terminal above one (RFC 8020 §2: NOERROR)."""
        return any(n == name or n.endswith("." + name) for n, recs in self.records.items() if recs)


def _rdata(rtype: str, value: Any) -> Any:
    if rtype == "TXT":
        return TXT(_txt_strings(value))
    if rtype == "MX":
        preference, host = value if isinstance(value, tuple) else value.split(None, 1)
        return MX(host.rstrip(".") + ".", int(preference))
    kinds = {"A": A, "AAAA": AAAA, "PTR": PTR}
    return kinds[rtype](value)


def _txt_strings(value: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    if isinstance(value, (str, bytes)):
        data = value.encode("utf-8") if isinstance(value, str) else value
        return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return [v.encode("utf-8") if isinstance(v, str) else v for v in value]


class _TruncatingHandler(DNSHandler):  # type: ignore[misc]  # dnslib is untyped
    """Classic 512-byte UDP limit: larger answers go back empty with TC, question kept."""

    def get_reply(self, data: bytes) -> bytes:
        rdata: bytes = super().get_reply(data)
        if self.protocol != "udp" or len(rdata) <= UDP_LIMIT:
            return rdata
        request = DNSRecord.parse(data)
        truncated = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, tc=1), q=request.q)
        return bytes(truncated.pack())


class LoopbackDnsServer:
    """Authoritative DNS for test zones on 127.0.0.1, UDP and TCP on the same free port."""

    host = "127.0.0.1"

    def __init__(self, zones: Mapping[str, Iterable[RecordSpec]] | None = None) -> None:
        self._resolver = _ZoneResolver()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0
        for name, records in (zones or {}).items():
            self.set(name, records)

    @property
    def address(self) -> str:
        """"host:port", the form `LITEMX_DNS_SERVERS` and `DnsResolver` take."""
        return f"{self.host}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """(name, type, "udp"|"tcp") of every query received, in order."""
        with self._resolver.lock:
            return list(self._resolver.queries)

    def set(self, name: str, records: Iterable[RecordSpec]) -> None:
        """Replace every record at name (an empty list removes the name)."""
        with self._resolver.lock:
            self._resolver.records[_key(name)] = list(records)

    def add(self, name: str, rtype: str, value: Any) -> None:
        with self._resolver.lock:
            self._resolver.records.setdefault(_key(name), []).append((rtype, value))

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove records at name: all of them, or those of one type."""
        with self._resolver.lock:
            kept = [r for r in self._resolver.records.get(_key(name), []) if rtype and r[0] != rtype]
            self._resolver.records[_key(name)] = kept

    def load(self, zones: Mapping[str, Iterable[RecordSpec]]) -> None:
        """Replace the whole zone data and forget every SERVFAIL set with fail()."""
        with self._resolver.lock:
            self._resolver.records = {_key(n): list(r) for n, r in zones.items()}
            self._resolver.failing.clear()

    def fail(self, name: str, failing: bool = True) -> None:
        """Answer SERVFAIL for name (or stop doing so)."""
        with self._resolver.lock:
            (self._resolver.failing.add if failing else self._resolver.failing.discard)(_key(name))

    def start(self) -> LoopbackDnsServer:
        """Bind UDP on a free port, then TCP on the same port (retrying if TCP's is taken).

        Raises: OSError when no port pair could be bound.
        """
        for _ in range(_BIND_ATTEMPTS):
            udp = self._make(0, tcp=False)
            port = udp.server.server_address[1]
            try:
                tcp = self._make(port, tcp=True)
            except OSError:
                udp.server.server_close()
                continue
            self.port, self._servers = port, [udp, tcp]
            self._threads = [self._serve(s) for s in self._servers]
            return self
        raise OSError("no free UDP+TCP port pair on 127.0.0.1")

    def _make(self, port: int, *, tcp: bool) -> DNSServer:
        quiet = DNSLogger("-request,-reply,-truncated,-error", prefix=False)
        return DNSServer(self._resolver, address=self.host, port=port, tcp=tcp, logger=quiet,
                         handler=_TruncatingHandler)

    @staticmethod
    def _serve(server: DNSServer) -> threading.Thread:
        # A short poll interval keeps shutdown() quick; serve_forever is otherwise idle.
        thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="loopback-dns", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop serving and close the sockets; waits at most a few seconds per thread."""
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        for thread in self._threads:
            thread.join(_STOP_TIMEOUT)
        self._servers, self._threads = [], []

    def __enter__(self) -> LoopbackDnsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def closed_loopback_port() -> int:
    """A UDP port on 127.0.0.1 with nobody listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
