"""What every client command shares: the --json flag and one way to call and print."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any
from urllib.parse import quote

import typer

from litemx.adapters.cli.client import Api, CliError
from litemx.adapters.cli.output import Column, emit, fail

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, max=200, help="Page size (1-200).")]
CursorOpt = Annotated[str | None, typer.Option("--cursor", help="Cursor from a previous page.")]


def seg(value: str) -> str:
    """One URL path segment (addresses carry '@' and '+')."""
    return quote(value, safe="@")


def run(as_json: bool, fn: Callable[[Api], Any], columns: Sequence[Column] | None = None,
        title: str | None = None) -> None:
    """Call the API and print; on error print one line and exit non-zero."""
    try:
        data = fn(Api.from_env())
    except CliError as error:
        raise typer.Exit(fail(error, as_json)) from None
    emit(data, as_json, columns, title)


def csv(values: list[str] | None) -> list[str]:
    """Accept both `--scopes a,b` and repeated `--scopes a --scopes b`."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out
