"""Shared fixtures. Every storage-touching test takes `services` (or something built on it)
and so runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from litemx.adapters.http.app import create_app
from litemx.app import Services, build_services
from litemx.settings import Settings
from tests.support.api import Api
from tests.support.clock import FakeClock
from tests.support.databases import PgSchema, SqliteTemplate
from tests.support.dns_server import LoopbackDnsServer
from tests.support.inbox import hosted

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def _pg_schema(worker_id: str) -> Iterator[PgSchema]:
    try:
        schema = PgSchema(worker_id)
    except Exception as exc:  # noqa: BLE001 - turn any connection failure into a loud failure
        pytest.fail(f"PostgreSQL is required for the PostgreSQL half of the suite and is not reachable: {exc}. "
                    "Run the tests through `make test` (scripts/with-test-services.sh).")
    yield schema
    schema.drop()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return request.getfixturevalue("_sqlite_template").fresh(tmp_path)
    schema: PgSchema = request.getfixturevalue("_pg_schema")
    schema.truncate()
    return schema.url


@pytest.fixture(scope="session")
def _dns_server() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer() as server:
        yield server


@pytest.fixture
def dns(_dns_server: LoopbackDnsServer) -> LoopbackDnsServer:
    """The loopback DNS server every lookup of the code under test goes to; empty per test."""
    _dns_server.load({})
    return _dns_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, dns: LoopbackDnsServer) -> Settings:
    # Never the machine's resolver: every lookup goes to the loopback test server.
    # No failed-authentication limit: tests refuse bad tokens on every route of the matrix from one
    # client; tests/test_auth_limits.py turns it on.
    return Settings.load({}, data_dir=tmp_path / "data", database_url=database_url, hostname="mx.litemx.test",
                         dns_servers=dns.address, auth_failures_per_minute=0)


@pytest.fixture
def services(settings: Settings, clock: FakeClock) -> Iterator[Services]:
    svc = build_services(settings, clock=clock, migrate=False)
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Tenant:
    """An account with its founder token, for tests."""

    account: dict[str, Any]
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def tenant(services: Services) -> Tenant:
    account, token = services.auth.create_account("Acme", "free")
    return Tenant(account, token)


@pytest.fixture
def other_tenant(services: Services) -> Tenant:
    account, token = services.auth.create_account("Other Co", "starter")
    return Tenant(account, token)


@pytest.fixture
def api(client: TestClient, tenant: Tenant) -> Api:
    """The tenant's founder with acme.example, support@ and billing@ (a module may override it)."""
    a = Api(client, tenant.token)
    hosted(a)
    return a
