"""Outbound providers (SPEC §6, §12 `--outbound`): an SMTP smarthost, direct MX delivery, SES.

Each implements `core.delivery.OutboundTransport`: one attempt per item, one Outcome per item,
never an exception for a delivery problem. One SMTP transaction per delivery (each has its own
VERP envelope sender), several transactions per connection (RFC 5321 §3.3).

- `smtp://host:port`: every delivery through one relay connection per batch; STARTTLS when
  the relay offers it, with certificate checks (it is a configured, named host).
- `mx`: per destination domain, MX records through the project resolver (never the system
  one), falling back to the domain's own address when it has no MX (RFC 5321 §5.1); a null
  MX (RFC 7505) fails at once. One connection per domain per batch, to the first host that
  answers, opportunistic STARTTLS without certificate checks (RFC 7435: encryption that
  cannot be authenticated still beats cleartext; RFC 3207 §4.1 allows it).
- `ses`: SESv2 SendEmail with the raw, already-signed message; SES owns the envelope, so
  bounces and complaints come back as SES notifications (`BounceService.process_ses_notification`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import aiosmtplib

from litemx.adapters.dns_resolver import DnsError
from litemx.core.delivery import OutboundItem, Outcome, outcome
from litemx.errors import InvalidRequest
from litemx.ports import Resolver
from litemx.settings import Settings, split_host_port

log = logging.getLogger("litemx.outbound")

# Failures of the connection itself, as opposed to an SMTP reply: all transient.
CONNECTION_ERRORS = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                     aiosmtplib.SMTPConnectTimeoutError, ssl.SSLError, ConnectionError, OSError, TimeoutError)
MAX_DOMAINS_IN_FLIGHT = 10


class SmtpSession:
    """Deliver items over one SMTP connection to (host, port)."""

    def __init__(self, host: str, port: int, helo: str, timeout: float, transport: str, *,
                 verify_tls: bool, server_name: str | None = None):
        self.host, self.port, self.helo, self.timeout, self.transport = host, port, helo, timeout, transport
        self.verify_tls = verify_tls
        self.label = server_name or host

    async def connect(self) -> aiosmtplib.SMTP:
        """Raises: one of CONNECTION_ERRORS, or aiosmtplib.SMTPException for a refusing greeting."""
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, local_hostname=self.helo, timeout=self.timeout,
                               start_tls=None, validate_certs=self.verify_tls)
        await smtp.connect()
        return smtp

    async def deliver(self, smtp: aiosmtplib.SMTP, items: Sequence[OutboundItem]) -> list[Outcome]:
        """One transaction per item; after a broken connection the rest are deferred."""
        results: list[Outcome] = []
        for index, item in enumerate(items):
            try:
                results.append(await self._send(smtp, item))
            except CONNECTION_ERRORS as exc:
                reply = f"connection to {self.label} lost: {type(exc).__name__}"
                results.extend(outcome(i, None, reply, self.transport, self.label) for i in items[index:])
                return results
        await _quit(smtp)
        return results

    async def _send(self, smtp: aiosmtplib.SMTP, item: OutboundItem) -> Outcome:
        try:
            _, reply = await smtp.sendmail(item.envelope_from, [item.recipient], item.raw,
                                           mail_options=_mail_options(item))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return outcome(item, refused.code, f"{refused.code} {refused.message}", self.transport, self.label)
        except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM or DATA refused
            return outcome(item, exc.code, f"{exc.code} {exc.message}", self.transport, self.label)
        return outcome(item, 250, f"250 {reply}", self.transport, self.label)


def _mail_options(item: OutboundItem) -> list[str]:
    # RFC 6531 §3.4: an internationalised address needs SMTPUTF8 on MAIL FROM.
    return ["SMTPUTF8"] if not (item.recipient.isascii() and item.envelope_from.isascii()) else []


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, *CONNECTION_ERRORS):
        smtp.close()  # the deliveries are done; a rude goodbye changes nothing


def _all(items: Sequence[OutboundItem], code: int | None, reply: str, transport: str,
         host: str | None = None) -> list[Outcome]:
    return [outcome(i, code, reply, transport, host) for i in items]


class SmtpRelayTransport:
    """`smtp://host:port`: a smarthost relays everything."""

    name = "smtp"

    def __init__(self, host: str, port: int, helo: str, timeout: float = 60):
        self.session = SmtpSession(host, port, helo, timeout, self.name, verify_tls=True)

    async def deliver(self, items: Sequence[OutboundItem]) -> list[Outcome]:
        if not items:
            return []
        try:
            smtp = await self.session.connect()
        except (aiosmtplib.SMTPException, *CONNECTION_ERRORS) as exc:
            return _all(items, None, f"relay {self.session.label} unreachable: {type(exc).__name__}", self.name)
        return await self.session.deliver(smtp, items)


class MxTransport:
    """`mx`: straight to each recipient domain's mail exchangers."""

    name = "mx"

    def __init__(self, resolver: Resolver, port: int, helo: str, timeout: float = 60):
        self.resolver, self.port, self.helo, self.timeout = resolver, port, helo, timeout

    async def deliver(self, items: Sequence[OutboundItem]) -> list[Outcome]:
        groups: dict[str, list[OutboundItem]] = {}
        for item in items:
            groups.setdefault(item.domain, []).append(item)
        limit = asyncio.Semaphore(MAX_DOMAINS_IN_FLIGHT)  # per call: a semaphore binds to one event loop
        done = await asyncio.gather(*(self._domain(domain, group, limit) for domain, group in groups.items()))
        by_id = {o.delivery_id: o for batch in done for o in batch}
        return [by_id[i.delivery_id] for i in items]

    async def _domain(self, domain: str, items: list[OutboundItem], limit: asyncio.Semaphore) -> list[Outcome]:
        async with limit:
            try:
                hosts = await asyncio.to_thread(self.exchangers, domain)
            except DnsError as exc:
                return _all(items, None, f"DNS lookup for {domain} failed: {exc.reason}", self.name)
            if hosts is None:
                return _all(items, 556, "556 5.1.10 the domain accepts no mail (null MX, RFC 7505)", self.name)
            if not hosts:
                return _all(items, 550, f"550 5.1.2 no mail exchanger found for {domain}", self.name)
            return await self._first_answering(hosts, items)

    async def _first_answering(self, hosts: list[tuple[str, str]], items: list[OutboundItem]) -> list[Outcome]:
        """Try each MX host in preference order (RFC 5321 §5.1); all unreachable is transient."""
        for name, address in hosts:
            session = SmtpSession(address, self.port, self.helo, self.timeout, self.name, verify_tls=False,
                                  server_name=name)
            try:
                smtp = await session.connect()
            except (aiosmtplib.SMTPException, *CONNECTION_ERRORS) as exc:
                log.info("MX %s (%s) unreachable: %s", name, address, type(exc).__name__)
                continue
            return await session.deliver(smtp, items)
        return _all(items, None, "no mail exchanger answered", self.name)

    def exchangers(self, domain: str) -> list[tuple[str, str]] | None:
        """(host name, address) pairs in preference order; None for a null MX.

        Raises: DnsError when the lookup could not be completed.
        """
        records = self.resolver.mx(domain)
        if any(host == "." for _, host in records):
            return None
        names = [host for _, host in sorted(records)] or [domain]  # RFC 5321 §5.1 implicit MX
        return [(name, ip) for name in names for ip in self.resolver.a(name) + self.resolver.aaaa(name)]


class SesTransport:
    """`ses`: Amazon SES v2 SendEmail with raw content."""

    name = "ses"
    PERMANENT = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException",
                           "NotFoundException"})

    def __init__(self, region: str = "", endpoint: str = "", configuration_set: str = ""):
        self.region, self.endpoint, self.configuration_set = region, endpoint, configuration_set
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sesv2", region_name=self.region or None, endpoint_url=self.endpoint or None)
        return self._client

    async def deliver(self, items: Sequence[OutboundItem]) -> list[Outcome]:
        return [await asyncio.to_thread(self.send_one, item) for item in items]

    def send_one(self, item: OutboundItem) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"FromEmailAddress": item.from_address,
                                   "Destination": {"ToAddresses": [item.recipient]},
                                   "Content": {"Raw": {"Data": item.raw}}}
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client().send_email(**request)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            status = 554 if code in self.PERMANENT else 451
            return outcome(item, status, f"{status} SES {code}: {exc}", self.name, "ses")
        except BotoCoreError as exc:
            return outcome(item, None, f"SES unreachable: {type(exc).__name__}", self.name, "ses")
        message_id = str(response.get("MessageId", ""))
        return outcome(item, 250, f"250 SES accepted {message_id}", self.name, "ses", provider_id=message_id or None)


def build_transport(settings: Settings, resolver: Resolver) -> SmtpRelayTransport | MxTransport | SesTransport:
    """The transport `settings.outbound` names. Raises: InvalidRequest naming `outbound`."""
    value = settings.outbound.strip()
    timeout = float(settings.outbound_timeout)
    if value.startswith("smtp://"):
        host, port = split_host_port(value.removeprefix("smtp://").rstrip("/"), "outbound")
        return SmtpRelayTransport(host, port, settings.hostname, timeout)
    if value == "mx":
        return MxTransport(resolver, settings.mx_port, settings.hostname, timeout)
    if value == "ses":
        return SesTransport(settings.ses_region, settings.ses_endpoint, settings.ses_configuration_set)
    raise InvalidRequest(f"outbound must be smtp://host:port, mx or ses, got {value!r}", {"field": "outbound"})
