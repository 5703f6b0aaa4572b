"""Composition root: Settings -> storage -> services -> adapters."""

from __future__ import annotations

from dataclasses import dataclass

from litemx.adapters.dns_resolver import DnsResolver
from litemx.errors import InvalidRequest
from litemx.ports import BlobStore, Clock, SystemClock
from litemx.service.auth import AuthService
from litemx.service.base import Infra
from litemx.service.directory import DirectoryService
from litemx.service.inbound import InboundService
from litemx.service.routing import RoutingService
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

    def close(self) -> None:
        self.infra.db.dispose()


def build_blob_store(settings: Settings) -> BlobStore:
    """Raises: InvalidRequest for a blob URL this build cannot serve."""
    if not settings.blob_url:
        return FileBlobStore(settings.data_dir / "blobs")
    if settings.blob_url.startswith("file://"):
        return FileBlobStore(settings.blob_url.removeprefix("file://"))
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
    return Services(infra, auth, directory, routing, TokenService(infra, auth), SystemService(infra),
                    InboundService(infra, routing, resolver))
