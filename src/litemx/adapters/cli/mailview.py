"""How `messages read`, `threads read` and `messages attachment` print and download.

A message is printed as a person reads mail: a few headers, the SPF/DKIM/DMARC verdicts and
signals (the reader judges the sender by them), then the body. Message content is untrusted:
control characters other than newline and tab are replaced before printing so a message can
never drive the terminal (escape sequences, cursor moves, title changes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import typer

from litemx.adapters.cli.client import USER_AGENT, Api, CliError
from litemx.adapters.cli.output import emit, fail

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def fetch(as_json: bool, fn: Callable[[Api], Any]) -> Any:
    """Call the API; on error print one line and exit with the error's status (like `run`)."""
    try:
        return fn(Api.from_env())
    except CliError as error:
        raise typer.Exit(fail(error, as_json)) from None


def download(api: Api, path: str) -> bytes:
    """GET raw bytes. Raises: CliError with the server's code, or `unavailable`."""
    headers = {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {api.token}"} if api.token else {})}
    try:
        response = httpx.get(api.url + path, headers=headers, timeout=api.timeout)
    except httpx.HTTPError as exc:
        raise CliError("unavailable", f"cannot reach LiteMX at {api.url} ({type(exc).__name__})") from None
    if response.is_success:
        return response.content
    raise _error_of(response)


def _error_of(response: httpx.Response) -> CliError:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return CliError("unavailable", f"unexpected HTTP {response.status_code} from the server")
    return CliError(str(error.get("code")), str(error.get("message")), error.get("details") or {})


def safe(text: Any) -> str:
    """Untrusted text made harmless for a terminal."""
    # Mail lines end in CRLF (RFC 5322 §2.1): the CR is line structure, not a control to mark.
    return _CONTROL.sub("\ufffd", "" if text is None else str(text).replace("\r\n", "\n"))


def _who(party: dict[str, Any] | None) -> str:
    if not party:
        return "-"
    name, address = party.get("name"), party.get("address")
    return f"{name} <{address}>" if name else str(address)


def _verdicts(message: dict[str, Any]) -> str:
    v = message.get("verdict") or {}
    return f"spf={v.get('spf')} dkim={v.get('dkim')} dmarc={v.get('dmarc')}"


def _body(part: dict[str, Any] | None, label: str, message_id: str) -> list[str]:
    if part is None:
        return [f"({label}: none)"]
    lines = [safe(part["content"])]
    if part.get("truncated"):
        lines.append(f"[… {part['length'] - part['next_offset']} more characters: "
                     f"litemx messages read {message_id} --offset {part['next_offset']}]")
    return lines


def message_lines(m: dict[str, Any], html: bool) -> list[str]:
    """The printed form of GET /api/messages/{id}."""
    lines = [f"Message:  {m['id']}  ({m['status']}, mailbox {m['mailbox']}, thread {m['thread_id']})",
             f"From:     {safe(_who(m.get('from')))}",
             f"To:       {safe(', '.join(_who(p) for p in m.get('to') or []))}",
             f"Subject:  {safe(m.get('subject'))}",
             f"Date:     {m.get('date') or '-'}  (received {m.get('received_at')})",
             f"Verdicts: {_verdicts(m)}"]
    lines += [f"Signal:   {safe(s.get('code'))}: {safe(s.get('reason'))}" for s in m.get("signals") or []]
    lines += [f"Attach:   {a['id']}  {safe(a['filename'])}  {a['content_type']}  {a['size']} bytes"
              for a in m.get("attachments") or []]
    lines.append("-- untrusted content below " + "-" * 40)
    lines += _body(m.get("html") if html else m.get("text"), "HTML" if html else "text", m["id"])
    return lines


def emit_message(data: dict[str, Any], as_json: bool, html: bool) -> None:
    if as_json:
        emit(data, True)
        return
    print("\n".join(message_lines(data, html)))


def thread_lines(data: dict[str, Any]) -> list[str]:
    """The printed form of GET /api/threads/{id}."""
    t = data["thread"]
    lines = [f"Thread: {t['id']}  {safe(t['subject'])}  ({t['message_count']} messages, mailbox {t['mailbox']})"]
    for m in data["messages"]:
        lines += ["", f"== {m['id']}  {m.get('received_at')}  {safe(_who(m.get('from')))}  [{_verdicts(m)}]"]
        lines += _body(m.get("text"), "text", m["id"])
    if data.get("next_cursor"):
        lines += ["", f"more: --cursor {data['next_cursor']}"]
    return lines


def emit_thread(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(data, True)
        return
    print("\n".join(thread_lines(data)))
