"""Retention (SPEC §10): content past the window goes (blobs, bodies, index, attachments), metadata
stays, metadata and audit go after 365 days, held mailboxes are untouched, shared blobs survive
while referenced, every run writes one `retention.cleanup` event, and re-running is harmless."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from litemx.service import retention as retention_module
from litemx.service.retention import RunInterrupted
from litemx.storage import messages_repo
from litemx.storage.schema import audit_events, job_locks, messages
from litemx.workers import RetentionWorker
from tests.support.api import assert_error, bearer
from tests.support.inbox import Mail
from tests.support.retention_helpers import (
    LEGAL,
    SALES,
    SUPPORT,
    T0,
    attachment_rows,
    blob_keys,
    count,
    days,
    events,
    fts_hits,
    fts_is_consistent,
    host,
    ingest,
    row,
    thread_count,
)

PDF = b"%PDF-1.4 quarterly invoice " + bytes(range(256)) * 4
ZERO = {"messages_cleaned": 0, "attachments_tombstoned": 0, "blobs_deleted": 0, "messages_pruned": 0,
        "audit_pruned": 0}


@pytest.fixture
def acme(services, tenant, clock):
    clock.current = T0
    return host(services, tenant.token)


def _old_and_new(services, clock):
    old = ingest(services, clock, T0, Mail(subject="Invoice 42", text="zebracorn payment overdue", to=SUPPORT,
                                           html="<p>zebracorn payment overdue</p>",
                                           message_id="<old@sender.example>",
                                           files=[("invoice.pdf", "application/pdf", PDF)]))[0]
    new = ingest(services, clock, T0 + days(50), Mail(subject="Fresh", text="unicornfish arrives", to=SUPPORT))[0]
    return old, new


def _counts(result):
    return {k: v for k, v in result["counts"].items() if k != "mailboxes_skipped_on_hold"}


def test_content_past_the_window_is_removed_and_metadata_stays(services, acme, clock):
    old, new = _old_and_new(services, clock)
    keys = blob_keys(services, old)
    assert len(keys) == 2 and all(services.infra.blobs.exists(k) for k in keys)
    before = row(services, old)
    assert fts_hits(services, "zebracorn") == [before["seq"]]

    clock.current = T0 + days(70)
    result = services.retention.run(acme, T0 + days(70))

    assert _counts(result) == {**ZERO, "messages_cleaned": 1, "attachments_tombstoned": 1, "blobs_deleted": 2}
    assert not any(services.infra.blobs.exists(k) for k in keys)
    after = row(services, old)
    assert after["raw_key"] is None and after["text_body"] is None and after["html_body"] is None
    assert after["snippet"] == "" and after["headers"] == []
    assert after["deleted_content_at"] == T0 + days(70)
    for kept in ("subject", "from_addr", "from_name", "to_addrs", "thread_id", "mailbox", "received_at",
                 "message_id_header", "sent_at"):
        assert after[kept] == before[kept], kept
    assert fts_hits(services, "zebracorn") == [] and fts_hits(services, "unicornfish") == [row(services, new)["seq"]]
    [attachment] = attachment_rows(services, old)
    assert attachment["deleted_at"] is not None and attachment["blob_key"] is None
    assert attachment["filename"] == "invoice.pdf"
    with services.infra.db.read() as conn:
        assert messages_repo.attachments_of(conn, old) == []  # hidden from normal reads
    assert row(services, new)["raw_key"] is not None and fts_is_consistent(services)


def test_the_rest_api_shows_cleaned_messages_as_metadata_only(services, acme, clock, client, tenant):
    old, _ = _old_and_new(services, clock)
    services.retention.run(acme, T0 + days(70))
    listing = client.get("/api/messages", params={"mailbox": SUPPORT}, headers=bearer(tenant.token)).json()
    item = next(m for m in listing["items"] if m["id"] == old)
    assert item["subject"] == "Invoice 42" and item["from"]["address"] == "alice@sender.example"
    assert item["content_deleted"] is True
    detail = client.get(f"/api/messages/{old}", headers=bearer(tenant.token)).json()
    assert detail["attachments"] == [] and detail["content_deleted_at"] is not None
    assert detail["text"] is None and detail["html"] is None
    found = client.get("/api/messages/search", params={"q": "zebracorn"}, headers=bearer(tenant.token)).json()
    assert found["items"] == []


def test_each_run_writes_one_cleanup_event_and_a_second_run_changes_nothing(services, acme, clock, tenant):
    _old_and_new(services, clock)
    clock.current = T0 + days(70)
    first = services.retention.run(acme, T0 + days(70))
    second = services.retention.run(acme, T0 + days(70))

    assert first["counts"]["messages_cleaned"] == 1
    assert _counts(second) == ZERO
    cleanup = events(services, "retention.cleanup", tenant.account["id"])
    assert len(cleanup) == 2
    for event in cleanup:
        assert (event["actor_type"], event["actor_name"], event["interface"]) == ("system", "system", "system")
        assert event["outcome"] == "ok" and event["actor_id"] is None
    assert cleanup[0]["details"]["messages_cleaned"] == 1 and cleanup[1]["details"]["messages_cleaned"] == 0
    assert cleanup[0]["details"]["requested"]["token_id"] == acme.principal.token_id
    assert cleanup[0]["details"]["as_of"] == "2026-03-16T09:00:00Z"


def test_a_mailbox_on_legal_hold_is_untouched_until_released(services, acme, clock, client, tenant):
    old, _ = _old_and_new(services, clock)
    held = client.put(f"/api/mailboxes/{SUPPORT}/legal-hold", json={"hold": True}, headers=bearer(tenant.token))
    assert held.status_code == 200 and held.json() == {"mailbox": SUPPORT, "days": 60, "legal_hold": True}
    assert events(services, "mailbox.legal_hold")[-1]["details"] == {"from": False, "to": True}

    result = services.retention.run(acme, T0 + days(800))
    assert _counts(result) == {**ZERO, "audit_pruned": result["counts"]["audit_pruned"]}
    assert result["counts"]["mailboxes_skipped_on_hold"] == 1
    assert row(services, old)["raw_key"] is not None and fts_hits(services, "zebracorn")
    assert count(services, audit_events, audit_events.c.mailbox == SUPPORT) > 0  # held audit stays too

    client.put(f"/api/mailboxes/{SUPPORT}/legal-hold", json={"hold": False}, headers=bearer(tenant.token))
    released = services.retention.run(acme, T0 + days(70))
    assert released["counts"]["messages_cleaned"] == 1 and released["counts"]["mailboxes_skipped_on_hold"] == 0


def test_shared_blobs_stay_while_another_row_references_them(services, acme, clock):
    services.directory.set_retention(acme, SALES, 365)
    # One message to two mailboxes is one raw blob; the same attachment in another message
    # is the same attachment blob (the store is content-addressed).
    support_copy, sales_copy = ingest(services, clock, T0, Mail(subject="Both", text="shared words", to=SUPPORT,
                                                                files=[("a.pdf", "application/pdf", PDF)]),
                                      SUPPORT, SALES)
    other = ingest(services, clock, T0 + days(1), Mail(subject="Other", text="another", to=LEGAL,
                                                       files=[("a.pdf", "application/pdf", PDF)]))[0]
    services.directory.set_retention(acme, LEGAL, 365)
    shared = blob_keys(services, support_copy)
    assert shared == blob_keys(services, sales_copy)

    first = services.retention.run(acme, T0 + days(70))
    assert first["counts"]["messages_cleaned"] == 1 and first["counts"]["blobs_deleted"] == 0
    assert all(services.infra.blobs.exists(k) for k in shared)

    services.directory.set_retention(acme, SALES, 30)
    second = services.retention.run(acme, T0 + days(70))
    assert second["counts"]["messages_cleaned"] == 1
    assert second["counts"]["blobs_deleted"] == 1  # the raw; the attachment is still legal@'s
    attachment_key = next(a["blob_key"] for a in attachment_rows(services, other))
    assert services.infra.blobs.exists(attachment_key)
    assert [k for k in shared if services.infra.blobs.exists(k)] == [attachment_key]


def test_metadata_and_audit_rows_are_pruned_after_365_days(services, acme, clock, tenant, client):
    client.put(f"/api/mailboxes/{LEGAL}/legal-hold", json={"hold": True}, headers=bearer(tenant.token))
    old, _ = _old_and_new(services, clock)
    thread_id = row(services, old)["thread_id"]
    as_of = T0 + days(400)
    cutoff = as_of - days(365)
    acct = audit_events.c.account_id == tenant.account["id"]
    prunable = count(services, audit_events, acct, audit_events.c.at < cutoff,
                     (audit_events.c.mailbox.is_(None)) | (audit_events.c.mailbox != LEGAL))
    assert prunable > 0
    held_rows = count(services, audit_events, acct, audit_events.c.mailbox == LEGAL)

    clock.current = as_of  # audit rows are pruned by the real clock, never by a claimed as_of
    result = services.retention.run(acme, as_of)

    # The old message is cleaned and, being older than 365 days, pruned in the same run; the
    # 50-day-old one only loses its content (its metadata is not 365 days old).
    assert result["counts"]["messages_cleaned"] == 2 and result["counts"]["messages_pruned"] == 1
    assert result["counts"]["audit_pruned"] == prunable
    assert row(services, old) is None and attachment_rows(services, old) == []
    assert thread_id not in {r["thread_id"] for r in _all_messages(services)} and thread_count(services) == 1
    assert count(services, audit_events, acct, audit_events.c.mailbox == LEGAL) == held_rows
    assert count(services, audit_events, acct, audit_events.c.at < cutoff, audit_events.c.mailbox != LEGAL) == 0
    assert len(events(services, "retention.cleanup", tenant.account["id"])) == 1
    assert fts_is_consistent(services)


def test_a_future_as_of_never_prunes_audit_rows_younger_than_365_real_days(services, acme, clock, tenant):
    _old_and_new(services, clock)
    acct = audit_events.c.account_id == tenant.account["id"]
    before = count(services, audit_events, acct)
    result = services.retention.run(acme, clock.now() + days(4000))
    assert result["counts"]["audit_pruned"] == 0
    assert count(services, audit_events, acct) == before + 1  # plus the retention.cleanup event


def test_an_as_of_out_of_range_is_refused_naming_it(services, acme, client, tenant):
    for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        r = client.post("/api/retention/run", json={"as_of": value}, headers=bearer(tenant.token))
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "as_of"


def _all_messages(services):
    with services.infra.db.read() as conn:
        return [dict(r) for r in conn.execute(select(messages)).mappings()]


def test_batches_are_small_and_an_interrupted_run_is_finished_by_the_next(services, acme, clock, monkeypatch,
                                                                          tenant):
    monkeypatch.setattr(retention_module, "BATCH", 3)
    ids = [ingest(services, clock, T0 + timedelta(minutes=i), Mail(subject=f"n{i}", text=f"word{i} body",
                                                                   to=SUPPORT))[0] for i in range(7)]

    def stop_after_first_batch():  # the heartbeat runs after every batch transaction
        if count(services, messages, messages.c.deleted_content_at.is_not(None)):
            raise RunInterrupted()

    with pytest.raises(RunInterrupted):
        services.retention.run_all(T0 + days(70), heartbeat=stop_after_first_batch)
    cleaned = [i for i in ids if row(services, i)["deleted_content_at"] is not None]
    assert len(cleaned) == 3 and fts_is_consistent(services)
    assert events(services, "retention.cleanup") == []  # an interrupted run records nothing

    result = services.retention.run(acme, T0 + days(70))
    assert result["counts"]["messages_cleaned"] == 4
    assert all(row(services, i)["raw_key"] is None for i in ids) and fts_is_consistent(services)
    assert fts_hits(services, "body") == []


def test_the_route_is_admin_only_and_validates_as_of(services, acme, clock, client, tenant):
    _old_and_new(services, clock)
    scoped = services.tokens.create_token(acme, "bot", ["messages:read"], ["*"])["token"]
    refused = client.post("/api/retention/run", json={}, headers=bearer(scoped))
    assert assert_error(refused, 403, "forbidden")["details"] == {"missing_scope": "admin"}
    denied = events(services, "retention.cleanup")[-1]
    assert denied["outcome"] == "denied" and denied["actor_name"] == "bot"
    naive = client.post("/api/retention/run", json={"as_of": "2026-03-20T00:00:00"}, headers=bearer(tenant.token))
    assert assert_error(naive, 422, "invalid_request")["details"]["field"] == "as_of"
    assert_error(client.post("/api/retention/run", json={"as_of": "soon"}, headers=bearer(tenant.token)),
                 422, "invalid_request")

    ok = client.post("/api/retention/run", json={"as_of": "2026-03-20T00:00:00Z"}, headers=bearer(tenant.token))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["as_of"] == "2026-03-20T00:00:00Z" and body["counts"]["messages_cleaned"] == 1
    now = client.post("/api/retention/run", headers=bearer(tenant.token))  # no body: as of now
    assert now.status_code == 200 and now.json()["counts"]["messages_cleaned"] == 0


def test_a_run_never_touches_another_account(services, acme, clock, other_tenant):
    other = host(services, other_tenant.token, domain="other.example", locals_=("info",))
    theirs = ingest(services, clock, T0, Mail(subject="Theirs", text="foreign words", to="info@other.example"))[0]
    _old_and_new(services, clock)
    services.retention.run(acme, T0 + days(70))
    assert row(services, theirs)["raw_key"] is not None
    assert events(services, "retention.cleanup", other.principal.account_id) == []


def test_the_scheduled_worker_runs_once_per_interval_across_nodes(services, acme, clock, tenant):
    _old_and_new(services, clock)
    clock.current = T0 + days(70)
    node_a = RetentionWorker(services, interval_seconds=86400, holder="node-a")
    node_b = RetentionWorker(services, interval_seconds=86400, holder="node-b")

    first = asyncio.run(node_a.run_once())
    assert first is not None and first["accounts"][tenant.account["id"]]["messages_cleaned"] == 1
    assert asyncio.run(node_b.run_once()) is None  # not due again for a day, whichever node asks
    assert asyncio.run(node_a.run_once()) is None
    clock.advance(days=1)
    assert asyncio.run(node_b.run_once()) is not None
    assert len(events(services, "retention.cleanup", tenant.account["id"])) == 2
    with services.infra.db.read() as conn:
        lock = conn.execute(select(job_locks)).mappings().one()
    assert lock["holder"] == "node-b" and lock["leased_until"] is None


def test_a_held_lease_keeps_other_nodes_out_until_it_expires(services, acme, clock):
    assert services.retention.claim_job("node-a", timedelta(days=1))
    assert not services.retention.claim_job("node-b", timedelta(days=1))
    clock.advance(minutes=16)  # the lease (15 minutes) of a node that died mid-run
    assert services.retention.claim_job("node-b", timedelta(days=1))


def test_retention_run_from_the_cli(services, acme, clock, tenant, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from litemx.adapters.cli.main import app
    from tests.support.live import live_http

    _old_and_new(services, clock)
    with live_http(services) as url:
        monkeypatch.setenv("LITEMX_URL", url)
        monkeypatch.setenv("LITEMX_TOKEN", tenant.token)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        out = CliRunner().invoke(app, ["retention", "run", "--as-of", "2026-03-20T00:00:00Z", "--json"])
        held = CliRunner().invoke(app, ["mailboxes", "hold", SALES, "--json"])
        released = CliRunner().invoke(app, ["mailboxes", "release", SALES])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["counts"]["messages_cleaned"] == 1
    assert held.exit_code == 0 and json.loads(held.stdout)["legal_hold"] is True
    assert released.exit_code == 0 and "legal_hold: no" in released.stdout
    cleanup = events(services, "retention.cleanup", tenant.account["id"])[-1]
    assert cleanup["details"]["requested"]["interface"] == "cli"
