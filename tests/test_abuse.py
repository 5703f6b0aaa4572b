"""Abuse controls (SPEC §11): disabling a domain, mailbox, token or account takes effect at once on
every path — SMTP, REST, MCP, send preflight — and is audited; enabling restores it."""

from __future__ import annotations

import json
import smtplib

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app as cli_app
from tests.support.api import assert_error, bearer
from tests.support.inbox import Mail
from tests.support.live import live_smtp
from tests.support.retention_helpers import SALES, SUPPORT, T0, events, host, ingest

RAW = b"From: Mallory <m@sender.example>\r\nTo: support@acme.example\r\nSubject: hi\r\n\r\nbody\r\n"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}


@pytest.fixture
def acme(services, tenant, clock):
    clock.current = T0
    return host(services, tenant.token)


@pytest.fixture
def bot(services, acme):
    """A scoped token that may read and send from support@."""
    made = services.tokens.create_token(acme, "bot", ["messages:read", "email:send", "drafts:write",
                                                      "mailboxes:read"], [SUPPORT])
    return made


def _rcpt(host_port, recipient):
    """The MX's answer to RCPT TO (code, text), after a clean MAIL FROM."""
    with smtplib.SMTP(*host_port, timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("m@sender.example")
        code, text = smtp.rcpt(recipient)
        smtp.rset()
    return code, text.decode()


def _post(client, path, secret):
    return client.post(path, headers=bearer(secret))


def test_a_disabled_mailbox_refuses_mail_at_the_mx_with_550_5_2_1_and_enabling_restores_it(
        services, acme, client, tenant):
    with live_smtp(services, worker=False) as mx:
        assert _rcpt(mx, SUPPORT)[0] == 250
        off = _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
        assert off.status_code == 200 and off.json()["disabled"] is True
        code, text = _rcpt(mx, SUPPORT)
        assert code == 550 and text.startswith("5.2.1")
        assert _rcpt(mx, "support+tag@acme.example")[0] == 550  # plus-addressing reaches the same mailbox
        assert _rcpt(mx, SALES)[0] == 250  # only that mailbox
        _post(client, f"/api/mailboxes/{SUPPORT}/enable", tenant.token)
        assert _rcpt(mx, SUPPORT)[0] == 250


def test_a_disabled_domain_or_account_refuses_all_its_mail_at_the_mx(services, acme, client, tenant):
    with live_smtp(services, worker=False) as mx:
        assert _post(client, "/api/domains/acme.example/disable", tenant.token).json()["disabled"] is True
        code, text = _rcpt(mx, SALES)
        assert code == 550 and text.startswith("5.7.1")
        _post(client, "/api/domains/acme.example/enable", tenant.token)
        assert _rcpt(mx, SALES)[0] == 250

        services.abuse.set_account_disabled(tenant.account["id"], True)
        code, text = _rcpt(mx, SALES)
        assert code == 550 and text.startswith("5.7.1")
        services.abuse.set_account_disabled(tenant.account["id"], False)
        assert _rcpt(mx, SALES)[0] == 250


def test_a_disabled_token_is_refused_on_rest_and_mcp_until_enabled(services, acme, client, tenant, bot):
    assert client.get("/api/mailboxes", headers=bearer(bot["token"])).status_code == 200
    off = _post(client, f"/api/tokens/{bot['id']}/disable", tenant.token)
    assert off.status_code == 200 and off.json()["disabled"] is True

    error = assert_error(client.get("/api/mailboxes", headers=bearer(bot["token"])), 403, "forbidden")
    assert error["details"] == {"reason": "disabled", "disabled": "token"}
    assert_error(client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(bot["token"])}),
                 403, "forbidden")
    assert_error(client.post("/api/send", json={"mailbox": SUPPORT, "to": ["x@elsewhere.example"],
                                                "subject": "s", "text": "t"}, headers=bearer(bot["token"])),
                 403, "forbidden")
    refused = events(services, "auth.denied")
    assert {e["details"]["reason"] for e in refused} == {"token disabled"}
    assert {e["interface"] for e in refused} == {"api", "mcp"}

    _post(client, f"/api/tokens/{bot['id']}/enable", tenant.token)
    assert client.get("/api/mailboxes", headers=bearer(bot["token"])).status_code == 200
    assert client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(bot["token"])}).status_code == 200


def test_a_disabled_account_refuses_every_token_of_it(services, acme, client, tenant, bot, other_tenant):
    services.abuse.set_account_disabled(tenant.account["id"], True)
    for secret in (tenant.token, bot["token"]):
        error = assert_error(client.get("/api/bootstrap", headers=bearer(secret)), 403, "forbidden")
        assert error["details"]["disabled"] == "account"
        assert_error(client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)}),
                     403, "forbidden")
    assert client.get("/api/bootstrap", headers=bearer(other_tenant.token)).status_code == 200
    [event] = events(services, "abuse.disable", tenant.account["id"])
    assert (event["actor_type"], event["interface"], event["resource_type"]) == ("operator", "cli", "account")
    services.abuse.set_account_disabled(tenant.account["id"], False)
    assert client.get("/api/bootstrap", headers=bearer(tenant.token)).status_code == 200


def test_send_preflight_blocks_a_disabled_mailbox_or_domain_with_reason_disabled(services, acme, client,
                                                                                 tenant, bot):
    body = {"mailbox": SUPPORT, "to": ["customer@elsewhere.example"], "subject": "Hello", "text": "Hi"}
    _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
    blocked = assert_error(client.post("/api/send", json=body, headers=bearer(bot["token"])), 403, "send_blocked")
    assert "disabled" in blocked["details"]["reasons"] and "mailbox" in blocked["details"]["disabled"]
    _post(client, f"/api/mailboxes/{SUPPORT}/enable", tenant.token)
    _post(client, "/api/domains/acme.example/disable", tenant.token)
    blocked = assert_error(client.post("/api/send", json=body, headers=bearer(bot["token"])), 403, "send_blocked")
    assert "disabled" in blocked["details"]["reasons"] and blocked["details"]["disabled"] == ["domain"]
    _post(client, "/api/domains/acme.example/enable", tenant.token)
    after = client.post("/api/send", json=body, headers=bearer(bot["token"]))
    assert "disabled" not in (after.json().get("error", {}).get("details", {}).get("reasons") or [])


def test_send_draft_over_mcp_is_blocked_for_a_disabled_mailbox(services, acme, client, tenant, bot):
    draft = client.post("/api/drafts", json={"mailbox": SUPPORT, "to": ["customer@elsewhere.example"],
                                             "subject": "Hi", "text": "Hello"}, headers=bearer(bot["token"]))
    assert draft.status_code == 201, draft.text
    _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "send_draft", "arguments": {"draft_id": draft.json()["id"]}}}
    answer = client.post("/mcp", json=call, headers={**MCP_HEADERS, **bearer(bot["token"])})
    assert answer.status_code == 200
    result = answer.json()["result"]
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert error["code"] == "send_blocked" and "disabled" in error["details"]["reasons"]
    blocked = events(services, "send.blocked")[-1]
    assert blocked["interface"] == "mcp" and "disabled" in blocked["details"]["reasons"]


def test_a_disabled_mailbox_stays_readable_by_its_tokens(services, acme, clock, client, tenant, bot):
    message = ingest(services, clock, T0, Mail(subject="Evidence", text="phishing kit", to=SUPPORT))[0]
    _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
    read = client.get(f"/api/messages/{message}", headers=bearer(bot["token"]))
    assert read.status_code == 200 and read.json()["subject"] == "Evidence"
    tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "read_message", "arguments": {"message_id": message}}}
    answer = client.post("/mcp", json=tools, headers={**MCP_HEADERS, **bearer(bot["token"])})
    assert answer.status_code == 200 and "Evidence" in answer.text


def test_disable_and_enable_are_admin_only_idempotent_and_audited(services, acme, client, tenant, bot):
    for path in (f"/api/mailboxes/{SUPPORT}/disable", "/api/domains/acme.example/disable",
                 f"/api/tokens/{bot['id']}/enable"):
        error = assert_error(_post(client, path, bot["token"]), 403, "forbidden")
        assert error["details"] == {"missing_scope": "admin"}
    assert {e["outcome"] for e in events(services, "abuse.disable")} == {"denied"}

    _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
    again = _post(client, f"/api/mailboxes/{SUPPORT}/disable", tenant.token)
    assert again.status_code == 200 and again.json()["disabled"] is True
    ok = [e for e in events(services, "abuse.disable") if e["outcome"] == "ok"]
    assert [(e["resource_type"], e["mailbox"], e["details"]) for e in ok] == [
        ("mailbox", SUPPORT, {"already": False}), ("mailbox", SUPPORT, {"already": True})]
    assert ok[0]["actor_id"] == acme.principal.token_id

    assert_error(_post(client, "/api/mailboxes/nobody@acme.example/disable", tenant.token), 404, "not_found")
    assert_error(_post(client, "/api/tokens/tok_missing/disable", tenant.token), 404, "not_found")
    self_off = assert_error(_post(client, f"/api/tokens/{acme.principal.token_id}/disable", tenant.token),
                            409, "conflict")
    assert self_off["details"]["reason"] == "self"


def test_another_accounts_things_cannot_be_disabled(services, acme, client, other_tenant, bot):
    for path in (f"/api/mailboxes/{SUPPORT}/disable", "/api/domains/acme.example/disable",
                 f"/api/tokens/{bot['id']}/disable"):
        assert_error(_post(client, path, other_tenant.token), 404, "not_found")
    assert client.get("/api/mailboxes", headers=bearer(bot["token"])).status_code == 200


def test_the_cli_disables_and_enables_every_kind(services, acme, tenant, bot, monkeypatch, tmp_path, settings):
    from tests.support.live import live_http

    runner = CliRunner()
    with live_http(services) as url:
        monkeypatch.setenv("LITEMX_URL", url)
        monkeypatch.setenv("LITEMX_TOKEN", tenant.token)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        for args in (["mailboxes", "disable", SUPPORT], ["domains", "disable", "acme.example"],
                     ["tokens", "disable", bot["id"]]):
            out = runner.invoke(cli_app, [*args, "--json"])
            assert out.exit_code == 0, out.output
            assert json.loads(out.stdout)["disabled"] is True
        back = runner.invoke(cli_app, ["tokens", "enable", bot["id"]])
        assert back.exit_code == 0 and "disabled: no" in back.stdout
        refused = runner.invoke(cli_app, ["mailboxes", "disable", SUPPORT], env={"LITEMX_TOKEN": bot["token"]})
        assert refused.exit_code == 4 and "forbidden" in refused.stderr

    server_side = ["--database-url", settings.resolved_database_url, "--data-dir", str(settings.data_dir), "--json"]
    off = runner.invoke(cli_app, ["accounts", "disable", tenant.account["id"], *server_side])
    assert off.exit_code == 0, off.output
    assert json.loads(off.stdout)["disabled"] is True
    unknown = runner.invoke(cli_app, ["accounts", "disable", "acc_nope", *server_side])
    assert unknown.exit_code == 5 and "not_found" in unknown.stderr
    on = runner.invoke(cli_app, ["accounts", "enable", tenant.account["id"], *server_side])
    assert on.exit_code == 0 and json.loads(on.stdout)["disabled"] is False
