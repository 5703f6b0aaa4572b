"""messages, threads, drafts, send."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from litemx.adapters.cli.common import CursorOpt, JsonOpt, LimitOpt, csv, run, seg

messages = typer.Typer(help="Received and sent messages.", no_args_is_help=True)
threads = typer.Typer(help="Conversations.", no_args_is_help=True)
drafts = typer.Typer(help="Drafts: write first, send explicitly.", no_args_is_help=True)

MailboxOpt = Annotated[str | None, typer.Option("--mailbox", help="Mailbox address.")]
BodyOpt = Annotated[str | None, typer.Option("--body", help="Plain-text body.")]
MSG_COLS = [("id", "id"), ("received", "received_at"), ("from", "from.address"), ("subject", "subject"),
            ("snippet", "snippet")]
THREAD_COLS = [("id", "id"), ("last", "last_message_at"), ("subject", "subject"), ("messages", "message_count")]
DRAFT_COLS = [("id", "id"), ("mailbox", "mailbox"), ("to", "to"), ("subject", "subject"), ("status", "status")]


@messages.command("list")
def messages_list(mailbox: MailboxOpt = None, limit: LimitOpt = None, cursor: CursorOpt = None,
                  json_: JsonOpt = False) -> None:
    params = {"mailbox": mailbox, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/messages", params=params), MSG_COLS)


@messages.command("search")
def messages_search(query: str, mailbox: MailboxOpt = None, limit: LimitOpt = None, cursor: CursorOpt = None,
                    json_: JsonOpt = False) -> None:
    """Words, "phrases", from: to: subject: has:attachment after:/before:YYYY-MM-DD."""
    params = {"q": query, "mailbox": mailbox, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/messages/search", params=params), MSG_COLS)


@messages.command("read")
def messages_read(message_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/messages/{seg(message_id)}"))


@messages.command("reply")
def messages_reply(message_id: str, body: BodyOpt = None,
                   reply_all: Annotated[bool, typer.Option("--all", help="Reply to all recipients.")] = False,
                   json_: JsonOpt = False) -> None:
    """Create a reply draft (sending is a separate step: drafts send)."""
    run(json_, lambda api: api.call("POST", f"/api/messages/{seg(message_id)}/reply",
                                    body=_compact({"text": body, "reply_all": reply_all or None})))


@threads.command("list")
def threads_list(mailbox: MailboxOpt = None, limit: LimitOpt = None, cursor: CursorOpt = None,
                 json_: JsonOpt = False) -> None:
    params = {"mailbox": mailbox, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/threads", params=params), THREAD_COLS)


@threads.command("read")
def threads_read(thread_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/threads/{seg(thread_id)}"))


@threads.command("reply")
def threads_reply(thread_id: str, body: BodyOpt = None, json_: JsonOpt = False) -> None:
    """Create a reply draft to the thread's latest message."""
    run(json_, lambda api: api.call("POST", f"/api/threads/{seg(thread_id)}/reply", body=_compact({"text": body})))


@drafts.command("create")
def drafts_create(
    mailbox: Annotated[str, typer.Option("--mailbox", help="Sending mailbox.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeat or comma-separate).")],
    subject: Annotated[str, typer.Option("--subject")] = "",
    body: BodyOpt = None,
    json_: JsonOpt = False,
) -> None:
    payload = _compact({"mailbox": mailbox, "to": csv(to), "subject": subject, "text": body})
    run(json_, lambda api: api.call("POST", "/api/drafts", body=payload))


@drafts.command("list")
def drafts_list(mailbox: MailboxOpt = None, limit: LimitOpt = None, cursor: CursorOpt = None,
                json_: JsonOpt = False) -> None:
    params = {"mailbox": mailbox, "limit": limit, "cursor": cursor}
    run(json_, lambda api: api.call("GET", "/api/drafts", params=params), DRAFT_COLS)


@drafts.command("show")
def drafts_show(draft_id: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/drafts/{seg(draft_id)}"))


@drafts.command("send")
def drafts_send(draft_id: str, json_: JsonOpt = False) -> None:
    """Send a draft (needs email:send; runs the full preflight)."""
    key = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
    run(json_, lambda api: api.call("POST", f"/api/drafts/{seg(draft_id)}/send", headers=key))


def send(
    from_: Annotated[str, typer.Option("--from", help="Sending mailbox.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeat or comma-separate).")],
    subject: Annotated[str, typer.Option("--subject")],
    body: BodyOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Send directly (needs email:send; runs the full preflight)."""
    payload = _compact({"mailbox": from_, "to": csv(to), "subject": subject, "text": body})
    key = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
    run(json_, lambda api: api.call("POST", "/api/send", body=payload, headers=key))


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
