"""Plan limits hold under concurrency (SPEC §6: "never one send over"), reset at UTC day and
month boundaries, and Idempotency-Key makes a retried send safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from litemx.errors import Conflict, SendBlocked
from litemx.storage import sending_repo
from litemx.storage.schema import audit_events, deliveries
from tests.support.api import assert_error, bearer
from tests.support.sending import MAILBOX, count, fill_counter, hosted, outbound_count

START = datetime(2026, 1, 31, 23, 59, tzinfo=timezone.utc)  # a minute before a day AND month boundary


@pytest.fixture
def clock(clock):
    clock.current = START
    return clock


@pytest.fixture
def caller(services, tenant, dns, clock):
    return hosted(services, tenant.token, dns)


def _mailbox_id(services, caller) -> str:
    return str(services.directory.show_mailbox(caller, MAILBOX)["id"])


def _send(services, caller, to="bob@example.net", **kwargs):
    return services.sending.send_direct(caller, MAILBOX, [to], subject="Status", text="All good.", **kwargs)


def _attempt(services, caller, n: int) -> str:
    try:
        _send(services, caller, f"r{n}@example.net")
    except SendBlocked as blocked:
        return ",".join(blocked.reasons)
    return "accepted"


def test_fifty_concurrent_sends_against_ten_remaining_accept_exactly_ten(services, caller):
    mailbox_id = _mailbox_id(services, caller)
    fill_counter(services, "mailbox", mailbox_id, "d2026-01-31", 90)  # free plan: 100 a day per mailbox
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda n: _attempt(services, caller, n), range(50)))
    assert outcomes.count("accepted") == 10
    assert outcomes.count("mailbox_daily_limit") == 40
    assert outbound_count(services) == 10 and count(services, deliveries) == 10
    with services.infra.db.read() as conn:
        assert sending_repo.counter(conn, "mailbox", mailbox_id, "d2026-01-31") == 100
        # Blocked attempts rolled their account counters back too.
        assert sending_repo.counter(conn, "account", caller.principal.account_id, "d2026-01-31") == 10
    assert count(services, audit_events, audit_events.c.action == "send.accepted") == 10
    assert count(services, audit_events, audit_events.c.action == "send.blocked") == 40


def test_the_daily_limit_resets_at_midnight_utc_and_the_monthly_one_on_the_first(services, caller, clock):
    account = caller.principal.account_id
    fill_counter(services, "account", account, "d2026-01-31", 100)
    fill_counter(services, "account", account, "m2026-01", 500)
    with pytest.raises(SendBlocked) as blocked:
        _send(services, caller)
    assert blocked.value.reasons == ["account_daily_limit", "account_monthly_limit"]
    clock.advance(minutes=1)  # 2026-02-01T00:00Z: a new day and a new month
    assert _send(services, caller)["status"] == "queued"
    fill_counter(services, "account", account, "m2026-02", 500)
    clock.advance(days=1)  # the day resets again, the month does not
    with pytest.raises(SendBlocked) as blocked:
        _send(services, caller)
    assert blocked.value.reasons == ["account_monthly_limit"]


def test_a_message_counts_once_however_many_recipients(services, caller):
    services.sending.send_direct(caller, MAILBOX, ["a@example.net", "b@example.net"], cc=["c@example.net"],
                                 bcc=["d@example.net"], subject="Hi")
    with services.infra.db.read() as conn:
        assert sending_repo.counter(conn, "mailbox", _mailbox_id(services, caller), "d2026-01-31") == 1
    assert count(services, deliveries) == 4


def test_bootstrap_shows_the_send_usage_the_preflight_counts(services, caller, clock):
    """SPEC §3 bootstrap: limits and usage. Each window shows what the next send is checked against."""
    fill_counter(services, "account", caller.principal.account_id, "m2026-01", 40)
    _send(services, caller)
    _send(services, caller, cc=["c@example.net"])  # one message, however many recipients
    sends = services.system.bootstrap(caller)["usage"]["sends"]
    assert sends == {"mailbox_daily": {MAILBOX: {"limit": 100, "used": 2, "remaining": 98}},
                     "account_daily": {"limit": 100, "used": 2, "remaining": 98},
                     "account_monthly": {"limit": 500, "used": 42, "remaining": 458},
                     "mailboxes_truncated": False}
    clock.advance(minutes=1)  # a new UTC day and month: the windows restart
    sends = services.system.bootstrap(caller)["usage"]["sends"]
    assert sends["mailbox_daily"][MAILBOX]["used"] == sends["account_daily"]["used"] == 0
    assert sends["account_monthly"]["used"] == 0


def test_the_same_idempotency_key_and_body_answer_the_first_response(services, client, tenant, caller):
    body = {"mailbox": MAILBOX, "to": ["bob@example.net"], "subject": "Invoice", "text": "Attached."}
    headers = {**bearer(tenant.token), "Idempotency-Key": "order-1234"}
    first = client.post("/api/send", json=body, headers=headers)
    again = client.post("/api/send", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert outbound_count(services) == 1
    other = client.post("/api/send", json={**body, "subject": "Another"}, headers=headers)
    assert assert_error(other, 409, "conflict")["details"]["field"] == "Idempotency-Key"
    assert outbound_count(services) == 1
    actions = [a for a in _actions(services) if a.startswith("send.")]
    assert actions == ["send.accepted", "send.replayed", "send.blocked"]


def test_idempotency_keys_are_per_account_and_expire_after_a_day(services, caller, other_tenant, dns, clock):
    first = _send(services, caller, idempotency_key="k1")
    assert _send(services, caller, idempotency_key="k1") == first
    clock.advance(hours=24, seconds=1)
    assert _send(services, caller, idempotency_key="k1")["id"] != first["id"]
    other = services.auth.authenticate(other_tenant.token, "api", None, None)
    with pytest.raises(SendBlocked):  # another account's key space: a fresh request, refused on its own terms
        services.sending.send_direct(other, MAILBOX, ["bob@example.net"], idempotency_key="k1")
    assert outbound_count(services) == 2


def test_concurrent_retries_with_one_key_send_once(services, caller):
    def retry(_: int) -> str:
        return str(_send(services, caller, idempotency_key="retry-me")["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(retry, range(8)))
    assert len(ids) == 1 and outbound_count(services) == 1


def test_a_draft_sent_twice_concurrently_goes_out_once(services, caller):
    draft = services.drafts.create(caller, MAILBOX, ["bob@example.net"], subject="Once")

    def send(_: int) -> str:
        try:
            return str(services.sending.send_draft(caller, draft["id"])["id"])
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))
    assert results.count("conflict") == 5 and outbound_count(services) == 1


def test_an_invalid_idempotency_key_is_refused_naming_the_header(client, tenant, caller):
    body = {"mailbox": MAILBOX, "to": ["bob@example.net"]}
    response = client.post("/api/send", json=body, headers={**bearer(tenant.token), "Idempotency-Key": "k" * 300})
    assert assert_error(response, 422, "invalid_request")["details"]["field"] == "Idempotency-Key"


def _actions(services) -> list[str]:
    with services.infra.db.read() as conn:
        return list(conn.execute(select(audit_events.c.action).order_by(audit_events.c.id)).scalars())
