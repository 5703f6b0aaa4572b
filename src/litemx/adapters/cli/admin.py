"""Retention, abuse and privacy commands: legal hold, disable/enable, export, purge.

`domains|mailboxes|tokens disable|enable`, `mailboxes hold|release|export|purge` are REST
clients like every other command; `accounts disable|enable` is server side (direct database,
no token) like `accounts create`, because an account's own founder token cannot meaningfully
switch its account off. main.py attaches these to its groups with `register(...)`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from litemx.adapters.cli.client import USER_AGENT, Api, CliError
from litemx.adapters.cli.common import JsonOpt, run, seg
from litemx.adapters.cli.output import emit, fail
from litemx.errors import LitemxError

Opt = typer.Option
YesOpt = Annotated[bool, Opt("--yes", help="Do not ask for confirmation.")]


# -- REST clients --------------------------------------------------------------------------


def _toggle(kind: str, ident: str, verb: str, json_: bool) -> None:
    run(json_, lambda api: api.call("POST", f"/api/{kind}/{seg(ident)}/{verb}"))


def domains_disable(name: str, json_: JsonOpt = False) -> None:
    """Disable a domain: the MX refuses its mail and sending from it is blocked."""
    _toggle("domains", name, "disable", json_)


def domains_enable(name: str, json_: JsonOpt = False) -> None:
    """Re-enable a disabled domain."""
    _toggle("domains", name, "enable", json_)


def mailboxes_disable(address: str, json_: JsonOpt = False) -> None:
    """Disable a mailbox: the MX answers 550 5.2.1 and sending is blocked; reads still work."""
    _toggle("mailboxes", address, "disable", json_)


def mailboxes_enable(address: str, json_: JsonOpt = False) -> None:
    """Re-enable a disabled mailbox."""
    _toggle("mailboxes", address, "enable", json_)


def tokens_disable(token_id: str, json_: JsonOpt = False) -> None:
    """Disable a token: every request with it answers 403 until enabled again."""
    _toggle("tokens", token_id, "disable", json_)


def tokens_enable(token_id: str, json_: JsonOpt = False) -> None:
    """Re-enable a disabled token."""
    _toggle("tokens", token_id, "enable", json_)


def mailboxes_hold(address: str, json_: JsonOpt = False) -> None:
    """Put a mailbox on legal hold: retention and purge leave it untouched."""
    run(json_, lambda api: api.call("PUT", f"/api/mailboxes/{seg(address)}/legal-hold", body={"hold": True}))


def mailboxes_release(address: str, json_: JsonOpt = False) -> None:
    """Release a mailbox's legal hold."""
    run(json_, lambda api: api.call("PUT", f"/api/mailboxes/{seg(address)}/legal-hold", body={"hold": False}))


def mailboxes_purge(address: str, yes: YesOpt = False, json_: JsonOpt = False) -> None:
    """Erase every message, thread, attachment and audit row of a mailbox (the mailbox stays)."""
    if not yes:
        typer.confirm(f"Erase all content and metadata of {address}? This cannot be undone", abort=True)
    run(json_, lambda api: api.call("POST", f"/api/mailboxes/{seg(address)}/purge"))


def mailboxes_export(address: str, out: Annotated[Path, Opt("--out", help="Zip file to write.")],
                     json_: JsonOpt = False) -> None:
    """Download a mailbox as a zip: raw .eml files, messages.jsonl and audit.jsonl."""
    try:
        summary = _download(Api.from_env(), address, out, show_progress=not json_)
    except CliError as error:
        raise typer.Exit(fail(error, json_)) from None
    emit(summary, json_)


def _download(api: Api, address: str, out: Path, *, show_progress: bool) -> dict[str, Any]:
    """Stream the export into `out` (via a .part file, renamed only when complete).

    Raises: CliError with the server's code, or `unavailable` when the connection fails.
    """
    headers = {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {api.token}"} if api.token else {})}
    part = out.with_name(out.name + ".part")
    try:
        with httpx.stream("GET", f"{api.url}/api/mailboxes/{seg(address)}/export", headers=headers,
                          timeout=api.timeout) as response:
            _raise_for(response)
            messages = int(response.headers.get("x-litemx-messages", "0"))
            written = _save(response, part, messages, show_progress)
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise CliError("unavailable", f"the export stopped: {type(exc).__name__}") from None
    os.replace(part, out)
    return {"mailbox": address, "file": str(out), "bytes": written, "messages": messages}


def _save(response: httpx.Response, part: Path, messages: int, show_progress: bool) -> int:
    columns = (TextColumn(f"export ({messages} messages)"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    written = 0
    with part.open("wb") as fh, Progress(*columns, console=Console(file=sys.stderr),
                                         disable=not show_progress) as progress:
        task = progress.add_task("export", total=None)  # a stream: the size is known only at the end
        for chunk in response.iter_bytes():
            fh.write(chunk)
            written += len(chunk)
            progress.update(task, advance=len(chunk))
    return written


def _raise_for(response: httpx.Response) -> None:
    """Raises: CliError carrying the server's error envelope when the answer is not 2xx."""
    if response.is_success:
        return
    response.read()
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict) or "code" not in error:
        raise CliError("unavailable", f"unexpected HTTP {response.status_code} from the server")
    raise CliError(str(error["code"]), str(error.get("message")), error.get("details") or {})


# -- server side ---------------------------------------------------------------------------

DataDirOpt = Annotated[Path | None, Opt("--data-dir", help="LITEMX_DATA_DIR")]
DatabaseOpt = Annotated[str | None, Opt("--database-url", help="LITEMX_DATABASE_URL")]


def accounts_disable(account_id: str, data_dir: DataDirOpt = None, database_url: DatabaseOpt = None,
                     json_: JsonOpt = False) -> None:
    """Disable an account (server side): its tokens answer 403 and its domains refuse mail."""
    _set_account(account_id, True, data_dir, database_url, json_)


def accounts_enable(account_id: str, data_dir: DataDirOpt = None, database_url: DatabaseOpt = None,
                    json_: JsonOpt = False) -> None:
    """Re-enable a disabled account (server side)."""
    _set_account(account_id, False, data_dir, database_url, json_)


def _set_account(account_id: str, disable: bool, data_dir: Path | None, database_url: str | None,
                 json_: bool) -> None:
    from litemx.app import build_services
    from litemx.settings import Settings

    try:
        services = build_services(Settings.load(data_dir=data_dir, database_url=database_url))
    except LitemxError as exc:
        raise typer.Exit(fail(CliError(exc.code, exc.message, exc.details), json_)) from None
    try:
        result = services.abuse.set_account_disabled(account_id, disable)
    except LitemxError as exc:
        raise typer.Exit(fail(CliError(exc.code, exc.message, exc.details), json_)) from None
    finally:
        services.close()
    if json_:
        print(json.dumps(result, indent=2))
    else:
        emit(result, False)


def register(*, domains: typer.Typer, mailboxes: typer.Typer, tokens: typer.Typer, accounts: typer.Typer) -> None:
    """Attach the commands to the noun groups main.py owns."""
    for group, verbs in ((domains, {"disable": domains_disable, "enable": domains_enable}),
                         (mailboxes, {"disable": mailboxes_disable, "enable": mailboxes_enable,
                                      "hold": mailboxes_hold, "release": mailboxes_release,
                                      "export": mailboxes_export, "purge": mailboxes_purge}),
                         (tokens, {"disable": tokens_disable, "enable": tokens_enable}),
                         (accounts, {"disable": accounts_disable, "enable": accounts_enable})):
        for verb, fn in verbs.items():
            group.command(verb)(fn)
