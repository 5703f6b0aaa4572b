"""The MX caches routes per directory version (service/routing.py RouteCache, migration 0009):
a cached route is reused only while no routing-relevant row changed, whoever changed it —
a service call, another node, or plain SQL — so every change takes effect on the next RCPT."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from litemx.storage import directory_repo
from litemx.storage.schema import accounts, domains, mailboxes
from tests.support.smtp import host_project

SUPPORT = "support@project.dev"
NOW = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture
def admin(services, tenant):
    return host_project(services, tenant.token)


def _version(services: Any) -> int | None:
    with services.infra.db.read() as conn:
        return directory_repo.current_routing_version(conn)


def _sql(services: Any, stmt: Any) -> None:
    """A change made behind the services' back (another node, an operator's SQL)."""
    with services.infra.db.write() as conn:
        conn.execute(stmt)


def test_a_repeated_recipient_is_answered_from_the_cache(services, admin):
    first = services.routing.resolve(SUPPORT)
    assert first.accepted and services.routing.routes.get(_version(services), SUPPORT) is first
    assert services.routing.resolve(SUPPORT) is first


def test_a_change_outside_the_service_layer_takes_effect_on_the_next_rcpt(services, admin):
    assert services.routing.resolve(SUPPORT).accepted
    _sql(services, update(mailboxes).where(mailboxes.c.address == SUPPORT).values(disabled_at=NOW))
    assert services.routing.resolve(SUPPORT).reject == "mailbox_disabled"
    _sql(services, update(mailboxes).where(mailboxes.c.address == SUPPORT).values(disabled_at=None))
    assert services.routing.resolve(SUPPORT).accepted


def test_an_account_or_domain_disabled_by_sql_refuses_at_once(services, admin):
    assert services.routing.resolve(SUPPORT).accepted
    _sql(services, update(accounts).values(disabled_at=NOW))
    assert services.routing.resolve(SUPPORT).reject == "domain_disabled"
    _sql(services, update(accounts).values(disabled_at=None))
    _sql(services, update(domains).values(disabled_at=NOW))
    assert services.routing.resolve(SUPPORT).reject == "domain_disabled"


def test_service_changes_reach_a_cached_route(services, admin):
    unknown = "nobody@project.dev"
    assert services.routing.resolve(unknown).reject == "unknown_user"
    services.routing.set_catchall(admin, "project.dev", SUPPORT)
    assert services.routing.resolve(unknown).via == "catchall"
    services.routing.create_alias(admin, "help@project.dev", [SUPPORT])
    assert services.routing.resolve("help@project.dev").via == "alias"
    services.abuse.disable_mailbox(admin, SUPPORT)
    assert services.routing.resolve("help@project.dev").reject == "mailbox_disabled"
    assert services.routing.resolve(unknown).reject == "mailbox_disabled"


def test_unrelated_writes_do_not_invalidate_the_cache(services, admin):
    services.routing.resolve(SUPPORT)
    before = _version(services)
    # The DNS re-check stamps domains all day long; that cannot change a route.
    _sql(services, update(domains).values(last_checked_at=NOW, dns_status={"MX @": "ok"}))
    _sql(services, update(mailboxes).values(retention_days=30))
    assert _version(services) == before


def test_the_cache_is_bounded_and_keeps_the_newest_version(services, admin):
    cache = type(services.routing.routes)(capacity=2)
    route = services.routing.resolve(SUPPORT)
    for name in ("a", "b", "c"):
        cache.put(7, name, route)
    assert [cache.get(7, n) is route for n in ("a", "b", "c")] == [False, True, True]
    cache.put(6, "old", route)  # computed from an older snapshot: never filed
    assert cache.get(6, "old") is None and cache.get(7, "old") is None
    cache.put(8, "d", route)  # a newer version empties the cache
    assert cache.get(8, "b") is None and cache.get(8, "d") is route


def test_the_event_loop_path_answers_from_the_cache_only_while_nothing_changed(services, admin):
    assert services.routing.cached(SUPPORT) is None  # nothing cached yet
    route = services.routing.resolve(SUPPORT)
    if services.infra.db.dialect != "sqlite":
        assert services.routing.cached(SUPPORT) is None  # PostgreSQL: always the thread path
        return
    assert services.routing.cached(SUPPORT) is route
    assert services.inbound.cached_route(SUPPORT) is route
    _sql(services, update(mailboxes).where(mailboxes.c.address == SUPPORT).values(disabled_at=NOW))
    assert services.routing.cached(SUPPORT) is None and services.inbound.cached_route(SUPPORT) is None
    refused = services.routing.resolve(SUPPORT)
    # A refusal is cached for resolve(), but the MX never answers it from the loop: it is audited.
    assert services.routing.cached(SUPPORT) is refused and services.inbound.cached_route(SUPPORT) is None
