"""`litemx`: the noun-verb client over the REST API, plus the server-side commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from litemx.adapters.cli import access, admin, directory, mail
from litemx.adapters.cli.common import JsonOpt
from litemx.errors import LitemxError
from litemx.settings import Settings

app = typer.Typer(help="LiteMX: email for role inboxes operated by AI agents.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
accounts = typer.Typer(help="Accounts (server side: talks to the database directly).", no_args_is_help=True)

for name, sub in (("domains", directory.domains), ("mailboxes", directory.mailboxes),
                  ("aliases", directory.aliases), ("catchall", directory.catchall), ("messages", mail.messages),
                  ("threads", mail.threads), ("drafts", mail.drafts), ("tokens", access.tokens),
                  ("audit", access.audit), ("retention", access.retention), ("accounts", accounts)):
    app.add_typer(sub, name=name)
app.add_typer(mail.suppressions, name="suppressions")
app.command("send")(mail.send)
app.command("whoami")(access.whoami)
app.command("login")(access.login)
admin.register(domains=directory.domains, mailboxes=directory.mailboxes, tokens=access.tokens, accounts=accounts)

Opt = typer.Option


@app.command()
def serve(
    data_dir: Annotated[Path | None, Opt("--data-dir", help="LITEMX_DATA_DIR (default ./data)")] = None,
    http: Annotated[str | None, Opt("--http", help="LITEMX_HTTP host:port (default 127.0.0.1:8025)")] = None,
    smtp: Annotated[str | None, Opt("--smtp", help="LITEMX_SMTP host:port (default 127.0.0.1:2525)")] = None,
    hostname: Annotated[str | None, Opt("--hostname", help="LITEMX_HOSTNAME: MX host name")] = None,
    database_url: Annotated[str | None, Opt("--database-url", help="LITEMX_DATABASE_URL")] = None,
    blob_url: Annotated[str | None, Opt("--blob-url", help="LITEMX_BLOB_URL")] = None,
    dns: Annotated[str | None, Opt("--dns", help="LITEMX_DNS_SERVERS host:port[,host:port]")] = None,
    outbound: Annotated[str | None, Opt("--outbound", help="LITEMX_OUTBOUND smtp://host:port | mx | ses")] = None,
) -> None:
    """Run the server: REST API, OpenAPI and /mcp (and the MX listener as it lands)."""
    from litemx.server import serve as run_server

    settings = _settings(data_dir=data_dir, http=http, smtp=smtp, hostname=hostname, database_url=database_url,
                         blob_url=blob_url, dns_servers=dns, outbound=outbound)
    run_server(settings)


@accounts.command("create")
def accounts_create(
    name: str,
    plan: Annotated[str, Opt("--plan", help="free | starter | scale")] = "free",
    data_dir: Annotated[Path | None, Opt("--data-dir", help="LITEMX_DATA_DIR")] = None,
    database_url: Annotated[str | None, Opt("--database-url", help="LITEMX_DATABASE_URL")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create an account and print its founder admin token (shown once)."""
    from litemx.app import build_services

    services = build_services(_settings(data_dir=data_dir, database_url=database_url))
    try:
        account, token = services.auth.create_account(name, plan)
    except LitemxError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        services.close()
    if json_:
        typer.echo(json.dumps({"account": {"id": account["id"], "name": account["name"], "plan": plan},
                               "token": token}))
        return
    typer.echo(f"account {account['id']} ({account['name']}, plan {plan})")
    typer.echo(f"founder admin token (shown once, keep it safe): {token}")


@app.command()
def mcp(
    data_dir: Annotated[Path | None, Opt("--data-dir", help="LITEMX_DATA_DIR (default ./data)")] = None,
    database_url: Annotated[str | None, Opt("--database-url", help="LITEMX_DATABASE_URL")] = None,
    blob_url: Annotated[str | None, Opt("--blob-url", help="LITEMX_BLOB_URL")] = None,
    dns: Annotated[str | None, Opt("--dns", help="LITEMX_DNS_SERVERS host:port[,host:port]")] = None,
) -> None:
    """Serve the MCP tools over stdio for a local client, acting as the token in LITEMX_TOKEN
    (server side: the same data dir / database as `serve`)."""
    from litemx.adapters.mcp.stdio import serve_stdio

    settings = _settings(data_dir=data_dir, database_url=database_url, blob_url=blob_url, dns_servers=dns)
    raise typer.Exit(serve_stdio(settings, os.environ.get("LITEMX_TOKEN")))


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.load(**overrides)
    except LitemxError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()
