"""`litemx domains dns-plan|check|status|rotate-dkim|readiness` against a real server on loopback,
with the records served by the loopback DNS server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from tests.support.live import live_http
from tests.test_domains_dns import DOMAIN, MX_HOST, publish


@pytest.fixture
def cli(services, tenant, dns, monkeypatch, tmp_path) -> Iterator[Any]:
    with live_http(services) as url:
        monkeypatch.setenv("LITEMX_URL", url)
        monkeypatch.setenv("LITEMX_TOKEN", tenant.token)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        runner = CliRunner()

        def run(*args: str, token: str | None = None) -> Any:
            return runner.invoke(app, list(args), env={"LITEMX_TOKEN": token} if token else None)

        assert run("domains", "add", DOMAIN).exit_code == 0
        yield run


def as_json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_dns_plan_prints_a_table_and_a_zone(cli):
    table = cli("domains", "dns-plan", DOMAIN)
    assert table.exit_code == 0, table.output
    assert "DNS plan for acme.example" in table.stdout and MX_HOST in table.stdout
    key = next(r["value"] for r in as_json(cli("domains", "dns-plan", DOMAIN, "--json"))["records"]
               if r["purpose"] == "dkim")
    assert key[-40:] in table.stdout.replace("│", "").replace(" ", "").replace("\n", "")  # whole, folded
    zone = cli("domains", "dns-plan", DOMAIN, "--format", "zone")
    assert zone.exit_code == 0 and f"{DOMAIN}.\t3600\tIN\tMX\t10 {MX_HOST}." in zone.stdout


def test_check_prints_a_readable_table_and_json_gives_the_same_facts(cli, dns):
    publish(dns, as_json(cli("domains", "dns-plan", DOMAIN, "--json"))["records"])
    dns.remove(f"_dmarc.{DOMAIN}")
    table = cli("domains", "check", DOMAIN)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "purpose" in line)
    assert [w for w in header.replace("┃", " ").split() if w] == [
        "purpose", "type", "host", "status", "expected", "found", "hint"]
    dmarc_row = next(line for line in lines if f"_dmarc.{DOMAIN}" in line)
    assert "missing" in dmarc_row and "add a TXT record" in dmarc_row
    dkim_at = next(i for i, line in enumerate(lines) if line.startswith("│ dkim"))
    assert "│ ok" in lines[dkim_at]
    assert "…" in "\n".join(lines[dkim_at:dkim_at + 3])  # the 400-character key is shortened in the table
    assert "readiness: inbound yes, outbound no, provider approved no" in table.stdout

    facts = as_json(cli("domains", "check", DOMAIN, "--json"))
    assert {r["purpose"]: r["status"] for r in facts["records"] if r["type"] == "TXT" and r["purpose"] != "mail_from"} \
        == {"spf": "ok", "dkim": "ok", "dmarc": "missing"}
    assert facts["readiness"] == {"inbound_ready": True, "outbound_ready": False, "provider_approved": False}
    assert as_json(cli("domains", "status", DOMAIN, "--json"))["records"] == facts["records"]


def test_rotate_dkim_shows_the_keys_and_the_record_to_publish(cli):
    out = cli("domains", "rotate-dkim", DOMAIN)
    assert out.exit_code == 0, out.output
    assert "retiring" in out.stdout and "active" in out.stdout
    assert out.stdout.count("publish: ") == 2 and "._domainkey.acme.example TXT" in out.stdout
    body = as_json(cli("domains", "rotate-dkim", DOMAIN, "--json"))
    assert [k["status"] for k in body["keys"]] == ["retired", "retiring", "active"]
    retiring = body["retiring"][0]
    done = as_json(cli("domains", "rotate-dkim", DOMAIN, "--retire", retiring, "--json"))
    assert done["retired"] == [retiring]


def test_readiness_is_the_admins_word_and_refusals_are_one_line(cli):
    body = as_json(cli("domains", "readiness", DOMAIN, "--provider-approved", "--json"))
    assert body["readiness"]["provider_approved"] is True
    made = as_json(cli("tokens", "create", "--name", "dns-bot", "--mailbox", "*", "--scopes",
                       "domains:read,domains:write", "--json"))
    refused = cli("domains", "readiness", DOMAIN, "--no-provider-approved", token=made["token"])
    assert refused.exit_code == 4
    assert refused.stderr.strip().splitlines() == [
        "error: forbidden: domains.readiness needs the account's admin token [missing_scope: admin]"]
    missing = cli("domains", "check", "ghost.example")
    assert missing.exit_code == 5 and missing.stderr.startswith("error: not_found:")


def test_dmarc_report_address_on_add_and_with_domains_dmarc(cli, services):
    added = as_json(cli("domains", "add", "rua.example", "--dmarc-report", "dmarc@rua.example", "--json"))
    assert added["dmarc_report"] == "dmarc@rua.example"
    [dmarc] = [r for r in as_json(cli("domains", "dns-plan", "rua.example", "--json"))["records"]
               if r["purpose"] == "dmarc"]
    assert dmarc["value"] == "v=DMARC1; p=none; rua=mailto:dmarc@rua.example"

    out = cli("domains", "dmarc", DOMAIN, "--report", "agg@reports.example")
    assert out.exit_code == 0, out.output
    assert "DMARC record for acme.example" in out.stdout and "rua=mailto:agg@reports.example" in out.stdout
    warning = next(line for line in out.stdout.splitlines() if line.startswith("warning: "))
    assert f'{DOMAIN}._report._dmarc.reports.example "v=DMARC1"' in warning
    plan_table = cli("domains", "dns-plan", DOMAIN)
    assert plan_table.exit_code == 0 and warning in plan_table.stdout.splitlines()
    zone = cli("domains", "dns-plan", DOMAIN, "--format", "zone")
    assert f"; {DOMAIN}._report._dmarc.reports.example.\t3600\tIN\tTXT\t\"v=DMARC1\"" in zone.stdout

    cleared = as_json(cli("domains", "dmarc", DOMAIN, "--no-report", "--json"))
    assert (cleared["report_address"], cleared["warnings"]) == (None, [])
    assert cleared["records"][0]["value"] == "v=DMARC1; p=none"
    events = as_json(cli("audit", "list", "--action", "domain.dmarc", "--json"))["items"]
    assert [(e["details"]["from"], e["details"]["to"], e["interface"]) for e in events] == [
        ("agg@reports.example", None, "cli"), (None, "agg@reports.example", "cli")]


def test_domains_dmarc_refuses_a_bad_address_and_needs_one_choice(cli):
    bad = cli("domains", "dmarc", DOMAIN, "--report", "nope")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: invalid_request:")
    assert bad.stderr.rstrip().endswith("[field: report_address]")
    assert cli("domains", "add", "x.example", "--dmarc-report", "nope").stderr.rstrip().endswith(
        "[field: dmarc_report]")
    assert cli("domains", "dmarc", DOMAIN).exit_code == 2  # neither --report nor --no-report
    assert cli("domains", "dmarc", DOMAIN, "--report", "a@b.example", "--no-report").exit_code == 2
