"""tokens, audit, retention, whoami, login."""

from __future__ import annotations

from typing import Annotated

import typer

from litemx.adapters.cli.client import DEFAULT_URL, Api, CliError, save_config
from litemx.adapters.cli.common import CursorOpt, JsonOpt, LimitOpt, csv, run
from litemx.adapters.cli.output import fail

tokens = typer.Typer(help="Scoped API tokens.", no_args_is_help=True)
audit = typer.Typer(help="The audit log.", no_args_is_help=True)
retention = typer.Typer(help="Retention cleanup.", no_args_is_help=True)

TOKEN_COLS = [("id", "id"), ("name", "name"), ("scopes", "scopes"), ("mailboxes", "mailboxes"),
              ("expires", "expires_at"), ("revoked", "revoked_at")]
AUDIT_COLS = [("id", "id"), ("at", "at"), ("actor", "actor.name"), ("via", "interface"), ("action", "action"),
              ("outcome", "outcome"), ("mailbox", "mailbox"), ("resource", "resource_id")]


@tokens.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="A label, e.g. triage-bot.")],
    scopes: Annotated[list[str], typer.Option("--scopes", help="Comma-separated scopes.")],
    mailbox: Annotated[list[str], typer.Option("--mailbox", help="Granted mailbox (repeat, or '*').")],
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="ISO 8601 time, e.g. 2027-01-01T00:00:00Z")]
    = None,
    json_: JsonOpt = False,
) -> None:
    """Create a token; its secret is printed once."""
    body = {"name": name, "scopes": csv(scopes), "mailboxes": csv(mailbox), "expires_at": expires_at}
    run(json_, lambda api: api.call("POST", "/api/tokens", body=body))


@tokens.command("list")
def tokens_list(limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", "/api/tokens", params={"limit": limit, "cursor": cursor}), TOKEN_COLS)


@tokens.command("revoke")
def tokens_revoke(token_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("DELETE", f"/api/tokens/{token_id}"))


@audit.command("list")
def audit_list(
    mailbox: Annotated[str | None, typer.Option("--mailbox")] = None,
    action: Annotated[str | None, typer.Option("--action", help="e.g. message.read")] = None,
    resource_type: Annotated[str | None, typer.Option("--resource-type")] = None,
    limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False,
) -> None:
    """Newest first."""
    params = {"mailbox": mailbox, "action": action, "resource_type": resource_type, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/audit", params=params), AUDIT_COLS)


@retention.command("run")
def retention_run(as_of: Annotated[str | None, typer.Option("--as-of", help="Pretend it is this ISO time.")] = None,
                  json_: JsonOpt = False) -> None:
    """Run the retention cleanup now (admin only)."""
    run(json_, lambda api: api.call("POST", "/api/retention/run", body={"as_of": as_of} if as_of else {}))


def whoami(json_: JsonOpt = False) -> None:
    """Account, plan, token scopes, grants, limits and usage."""
    run(json_, lambda api: api.call("GET", "/api/bootstrap"))


def login(url: Annotated[str, typer.Option("--url")] = DEFAULT_URL,
          token: Annotated[str | None, typer.Option("--token", help="Omit to be prompted (hidden).")] = None,
          json_: JsonOpt = False) -> None:
    """Check a token against the server and save URL + token to the config file (mode 0600)."""
    secret = token or typer.prompt("token", hide_input=True)
    try:
        me = Api(url.rstrip("/"), secret).call("GET", "/api/bootstrap")
    except CliError as error:
        raise typer.Exit(fail(error, json_)) from None
    path = save_config(url.rstrip("/"), secret)
    run(json_, lambda _api: {"saved": str(path), "account": me["account"]["name"], "token": me["token"]["name"]})
