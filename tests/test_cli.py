"""The CLI against a real server on loopback: tables, --json, one-line errors, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from tests.support.live import live_http


@pytest.fixture
def live_url(services) -> Iterator[str]:
    with live_http(services) as url:
        yield url


@pytest.fixture
def cli(live_url, tenant, monkeypatch, tmp_path):
    monkeypatch.setenv("LITEMX_URL", live_url)
    monkeypatch.setenv("LITEMX_TOKEN", tenant.token)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()

    def run(*args: str, token: str | None = None):
        env = {"LITEMX_TOKEN": token} if token is not None else None
        return runner.invoke(app, list(args), env=env)

    return run


def test_the_first_loop_commands_work_as_the_readme_shows(cli):
    assert cli("domains", "add", "project.dev").exit_code == 0
    assert cli("mailboxes", "create", "support@project.dev").exit_code == 0
    listing = cli("mailboxes", "list")
    assert listing.exit_code == 0 and "support@project.dev" in listing.stdout
    made = cli("tokens", "create", "--name", "triage-bot", "--mailbox", "support@project.dev",
               "--scopes", "messages:read,messages:search,drafts:write", "--json")
    assert made.exit_code == 0, made.output
    body = json.loads(made.stdout)
    assert body["token"].startswith("lmx_") and body["scopes"] == ["drafts:write", "messages:read", "messages:search"]


def test_json_output_is_the_api_answer(cli):
    cli("domains", "add", "project.dev")
    out = cli("domains", "list", "--json")
    assert out.exit_code == 0
    assert [d["name"] for d in json.loads(out.stdout)["items"]] == ["project.dev"]


def test_errors_are_one_line_with_the_code_and_a_nonzero_exit(cli):
    cli("domains", "add", "project.dev")
    again = cli("domains", "add", "project.dev")
    assert again.exit_code == 6
    assert again.stderr.strip().splitlines() == [
        "error: conflict: the domain project.dev is already added on this instance [field: name]"]
    assert cli("mailboxes", "show", "nobody@project.dev").exit_code == 5
    assert cli("whoami", token="lmx_not_a_real_token_at_all_000000").exit_code == 3


def test_a_scoped_token_is_refused_naming_the_scope(cli, services, tenant):
    cli("domains", "add", "project.dev")
    cli("mailboxes", "create", "support@project.dev")
    made = json.loads(cli("tokens", "create", "--name", "bot", "--mailbox", "support@project.dev",
                          "--scopes", "messages:read", "--json").stdout)
    refused = cli("mailboxes", "create", "hello@project.dev", token=made["token"])
    assert refused.exit_code == 4
    assert "mailboxes:write" in refused.stderr


def test_audit_list_filters_and_records_the_cli_as_interface(cli):
    cli("domains", "add", "project.dev")
    cli("mailboxes", "create", "support@project.dev")
    out = json.loads(cli("audit", "list", "--action", "mailbox.create", "--json").stdout)
    assert [(e["action"], e["interface"], e["mailbox"]) for e in out["items"]] == [
        ("mailbox.create", "cli", "support@project.dev")]


def test_an_unreachable_server_is_a_clear_error(cli, monkeypatch):
    monkeypatch.setenv("LITEMX_URL", "http://127.0.0.1:9")
    out = cli("whoami")
    assert out.exit_code == 9 and out.stderr.startswith("error: unavailable: cannot reach LiteMX")


def test_login_saves_a_private_config_the_next_command_uses(cli, live_url, tenant, monkeypatch, tmp_path):
    monkeypatch.delenv("LITEMX_TOKEN")
    monkeypatch.delenv("LITEMX_URL")
    out = cli("login", "--url", live_url, "--token", tenant.token)
    assert out.exit_code == 0, out.output
    path = Path(tmp_path / "config" / "litemx" / "config.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert cli("whoami", "--json").exit_code == 0
