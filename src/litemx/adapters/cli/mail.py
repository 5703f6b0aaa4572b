"""messages, threads, drafts, send."""

from __future__ import annotations

import base64
import mimetypes
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from litemx.adapters.cli import mailview
from litemx.adapters.cli.common import CursorOpt, JsonOpt, LimitOpt, csv, run, seg
from litemx.adapters.cli.mailview import fetch
from litemx.adapters.cli.output import emit

messages = typer.Typer(help="Received and sent messages.", no_args_is_help=True)
threads = typer.Typer(help="Conversations.", no_args_is_help=True)
drafts = typer.Typer(help="Drafts: write first, send explicitly.", no_args_is_help=True)

MailboxOpt = Annotated[str | None, typer.Option("--mailbox", help="Mailbox address.")]
StatusOpt = Annotated[str | None, typer.Option("--status", help="received | quarantined | queued | sent | failed")]
QuarantineOpt = Annotated[bool, typer.Option("--include-quarantined", help="Also show quarantined messages.")]
OffsetOpt = Annotated[int, typer.Option("--offset", min=0, help="Body character to start at (from next_offset).")]
MaxCharsOpt = Annotated[int | None, typer.Option("--max-chars", min=1, max=60000, help="Body characters to show.")]
BodyOpt = Annotated[str | None, typer.Option("--body", help="Plain-text body.")]
MSG_COLS = [("id", "id"), ("received", "received_at"), ("from", "from.address"), ("subject", "subject"),
            ("snippet", "snippet")]
THREAD_COLS = [("id", "id"), ("last", "last_message_at"), ("subject", "subject"), ("messages", "message_count")]
DRAFT_COLS = [("id", "id"), ("mailbox", "mailbox"), ("to", "to"), ("subject", "subject"), ("status", "status")]


@messages.command("list")
def messages_list(mailbox: MailboxOpt = None, status: StatusOpt = None, include_quarantined: QuarantineOpt = False,
                  limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    """Newest first; quarantined mail only with --include-quarantined or --status quarantined."""
    params = {"mailbox": mailbox, "status": status, "include_quarantined": include_quarantined or None,
              "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/messages", params=params), MSG_COLS)


@messages.command("search")
def messages_search(query: str, mailbox: MailboxOpt = None, include_quarantined: QuarantineOpt = False,
                    limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    """Words, "phrases", from: to: subject: has:attachment after:/before:YYYY-MM-DD."""
    params = {"q": query, "mailbox": mailbox, "include_quarantined": include_quarantined or None,
              "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/messages/search", params=params), MSG_COLS)


@messages.command("read")
def messages_read(message_id: str, html: Annotated[bool, typer.Option("--html", help="Print the sanitised HTML.")]
                  = False, offset: OffsetOpt = 0, max_chars: MaxCharsOpt = None, json_: JsonOpt = False) -> None:
    """Headers, SPF/DKIM/DMARC verdicts and the text body (--html: the sanitised HTML)."""
    params = {"offset": offset or None, "max_chars": max_chars}
    data = fetch(json_, lambda api: api.call("GET", f"/api/messages/{seg(message_id)}", params=params))
    mailview.emit_message(data, json_, html)


@messages.command("attachment")
def messages_attachment(message_id: str, attachment_id: str,
                        out: Annotated[Path, typer.Option("--out", help="File to write the bytes to.")],
                        json_: JsonOpt = False) -> None:
    """Download one attachment to a file (never opened or run)."""
    path = f"/api/messages/{seg(message_id)}/attachments/{seg(attachment_id)}"
    data = fetch(json_, lambda api: mailview.download(api, path))
    out.write_bytes(data)
    emit({"saved": str(out), "bytes": len(data)}, json_)


@messages.command("reply")
def messages_reply(message_id: str, body: BodyOpt = None,
                   reply_all: Annotated[bool, typer.Option("--all", help="Reply to all recipients.")] = False,
                   json_: JsonOpt = False) -> None:
    """Create a reply draft (sending is a separate step: drafts send)."""
    run(json_, lambda api: api.call("POST", f"/api/messages/{seg(message_id)}/reply",
                                    body=_compact({"text": body, "reply_all": reply_all or None})))


@threads.command("list")
def threads_list(mailbox: MailboxOpt = None, include_quarantined: QuarantineOpt = False, limit: LimitOpt = None,
                 cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    """Conversations, newest activity first."""
    params = {"mailbox": mailbox, "include_quarantined": include_quarantined or None, "limit": limit,
              "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/threads", params=params), THREAD_COLS)


@threads.command("read")
def threads_read(thread_id: str, max_chars: MaxCharsOpt = None, include_quarantined: QuarantineOpt = False,
                 limit: Annotated[int | None, typer.Option("--limit", min=1, max=50, help="Messages (1-50).")] = None,
                 cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    """The thread's messages oldest first, each body cut to --max-chars (default 4000)."""
    params = {"max_chars": max_chars, "include_quarantined": include_quarantined or None, "limit": limit,
              "cursor": cursor}
    data = fetch(json_, lambda api: api.call("GET", f"/api/threads/{seg(thread_id)}", params=params))
    mailview.emit_thread(data, json_)


@threads.command("reply")
def threads_reply(thread_id: str, body: BodyOpt = None, json_: JsonOpt = False) -> None:
    """Create a reply draft to the thread's latest message."""
    run(json_, lambda api: api.call("POST", f"/api/threads/{seg(thread_id)}/reply", body=_compact({"text": body})))


RecipientsOpt = Annotated[list[str] | None, typer.Option("--to", help="Recipient (repeat or comma-separate).")]
CcOpt = Annotated[list[str] | None, typer.Option("--cc", help="Cc recipient (repeat or comma-separate).")]
BccOpt = Annotated[list[str] | None, typer.Option("--bcc", help="Bcc recipient (never written into the message).")]
HtmlOpt = Annotated[str | None, typer.Option("--html", help="HTML body (sent alongside the text).")]
KeyOpt = Annotated[str | None, typer.Option("--idempotency-key", help="Reuse to make a retried send safe "
                                            "(default: a fresh key per run).")]
AttachOpt = Annotated[list[Path] | None, typer.Option(
    "--attach", exists=True, dir_okay=False, readable=True,
    help="Attach a file (repeatable; content type guessed from the name, else application/octet-stream).")]
SUPPRESSION_COLS = [("address", "address"), ("reason", "reason"), ("mailbox", "mailbox"), ("since", "created_at")]


@drafts.command("create")
def drafts_create(
    mailbox: Annotated[str, typer.Option("--mailbox", help="Sending mailbox.")],
    to: RecipientsOpt = None, cc: CcOpt = None, bcc: BccOpt = None,
    subject: Annotated[str, typer.Option("--subject")] = "",
    body: BodyOpt = None, html: HtmlOpt = None, attach: AttachOpt = None, json_: JsonOpt = False,
) -> None:
    """Write a draft (sending is a separate step: drafts send)."""
    payload = _compact({"mailbox": mailbox, "to": csv(to), "cc": csv(cc), "bcc": csv(bcc), "subject": subject,
                        "text": body, "html": html, "attachments": _attachments(attach)})
    run(json_, lambda api: api.call("POST", "/api/drafts", body=payload))


@drafts.command("list")
def drafts_list(mailbox: MailboxOpt = None, limit: LimitOpt = None, cursor: CursorOpt = None,
                json_: JsonOpt = False) -> None:
    """Unsent drafts, newest first."""
    params = {"mailbox": mailbox, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/drafts", params=params), DRAFT_COLS)


@drafts.command("show")
def drafts_show(draft_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/drafts/{seg(draft_id)}"))


@drafts.command("update")
def drafts_update(
    draft_id: str, to: RecipientsOpt = None, cc: CcOpt = None, bcc: BccOpt = None,
    subject: Annotated[str | None, typer.Option("--subject")] = None,
    body: BodyOpt = None, html: HtmlOpt = None, attach: AttachOpt = None, json_: JsonOpt = False,
) -> None:
    """Change the given fields of an unsent draft (a given --to/--cc/--bcc/--attach replaces the list)."""
    payload = _compact({"to": csv(to) if to is not None else None, "cc": csv(cc) if cc is not None else None,
                        "bcc": csv(bcc) if bcc is not None else None, "subject": subject, "text": body,
                        "html": html, "attachments": _attachments(attach)})
    run(json_, lambda api: api.call("PATCH", f"/api/drafts/{seg(draft_id)}", body=payload))


@drafts.command("delete")
def drafts_delete(draft_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("DELETE", f"/api/drafts/{seg(draft_id)}"))


@drafts.command("send")
def drafts_send(draft_id: str, idempotency_key: KeyOpt = None, json_: JsonOpt = False) -> None:
    """Send a draft (needs email:send; runs the full preflight)."""
    key = {"Idempotency-Key": idempotency_key or f"cli-{uuid.uuid4()}"}
    run(json_, lambda api: api.call("POST", f"/api/drafts/{seg(draft_id)}/send", headers=key))


def send(
    from_: Annotated[str, typer.Option("--from", help="Sending mailbox.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeat or comma-separate).")],
    subject: Annotated[str, typer.Option("--subject")],
    cc: CcOpt = None, bcc: BccOpt = None, body: BodyOpt = None, html: HtmlOpt = None,
    attach: AttachOpt = None, idempotency_key: KeyOpt = None, json_: JsonOpt = False,
) -> None:
    """Send directly (needs email:send; runs the full preflight)."""
    payload = _compact({"mailbox": from_, "to": csv(to), "cc": csv(cc), "bcc": csv(bcc), "subject": subject,
                        "text": body, "html": html, "attachments": _attachments(attach)})
    key = {"Idempotency-Key": idempotency_key or f"cli-{uuid.uuid4()}"}
    run(json_, lambda api: api.call("POST", "/api/send", body=payload, headers=key))


suppressions = typer.Typer(help="Recipients this account no longer sends to (bounces, complaints).",
                           no_args_is_help=True)


@suppressions.command("list")
def suppressions_list(limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    params = {"limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/suppressions", params=params), SUPPRESSION_COLS)


@suppressions.command("remove")
def suppressions_remove(address: str, json_: JsonOpt = False) -> None:
    """Allow sending to ADDRESS again."""
    run(json_, lambda api: api.call("DELETE", f"/api/suppressions/{seg(address)}"))


_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
               "compress": "application/x-compress", "br": "application/x-brotli"}


def _attachments(paths: list[Path] | None) -> list[dict[str, str]] | None:
    """Each file as an API attachment: its name, a guessed content type and its bytes in base64."""
    if not paths:
        return None
    out = []
    for path in paths:
        guessed, encoding = mimetypes.guess_type(path.name, strict=False)
        content_type = _COMPRESSED.get(encoding or "", "application/octet-stream") if encoding else guessed
        out.append({"filename": path.name, "content_type": content_type or "application/octet-stream",
                    "content_base64": base64.b64encode(path.read_bytes()).decode("ascii")})
    return out


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
