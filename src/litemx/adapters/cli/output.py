"""Human tables by default, JSON with --json; errors as one line on stderr with an exit status."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from litemx.adapters.cli.client import CliError

# One table: error code -> exit status (documented in docs/cli.md).
EXIT_CODES: dict[str, int] = {
    "invalid_request": 2,
    "unauthorized": 3,
    "forbidden": 4,
    "send_blocked": 4,
    "not_found": 5,
    "conflict": 6,
    "payload_too_large": 7,
    "rate_limited": 8,
    "unavailable": 9,
    "not_implemented": 10,
}

Column = tuple[str, str]
# Terminal control characters (ESC sequences included) from untrusted mail never reach the screen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # (header, key: dotted path into the item)


def emit(data: Any, as_json: bool, columns: Sequence[Column] | None = None, title: str | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if columns is not None and isinstance(data, dict) and "items" in data:
        _table(data["items"], columns, title)
        if data.get("next_cursor"):
            print(f"more: --cursor {data['next_cursor']}")
        return
    _fields(data)


def _table(items: list[dict[str, Any]], columns: Sequence[Column], title: str | None) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for item in items:
        # Text() cells: mail subjects and names are untrusted and must never be read as markup.
        table.add_row(*[Text(_cell(pick(item, key))) for _, key in columns])
    Console(width=_width()).print(table)
    if not items:
        print("(none)")


def _fields(data: Any, indent: str = "") -> None:
    if not isinstance(data, dict):
        print(f"{indent}{_cell(data)}")
        return
    for key, value in data.items():
        if isinstance(value, dict) and value:
            print(f"{indent}{key}:")
            _fields(value, indent + "  ")
        else:
            print(f"{indent}{key}: {_cell(value)}")


def pick(item: dict[str, Any], key: str) -> Any:
    value: Any = item
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    # A table cell is one line: line breaks in mail text (search snippets) become spaces.
    return _CONTROL.sub("?", " ".join(str(value).split()) if isinstance(value, str) else str(value))


def _width() -> int | None:
    return None if sys.stdout.isatty() else 200


def fail(error: CliError, as_json: bool) -> int:
    """Print the error (one line, or the envelope with --json) and return the exit status."""
    if as_json:
        envelope = {"error": {"code": error.code, "message": error.message, "details": error.details}}
        print(json.dumps(envelope, indent=2), file=sys.stderr)
    else:
        extra = _reasons(error.details)
        print(f"error: {error.code}: {error.message}{extra}", file=sys.stderr)
    return EXIT_CODES.get(error.code, 1)


def _reasons(details: dict[str, Any]) -> str:
    for key in ("reasons", "missing_scope", "field"):
        if key in details:
            value = details[key]
            return f" [{key}: {', '.join(value) if isinstance(value, list) else value}]"
    return ""
