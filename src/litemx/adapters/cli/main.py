"""`litemx`: the noun-verb client over the REST API, plus the server-side commands."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from litemx.adapters.cli import access, admin, directory, mail
from litemx.adapters.cli.common import JsonOpt
from litemx.adapters.cli.output import EXIT_CODES
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
    processes: Annotated[int | None, Opt("--processes", help="LITEMX_PROCESSES: front processes (0: one per "
                                         "CPU, 1: everything in one process)")] = None,
    worker_processes: Annotated[int | None, Opt("--worker-processes", help="LITEMX_WORKER_PROCESSES (0: one per "
                                                "CPU)")] = None,
) -> None:
    """Run the server: REST API, OpenAPI and /mcp, the SMTP MX, and the background workers."""
    from litemx.server import serve as run_server

    settings = _settings(data_dir=data_dir, http=http, smtp=smtp, hostname=hostname, database_url=database_url,
                         blob_url=blob_url, dns_servers=dns, outbound=outbound, processes=processes,
                         worker_processes=worker_processes)
    with _one_line_errors():
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

    settings = _settings(data_dir=data_dir, database_url=database_url)
    with _one_line_errors():
        services = build_services(settings)
        try:
            account, token = services.auth.create_account(name, plan)
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
    with _one_line_errors():
        status = serve_stdio(settings, os.environ.get("LITEMX_TOKEN"))
    raise typer.Exit(status)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Server-side commands fail like client ones: one line, a code, a non-zero exit — the
    trace goes to the log at debug level only (a port in use or an unreachable database is
    an operator's problem to read, not a Python stack)."""
    try:
        yield
    except LitemxError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(EXIT_CODES.get(exc.code, 1)) from None
    except (OSError, ssl.SSLError, SQLAlchemyError) as exc:
        logging.getLogger("litemx").debug("server-side command failed", exc_info=exc)
        typer.echo(f"error: unavailable: {_describe(exc)}", err=True)
        raise typer.Exit(EXIT_CODES["unavailable"]) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SQLAlchemyError):
        return f"the database is not usable ({type(getattr(exc, 'orig', None) or exc).__name__})"
    return str(exc) or type(exc).__name__


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.load(**overrides)
    except LitemxError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()
