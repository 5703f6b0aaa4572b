"""What the tools show: the services' answers re-shaped for a model (SPEC §7).

Pure functions from service dicts to payload trees. Everything a sender controls (subject,
snippet, display names, attachment names, bodies) is fenced as untrusted content; the
SPF/DKIM/DMARC verdict, signals and a plain-words review list sit beside it, outside the fence.
Raw headers and HTML are left out (an agent reads the text; REST serves the rest).
"""

from __future__ import annotations

from typing import Any

from litemx.adapters.mcp.fence import Fence
from litemx.adapters.mcp.sizing import BodyWindow

SUBJECT_CHARS = 300
MAX_PARTIES = 10
AUTH_KEYS = {"spf": ("result", "domain"), "dmarc": ("result", "policy", "disposition", "domain")}


def review(item: dict[str, Any], signals: list[Any] | None = None) -> list[str]:
    """Why a human should look before an agent acts on this message (empty: nothing flagged)."""
    if item.get("direction") == "outbound":
        return []  # our own mail: nothing to authenticate
    verdict, status = item.get("verdict") or {}, item.get("status")
    reasons: list[str] = []
    if status == "quarantined":
        reasons.append("quarantined: DMARC failed under the domain's reject policy")
    if verdict.get("dmarc") == "fail":
        reasons.append("DMARC failed: the From domain is not authenticated; the sender may not be who they claim")
    elif "pass" not in (verdict.get("spf"), verdict.get("dkim"), verdict.get("dmarc")):
        reasons.append("neither SPF nor DKIM passed: the sender is unauthenticated")
    for signal in signals or []:
        code = signal.get("code") if isinstance(signal, dict) else str(signal)
        if code and not code.startswith(("spf_", "dkim_", "dmarc_")):
            reasons.append(f"spam/phishing signal: {code}")
    return reasons


def party(value: dict[str, Any] | None, fence: Fence) -> dict[str, Any] | None:
    if not value:
        return None
    return {"name": fence.wrap_optional(value.get("name")), "address": value.get("address")}


def parties(values: list[dict[str, Any]] | None, fence: Fence) -> dict[str, Any]:
    values = values or []
    return {"list": [party(v, fence) for v in values[:MAX_PARTIES]], "count": len(values)}


def subject(value: str | None, fence: Fence) -> str | None:
    return fence.wrap_optional((value or "")[:SUBJECT_CHARS])


def message_brief(item: dict[str, Any], fence: Fence) -> dict[str, Any]:
    """A message as lists, search hits and thread pages show it (no body)."""
    view = {
        "id": item.get("id"), "thread_id": item.get("thread_id"), "mailbox": item.get("mailbox"),
        "direction": item.get("direction"), "status": item.get("status"), "date": item.get("date"),
        "received_at": item.get("received_at"), "from": party(item.get("from"), fence),
        "to": parties(item.get("to"), fence), "subject": subject(item.get("subject"), fence),
        "snippet": fence.wrap_optional(item.get("snippet")), "has_attachments": item.get("has_attachments"),
        "verdict": item.get("verdict"), "review": review(item),
    }
    if item.get("content_deleted"):
        view["content_deleted"] = True
    return view


def message_full(view: dict[str, Any], fence: Fence, trim: bool) -> dict[str, Any]:
    """read_message: metadata, verdicts, signals, attachments and one body window."""
    out = message_brief(view, fence)
    out.pop("snippet", None)
    signals = view.get("signals") or []
    out.update({
        "cc": parties(view.get("cc"), fence), "reply_to": [party(p, fence) for p in (view.get("reply_to") or [])[:5]],
        "message_id": view.get("message_id"), "in_reply_to": view.get("in_reply_to"),
        "auth": auth_summary(view.get("auth")), "signals": [_signal(s, fence) for s in signals],
        "review": review(view, signals),
        "attachments": [attachment(a, fence) for a in view.get("attachments") or []],
        "body": body(view, trim),
    })
    if view.get("content_deleted_at"):
        out["content_deleted_at"] = view["content_deleted_at"]
    return out


def body(view: dict[str, Any], trim: bool) -> BodyWindow | None:
    """The text window, or (for HTML-only mail) the sanitised HTML window; None once deleted."""
    if view.get("text") is not None:
        return BodyWindow.from_chunk(view["text"], trim)
    if view.get("html") is not None:
        return BodyWindow.from_chunk(view["html"], False, kind="html")
    return None


def auth_summary(auth: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict details an agent needs: results and the domains they are about."""
    auth = auth or {}
    out: dict[str, Any] = {}
    for key, fields in AUTH_KEYS.items():
        part = auth.get(key) or {}
        out[key] = {f: part.get(f) for f in fields if isinstance(part, dict)}
    out["dkim"] = [{"domain": s.get("domain"), "result": s.get("result")}
                   for s in (auth.get("dkim") or [])[:5] if isinstance(s, dict)]
    return out


def attachment(row: dict[str, Any], fence: Fence) -> dict[str, Any]:
    return {"id": row.get("id"), "filename": fence.wrap_optional(row.get("filename")),
            "content_type": row.get("content_type"), "size": row.get("size")}


def _signal(value: Any, fence: Fence) -> dict[str, Any]:
    # Reasons may quote a sender's display name or domain: fenced like the rest of the mail.
    if isinstance(value, dict):
        return {"code": value.get("code"), "reason": fence.wrap_optional(value.get("reason"))}
    return {"code": str(value), "reason": None}


def thread_summary(item: dict[str, Any], fence: Fence) -> dict[str, Any]:
    latest = item.get("latest") or {}
    return {
        "id": item.get("id"), "mailbox": item.get("mailbox"), "subject": subject(item.get("subject"), fence),
        "message_count": item.get("message_count"), "last_message_at": item.get("last_message_at"),
        "latest": {"id": latest.get("id"), "from": party(latest.get("from"), fence),
                   "snippet": fence.wrap_optional(latest.get("snippet"))},
    }


def thread_page(view: dict[str, Any], fence: Fence, trim: bool) -> dict[str, Any]:
    """read_thread: the thread header and one page of its messages with their first body windows."""
    messages = []
    for item in view.get("messages") or []:
        brief = message_brief(item, fence)
        brief.pop("snippet", None)
        brief["body"] = BodyWindow.from_chunk(item["text"], trim) if item.get("text") is not None else None
        messages.append(brief)
    header = view.get("thread") or {}
    return {
        "thread": {"id": header.get("id"), "mailbox": header.get("mailbox"),
                   "subject": subject(header.get("subject"), fence), "message_count": header.get("message_count"),
                   "last_message_at": header.get("last_message_at")},
        "messages": messages, "next_cursor": view.get("next_cursor"),
    }


def mailbox(item: dict[str, Any]) -> dict[str, Any]:
    # Mailbox names and display names are set by the account, not by senders: not fenced.
    return {"address": item.get("address"), "display_name": item.get("display_name"),
            "retention_days": item.get("retention_days"), "disabled": item.get("disabled")}


DRAFT_NEXT_STEP = ("Nothing was sent. Review the draft; it is sent only by send_draft (needs email:send and "
                   "passes the preflight), or by a human.")


def headers(values: list[str] | None, fence: Fence) -> list[str | None]:
    """Address header strings ('Name <addr>'): names may come from a sender, so fenced."""
    return [fence.wrap_optional(v) for v in (values or [])[:MAX_PARTIES]]


def draft(row: dict[str, Any], fence: Fence) -> dict[str, Any]:
    """A draft without echoing its body back (the caller wrote it; it only costs tokens)."""
    return {
        "id": row.get("id"), "mailbox": row.get("mailbox"), "status": row.get("status"),
        "to": headers(row.get("to"), fence), "cc": headers(row.get("cc"), fence),
        "bcc": headers(row.get("bcc"), fence), "subject": subject(row.get("subject"), fence),
        "text_chars": len(row.get("text") or ""), "thread_id": row.get("thread_id"),
        "reply_to_message": row.get("reply_to_message"), "in_reply_to": row.get("in_reply_to"),
        "attachments": [{"filename": fence.wrap_optional(a.get("filename")), "content_type": a.get("content_type"),
                         "size": a.get("size")} for a in (row.get("attachments") or [])[:MAX_PARTIES]],
        "created_at": row.get("created_at"),
    }


def sent(row: dict[str, Any], fence: Fence) -> dict[str, Any]:
    """A queued send: the outbound message and its per-recipient deliveries."""
    deliveries = row.get("deliveries") or []
    return {
        "message_id": row.get("id"), "status": row.get("status"), "mailbox": row.get("mailbox"),
        "thread_id": row.get("thread_id"), "draft_id": row.get("draft_id"),
        "subject": subject(row.get("subject"), fence), "to": headers(row.get("to"), fence),
        "cc": headers(row.get("cc"), fence), "bcc": headers(row.get("bcc"), fence),
        "deliveries": [{"recipient": d.get("recipient"), "status": d.get("status")} for d in deliveries[:50]],
        "queued_at": row.get("queued_at"),
    }
