"""Composition root: Settings -> storage -> services -> adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from litemx.adapters.dns_resolver import DnsResolver
from litemx.adapters.outbound import build_transport
from litemx.adapters.ses_webhook import S3MailReader, https_get
from litemx.errors import InvalidRequest
from litemx.ports import BlobStore, Clock, SystemClock
from litemx.service.abuse import AbuseService
from litemx.service.auth import AuthService
from litemx.service.base import Infra
from litemx.service.bounces import BounceService
from litemx.service.delivery import OutboundService
from litemx.service.directory import DirectoryService
from litemx.service.domains_dns import DomainDnsService
from litemx.service.drafts import DraftService
from litemx.service.inbound import InboundService
from litemx.service.jobs import JobService
from litemx.service.messages import MessageService
from litemx.service.retention import RetentionService
from litemx.service.routing import RoutingService
from litemx.service.sending import SendService
from litemx.service.ses_inbound import SesInboundService
from litemx.service.system import SystemService
from litemx.service.tokens import TokenService
from litemx.settings import Settings
from litemx.storage.blobs import FileBlobStore
from litemx.storage.db import Database


@dataclass
class Services:
    """Every service, built once per process (or per test) around one Infra."""

    infra: Infra
    auth: AuthService
    directory: DirectoryService
    routing: RoutingService
    tokens: TokenService
    system: SystemService
    inbound: InboundService
    domains_dns: DomainDnsService
    messages: MessageService
    # Built from the fields above (no constructor argument), so wiring them adds no churn to build_services.
    retention: RetentionService = field(init=False)
    abuse: AbuseService = field(init=False)
    drafts: DraftService = field(init=False)
    sending: SendService = field(init=False)
    bounces: BounceService = field(init=False)
    outbound: OutboundService = field(init=False)
    ses_inbound: SesInboundService = field(init=False)
    jobs: JobService = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobService(self.infra)
        self.retention = RetentionService(self.infra, self.directory)
        self.abuse = AbuseService(self.infra, self.directory)
        self._wire_sending()
        # The SNS webhook (SPEC §5): HTTPS to SNS hosts and S3 reads, both injectable for tests.
        self.ses_inbound = SesInboundService(self.infra, self.inbound, self.bounces, https_get,
                                             S3MailReader.from_settings(self.infra.settings))

    def _wire_sending(self) -> None:
        """Drafts, sends, the outbound queue and bounces (SPEC §6). Raises: InvalidRequest (outbound)."""
        self.drafts = DraftService(self.infra, self.directory)
        self.sending = SendService(self.infra, self.domains_dns.private_key_for_signing)
        self.bounces = BounceService(self.infra)
        self.inbound.on_bounce = self.bounces.handle_inbound  # DSN / ARF mail to MAIL FROM addresses
        transport = build_transport(self.infra.settings, self.domains_dns.resolver)  # uncached, like domain checks
        self.outbound = OutboundService(self.infra, transport, self.bounces)

    def close(self) -> None:
        self.inbound.close()
        self.infra.db.dispose()


def build_blob_store(settings: Settings) -> BlobStore:
    """Raises: InvalidRequest for a blob URL this build cannot serve."""
    if not settings.blob_url:
        return FileBlobStore(settings.data_dir / "blobs")
    if settings.blob_url.startswith("file://"):
        return FileBlobStore(settings.blob_url.removeprefix("file://"))
    if settings.blob_url.startswith("s3://"):
        from litemx.storage.s3 import S3BlobStore  # boto3 loads only when an S3 store is configured

        return S3BlobStore.from_url(settings.blob_url, settings.s3_endpoint or None)
    raise InvalidRequest(f"unsupported blob URL {settings.blob_url!r}", {"field": "blob_url"})


def build_services(settings: Settings, clock: Clock | None = None, migrate: bool = True) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    if migrate:
        db.migrate()
    infra = Infra(settings, db, build_blob_store(settings), clock or SystemClock())
    auth = AuthService(infra)
    directory = DirectoryService(infra)
    routing = RoutingService(infra, directory)
    resolver = DnsResolver.from_settings(settings)
    domains_dns = DomainDnsService(infra, directory, resolver)
    directory.on_domain_created = domains_dns.provision_keys  # DKIM keys in the domain's own transaction
    inbound = InboundService(infra, routing, resolver.with_cache())  # verdicts may be as old as a TTL
    return Services(infra, auth, directory, routing, TokenService(infra, auth), SystemService(infra),
                    inbound, domains_dns, MessageService(infra, directory))
