"""The send preflight (SPEC §6): every reason answers `send_blocked` 403 with details.reasons,
through the REST API and through the CLI (`error: send_blocked: ... [reasons: ...]`, exit 4);
each blocked attempt is audited `send.blocked` with its reasons and nothing is queued."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from litemx.errors import InvalidRequest, SendBlocked
from litemx.storage import directory_repo, sending_repo
from litemx.storage.schema import audit_events, deliveries
from tests.support.api import assert_error, bearer
from tests.support.live import live_http
from tests.support.sending import (
    DOMAIN,
    MAILBOX,
    count,
    fill_counter,
    hosted,
    outbound_count,
    set_domain,
)

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
BILLING = "billing@project.dev"
MANY = [f"r{i}@example.net" for i in range(11)]  # one over the free plan's 10


@pytest.fixture
def clock(clock):
    clock.current = NOW
    return clock


@dataclass
class Ctx:
    services: Any
    client: Any
    caller: Any
    founder_secret: str

    def token(self, scopes: list[str], mailboxes: list[str] | None = None) -> str:
        made = self.client.post("/api/tokens", headers=bearer(self.founder_secret),
                                json={"name": "bot", "scopes": scopes, "mailboxes": mailboxes or ["*"]})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])

    def mailbox_id(self, address: str = MAILBOX) -> str:
        return str(self.services.directory.show_mailbox(self.caller, address)["id"])


@pytest.fixture
def ctx(services, client, tenant, dns, clock) -> Ctx:
    caller = hosted(services, tenant.token, dns, MAILBOX, BILLING)
    return Ctx(services, client, caller, tenant.token)


@pytest.fixture
def cli(services, monkeypatch, tmp_path) -> Iterator[Callable[..., Any]]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    with live_http(services) as url:
        def run(*args: str, token: str) -> Any:
            return runner.invoke(app, list(args), env={"LITEMX_URL": url, "LITEMX_TOKEN": token})

        yield run


def _send_body(**changes: Any) -> dict[str, Any]:
    return {"mailbox": MAILBOX, "to": ["bob@example.net"], "subject": "Your order", "text": "Shipped.", **changes}


# Each scenario arranges one failing reason; returns (token secret, /api/send body).
def _scope_missing(c: Ctx) -> tuple[str, dict[str, Any]]:
    return c.token(["drafts:write", "messages:read"]), _send_body()


def _mailbox_not_granted(c: Ctx) -> tuple[str, dict[str, Any]]:
    return c.token(["email:send"], [BILLING]), _send_body()


def _domain_not_ready(c: Ctx) -> tuple[str, dict[str, Any]]:
    set_domain(c.services, DOMAIN, outbound_ready=False)
    return c.founder_secret, _send_body()


def _provider_not_approved(c: Ctx) -> tuple[str, dict[str, Any]]:
    set_domain(c.services, DOMAIN, provider_approved=False)
    return c.founder_secret, _send_body()


def _recipient_cap(c: Ctx) -> tuple[str, dict[str, Any]]:
    return c.founder_secret, _send_body(to=MANY[:6], cc=MANY[6:9], bcc=MANY[9:])


def _mailbox_daily_limit(c: Ctx) -> tuple[str, dict[str, Any]]:
    fill_counter(c.services, "mailbox", c.mailbox_id(), "d2026-03-14", 100)
    return c.founder_secret, _send_body()


def _account_daily_limit(c: Ctx) -> tuple[str, dict[str, Any]]:
    fill_counter(c.services, "account", c.caller.principal.account_id, "d2026-03-14", 100)
    return c.founder_secret, _send_body()


def _account_monthly_limit(c: Ctx) -> tuple[str, dict[str, Any]]:
    fill_counter(c.services, "account", c.caller.principal.account_id, "m2026-03", 500)
    return c.founder_secret, _send_body()


def _recipient_suppressed(c: Ctx) -> tuple[str, dict[str, Any]]:
    with c.services.infra.db.write() as conn:
        sending_repo.add_suppression(conn, {"account_id": c.caller.principal.account_id,
                                            "address": "bob@example.net", "reason": "bounce", "mailbox": MAILBOX,
                                            "message_id": None, "details": {}, "created_at": NOW})
    return c.founder_secret, _send_body()


def _disabled(c: Ctx) -> tuple[str, dict[str, Any]]:
    mailbox_id = c.mailbox_id()
    with c.services.infra.db.write() as conn:
        directory_repo.update_mailbox(conn, mailbox_id, {"disabled_at": NOW})
    return c.founder_secret, _send_body()


def _invalid_headers(c: Ctx) -> tuple[str, dict[str, Any]]:
    return c.founder_secret, _send_body(subject="Hello\r\nBcc: victim@example.org")


SCENARIOS: dict[str, Callable[[Ctx], tuple[str, dict[str, Any]]]] = {
    "scope_missing": _scope_missing, "mailbox_not_granted": _mailbox_not_granted,
    "domain_not_ready": _domain_not_ready, "provider_not_approved": _provider_not_approved,
    "recipient_cap": _recipient_cap, "mailbox_daily_limit": _mailbox_daily_limit,
    "account_daily_limit": _account_daily_limit, "account_monthly_limit": _account_monthly_limit,
    "recipient_suppressed": _recipient_suppressed, "disabled": _disabled, "invalid_headers": _invalid_headers,
}


def _cli_args(body: dict[str, Any]) -> list[str]:
    args = ["send", "--from", body["mailbox"], "--subject", body["subject"], "--body", body["text"]]
    for field in ("to", "cc", "bcc"):
        if body.get(field):
            args += [f"--{field}", ",".join(body[field])]
    return args


def _blocked_events(services) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        stmt = select(audit_events).where(audit_events.c.action == "send.blocked").order_by(audit_events.c.id)
        return [dict(r._mapping) for r in conn.execute(stmt)]


@pytest.mark.parametrize("reason", list(SCENARIOS))
def test_each_reason_blocks_the_send_through_the_api_and_the_cli(reason, ctx, cli):
    secret, body = SCENARIOS[reason](ctx)
    response = ctx.client.post("/api/send", json=body, headers={**bearer(secret), "Idempotency-Key": "k-" + reason})
    error = assert_error(response, 403, "send_blocked")
    assert error["details"]["reasons"] == [reason]
    out = cli(*_cli_args(body), token=secret)
    assert out.exit_code == 4, out.output
    assert out.stderr.startswith("error: send_blocked: ") and out.stderr.rstrip().endswith(f"[reasons: {reason}]")
    events = _blocked_events(ctx.services)
    assert [(e["outcome"], e["details"]["reasons"], e["interface"]) for e in events] == [
        ("blocked", [reason], "api"), ("blocked", [reason], "cli")]
    assert outbound_count(ctx.services) == 0 and count(ctx.services, deliveries) == 0


def test_every_failing_reason_is_reported_at_once(ctx):
    secret = ctx.token(["drafts:write"])
    _recipient_suppressed(ctx)
    set_domain(ctx.services, DOMAIN, provider_approved=False)
    body = _send_body(to=["bob@example.net", *MANY], subject="Hi\nthere")
    error = assert_error(ctx.client.post("/api/send", json=body, headers=bearer(secret)), 403, "send_blocked")
    assert error["details"]["reasons"] == ["scope_missing", "provider_not_approved", "recipient_cap",
                                           "recipient_suppressed", "invalid_headers"]
    assert error["details"]["missing_scope"] == "email:send" and error["details"]["suppressed"] == ["bob@example.net"]
    assert error["details"]["field"] == "subject"


def test_a_blocked_send_costs_no_quota(ctx):
    mailbox_id = ctx.mailbox_id()
    for _ in range(3):
        ctx.client.post("/api/send", json=_send_body(to=MANY), headers=bearer(ctx.founder_secret))
    with ctx.services.infra.db.read() as conn:
        assert sending_repo.counter(conn, "mailbox", mailbox_id, "d2026-03-14") == 0
    ok = ctx.client.post("/api/send", json=_send_body(), headers=bearer(ctx.founder_secret))
    assert ok.status_code == 202, ok.text
    with ctx.services.infra.db.read() as conn:
        assert sending_repo.counter(conn, "mailbox", mailbox_id, "d2026-03-14") == 1
        assert sending_repo.counter(conn, "account", ctx.caller.principal.account_id, "m2026-03") == 1


def test_a_draft_send_without_email_send_is_blocked_not_forbidden(ctx, cli):
    secret = ctx.token(["drafts:write"], [MAILBOX])
    draft = ctx.client.post("/api/drafts", json={"mailbox": MAILBOX, "to": ["bob@example.net"], "subject": "Hi"},
                            headers=bearer(secret)).json()
    error = assert_error(ctx.client.post(f"/api/drafts/{draft['id']}/send", headers=bearer(secret)), 403,
                         "send_blocked")
    assert error["details"]["reasons"] == ["scope_missing"]
    out = cli("drafts", "send", draft["id"], token=secret)
    assert out.exit_code == 4 and "[reasons: scope_missing]" in out.stderr
    events = _blocked_events(ctx.services)
    assert [(e["resource_type"], e["resource_id"], e["mailbox"]) for e in events] == [
        ("draft", draft["id"], MAILBOX)] * 2
    assert ctx.client.get(f"/api/drafts/{draft['id']}", headers=bearer(secret)).json()["status"] == "draft"


def test_a_draft_outside_the_grants_is_not_found_even_with_email_send(ctx):
    draft = ctx.client.post("/api/drafts", json={"mailbox": BILLING, "to": ["bob@example.net"]},
                            headers=bearer(ctx.founder_secret)).json()
    secret = ctx.token(["email:send", "drafts:write"], [MAILBOX])
    assert_error(ctx.client.post(f"/api/drafts/{draft['id']}/send", headers=bearer(secret)), 404, "not_found")
    assert outbound_count(ctx.services) == 0


@pytest.mark.parametrize("body, field", [
    ({"subject": "Hi\r\nBcc: x@example.org"}, "subject"),
    ({"to": ["bob@example.net\r\nBcc: x@example.org"]}, "to"),
    ({"cc": ["not an address"]}, "cc"),
])
def test_header_injection_in_a_draft_is_refused_naming_the_field(ctx, body, field):
    payload = {"mailbox": MAILBOX, "to": ["bob@example.net"], **body}
    error = assert_error(ctx.client.post("/api/drafts", json=payload, headers=bearer(ctx.founder_secret)), 422,
                         "invalid_request")
    assert error["details"]["field"] == field
    assert ctx.client.get("/api/drafts", headers=bearer(ctx.founder_secret)).json()["items"] == []


def test_nul_in_a_body_is_refused_by_the_service_too(ctx):
    # The HTTP models already refuse NUL anywhere; the service guards its other callers (MCP).
    with pytest.raises(InvalidRequest) as refused:
        ctx.services.drafts.create(ctx.caller, MAILBOX, ["bob@example.net"], text="nul \x00 byte")
    assert refused.value.details["field"] == "text"
    with pytest.raises(SendBlocked) as blocked:
        ctx.services.sending.send_direct(ctx.caller, MAILBOX, ["bob@example.net"], html="<p>\x00</p>")
    assert blocked.value.reasons == ["invalid_headers"] and blocked.value.details["field"] == "html"
