"""Helpers for the drafts / sending / delivery / bounce tests: a hosted domain that is ready to
send (its DKIM keys published in the loopback DNS), inbound mail to reply to, a real SMTP sink
on loopback, and an independent DKIM verifier (Perl's Mail::DKIM)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import dkim
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from litemx.adapters.dns_resolver import DnsResolver, dkimpy_dnsfunc
from litemx.app import Services
from litemx.core.dkimkeys import public_key_b64_from_pem
from litemx.service.principal import Caller
from litemx.storage import directory_repo, sending_repo
from litemx.storage.schema import audit_events, deliveries, messages
from litemx.workers import OutboundWorker
from tests.support.dns_server import LoopbackDnsServer
from tests.support.live import free_port

DOMAIN = "project.dev"
MAILBOX = "support@project.dev"


def founder(services: Services, token: str) -> Caller:
    return services.auth.authenticate(token, "api", "127.0.0.1", "pytest")


def publish_dkim(services: Services, dns: LoopbackDnsServer, domain: str = DOMAIN) -> list[tuple[str, str]]:
    """Publish the domain's active DKIM public keys in the loopback DNS; returns (selector, algorithm)."""
    published = []
    for selector, algorithm, pem in services.domains_dns.private_key_for_signing(domain):
        kind = "ed25519" if algorithm == "ed25519" else "rsa"
        dns.set(f"{selector}._domainkey.{domain}", [("TXT", f"v=DKIM1; k={kind}; p={public_key_b64_from_pem(pem)}")])
        published.append((selector, algorithm))
    return published


def set_domain(services: Services, domain: str = DOMAIN, **values: Any) -> None:
    with services.infra.db.write() as conn:
        row = directory_repo.domain_by_name(conn, domain)
        assert row is not None
        directory_repo.update_domain(conn, row["id"], values)


def make_ready(services: Services, dns: LoopbackDnsServer, domain: str = DOMAIN) -> None:
    """SPEC §4 readiness (set directly: the DNS checks have their own tests) plus published keys."""
    set_domain(services, domain, inbound_ready=True, outbound_ready=True, provider_approved=True)
    publish_dkim(services, dns, domain)


def hosted(services: Services, token: str, dns: LoopbackDnsServer, *mailboxes: str, ready: bool = True) -> Caller:
    """The founder's caller with project.dev and its mailboxes (support@ by default)."""
    caller = founder(services, token)
    services.directory.create_domain(caller, DOMAIN)
    for address in mailboxes or (MAILBOX,):
        services.directory.create_mailbox(caller, address)
    if ready:
        make_ready(services, dns)
    return caller


def receive(services: Services, raw: bytes, rcpt: str = MAILBOX, mail_from: str = "alice@sender.example") -> str:
    """Deliver `raw` through the inbound pipeline (no SMTP); returns the new message's id."""
    route = services.inbound.route_recipient(rcpt)
    assert route.accepted, route
    services.inbound.accept(raw, mail_from, [route], client_ip="192.0.2.1", helo="sender.example")
    services.inbound.process_due()
    with services.infra.db.read() as conn:
        return str(conn.execute(select(messages.c.id).order_by(messages.c.seq.desc()).limit(1)).scalar_one())


def run_worker(services: Services) -> int:
    """One outbound worker pass (claim, deliver, record)."""
    return asyncio.run(OutboundWorker(services).step())


def count(services: Services, table: Any, *where: Any) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def outbound_count(services: Services) -> int:
    return count(services, messages, messages.c.direction == "outbound")


def delivery_rows(services: Services) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(deliveries).order_by(deliveries.c.created_at))]


def message_status(services: Services, message_id: str) -> str:
    with services.infra.db.read() as conn:
        return str(conn.execute(select(messages.c.status).where(messages.c.id == message_id)).scalar_one())


def audit_actions(services: Services, prefix: str = "") -> list[str]:
    """Every audit action so far, oldest first (optionally only those starting with prefix)."""
    with services.infra.db.read() as conn:
        rows = conn.execute(select(audit_events.c.action).order_by(audit_events.c.id)).scalars().all()
    return [a for a in rows if a.startswith(prefix)]


def fill_counter(services: Services, scope: str, key: str, period: str, value: int) -> None:
    with services.infra.db.write() as conn:
        sending_repo.set_counter(conn, scope, key, period, value)


# -- a real SMTP server on loopback --------------------------------------------------------------

@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SinkHandler:
    """Accepts everything unless scripted: `script[rcpt]` holds the replies RCPT gets, in turn."""

    received: list[Received] = field(default_factory=list)
    script: dict[str, deque[str]] = field(default_factory=dict)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        replies = self.script.get(address.lower())
        reply = replies.popleft() if replies else "250 2.1.5 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 OK sink"


class SmtpSink:
    """aiosmtpd on 127.0.0.1:<free port> in its own thread."""

    def __init__(self) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, decode_data=False,
                                     enable_SMTPUTF8=True)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def answer(self, rcpt: str, *replies: str) -> None:
        self.handler.script[rcpt.lower()] = deque(replies)

    @property
    def received(self) -> list[Received]:
        return self.handler.received


# -- DKIM verifiers ------------------------------------------------------------------------------

def verify_dkimpy(raw: bytes, dns: LoopbackDnsServer) -> list[bool]:
    """Each signature's verdict from dkimpy, keys looked up in the loopback DNS."""
    checker = dkim.DKIM(raw)
    dnsfunc = dkimpy_dnsfunc(DnsResolver((dns.address,)))
    count_ = len([h for h in checker.headers if h[0].lower() == b"dkim-signature"])
    return [checker.verify(idx=i, dnsfunc=dnsfunc) for i in range(count_)]


PERL_VERIFIER = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Mail::DKIM::DNS; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0],
                                                   recurse => 1, udp_timeout => 5, tcp_timeout => 5));
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) { $line =~ s/\015?\012/\015\012/; $dkim->PRINT($line); }
$dkim->CLOSE;
foreach my $sig ($dkim->signatures) { print "sig ", $sig->algorithm, " ", $sig->result_detail, "\n"; }
print "result ", $dkim->result, "\n";
"""


def verify_perl(raw: bytes, dns: LoopbackDnsServer) -> str:
    """Mail::DKIM's report: one `sig <algorithm> <result>` line per signature, then `result ...`."""
    out = subprocess.run(["perl", "-e", PERL_VERIFIER, str(dns.port)], input=raw, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()
