"""Failed authentications per client address are bounded (service/auth_limits.py): over
LITEMX_AUTH_FAILURES_PER_MINUTE a bad token answers `429 rate_limited` with Retry-After
(SPEC §3) and is no longer audited one row each; a valid token from the same address still
works; the budget refills with time; the bound holds under concurrency."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor

import pytest

from litemx.errors import RateLimited, Unauthorized
from litemx.service.auth_limits import FailureLimiter
from litemx.settings import Settings
from tests.support.api import assert_error, audit_since, bearer, last_audit_id
from tests.support.clock import FakeClock

LIMIT = 60  # the default
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def settings(settings):
    """The product's default limit (the shared fixture turns it off for every other test)."""
    assert Settings.auth_failures_per_minute == LIMIT
    return dataclasses.replace(settings, auth_failures_per_minute=LIMIT)


def _bad() -> dict[str, str]:
    return bearer("lmx_" + secrets.token_urlsafe(32))


def _denied(services, since: int) -> list[dict]:
    return [e for e in audit_since(services, since) if e["action"] == "auth.denied"]


def test_bad_tokens_over_the_limit_answer_429_and_stop_writing_audit_rows(client, services, tenant):
    since = last_audit_id(services)
    for _ in range(LIMIT):
        assert_error(client.get("/api/mailboxes", headers=_bad()), 401, "unauthorized")
    assert len(_denied(services, since)) == LIMIT

    for _ in range(40):
        response = client.get("/api/mailboxes", headers=_bad())
        error = assert_error(response, 429, "rate_limited")
        assert response.headers["Retry-After"] == "1" and error["details"] == {"retry_after": 1}
    denied = _denied(services, since)
    assert len(denied) == LIMIT + 1  # the episode's first refusal only
    assert denied[-1]["details"] == {"reason": "rate limited (unknown token)"}

    # A valid token from the same address is never locked out.
    assert client.get("/api/mailboxes", headers=bearer(tenant.token)).status_code == 200
    # A missing token counts like a wrong one.
    assert_error(client.get("/api/mailboxes"), 429, "rate_limited")


def test_the_budget_refills_with_time(client, services, clock: FakeClock):
    for _ in range(LIMIT):
        client.get("/api/mailboxes", headers=_bad())
    assert_error(client.get("/api/mailboxes", headers=_bad()), 429, "rate_limited")
    clock.advance(seconds=10)  # a minute refills LIMIT: ten seconds, ten attempts
    for _ in range(10):
        assert_error(client.get("/api/mailboxes", headers=_bad()), 401, "unauthorized")
    since = last_audit_id(services)
    assert_error(client.get("/api/mailboxes", headers=_bad()), 429, "rate_limited")
    assert _denied(services, since) == []  # the same episode: a steady client costs ~LIMIT rows a minute
    clock.advance(seconds=60)  # quiet for a full bucket: the episode is over
    for _ in range(LIMIT):
        assert_error(client.get("/api/mailboxes", headers=_bad()), 401, "unauthorized")
    since = last_audit_id(services)
    assert_error(client.get("/api/mailboxes", headers=_bad()), 429, "rate_limited")
    assert len(_denied(services, since)) == 1  # a new episode: its first refusal is audited again


def test_mcp_over_http_answers_429_with_retry_after(client, services):
    for _ in range(LIMIT):
        client.post("/mcp", headers={**MCP_HEADERS, **_bad()}, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    response = client.post("/mcp", headers={**MCP_HEADERS, **_bad()},
                           json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "1"


def test_the_bound_holds_under_concurrency_and_per_address(services):
    def attempt(n: int) -> str:
        try:
            services.auth.authenticate("lmx_" + secrets.token_urlsafe(32), "api", f"192.0.2.{n % 2}", "bot")
        except Unauthorized:
            return "401"
        except RateLimited:
            return "429"
        return "200"

    since = last_audit_id(services)
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(400)))
    assert outcomes.count("401") == 2 * LIMIT and outcomes.count("429") == 400 - 2 * LIMIT
    assert len(_denied(services, since)) == 2 * (LIMIT + 1)  # two addresses, each its own bucket


def test_no_address_or_a_zero_limit_is_never_limited(services):
    for _ in range(LIMIT + 5):  # MCP stdio and in-process callers carry no address
        with pytest.raises(Unauthorized):
            services.auth.authenticate("lmx_" + secrets.token_urlsafe(32), "mcp", None, None)
    off = FailureLimiter(0, services.infra.clock)
    assert all(off.spend("192.0.2.9") is None for _ in range(1000))


def test_the_buckets_are_capped_least_recently_seen_first(clock: FakeClock):
    limiter = FailureLimiter(1, clock, max_clients=2)
    assert limiter.spend("a") is None and limiter.spend("b") is None
    assert limiter.spend("a") is not None  # a is over, and now the most recent
    assert limiter.spend("c") is None  # b, the least recently seen, makes room
    assert limiter.spend("a") is not None and limiter.spend("b") is None  # b starts over with a full bucket


def test_a_clock_stepping_back_does_not_refuse_an_address_within_its_budget(clock: FakeClock):
    limiter = FailureLimiter(60, clock)
    assert limiter.spend("192.0.2.1") is None
    clock.current = clock.current - timedelta(hours=1)  # the wall clock corrected by an hour
    assert limiter.spend("192.0.2.1") is None


def test_an_ipv6_client_is_its_64_and_ipv4_is_its_address(clock: FakeClock):
    limiter = FailureLimiter(2, clock)
    assert limiter.spend("2001:db8:1:2::1") is None and limiter.spend("2001:db8:1:2:ffff::9") is None
    assert limiter.spend("2001:db8:1:2::77") is not None  # the same /64: one bucket
    assert limiter.spend("2001:db8:1:3::1") is None  # the next /64: its own
    assert limiter.spend("::ffff:192.0.2.1") is None and limiter.spend("192.0.2.1") is None  # one IPv4 host
    assert limiter.spend("192.0.2.1") is not None and limiter.spend("192.0.2.2") is None
    # Loopback and link-local: one host per address (and zone), not a whole /64.
    assert limiter.spend("fe80::1%eth0") is None and limiter.spend("fe80::1%eth0") is None
    assert limiter.spend("fe80::1%eth0") is not None
    assert limiter.spend("fe80::2%eth0") is None and limiter.spend("fe80::1%eth1") is None
    assert limiter.spend("::1") is None and limiter.spend("::") is None


def test_valid_tokens_never_spend_the_budget(client, services, tenant):
    for _ in range(2 * LIMIT):
        assert client.get("/api/mailboxes", headers=bearer(tenant.token)).status_code == 200
    for _ in range(LIMIT):
        assert_error(client.get("/api/mailboxes", headers=_bad()), 401, "unauthorized")
    assert_error(client.get("/api/mailboxes", headers=_bad()), 429, "rate_limited")
