"""The MCP error table: a LitemxError becomes a curated tool error result (isError), never a
protocol error and never exception text. One function per code family, one table."""

from __future__ import annotations

from collections.abc import Callable

from mcp_types import CallToolResult

from litemx.adapters.mcp.sizing import as_result
from litemx.errors import LitemxError

# SPEC §6 preflight reasons in words an agent can relay to a human.
SEND_REASONS: dict[str, str] = {
    "scope_missing": "this token lacks the email:send scope",
    "mailbox_not_granted": "this token is not granted the sending mailbox",
    "domain_not_ready": "the sending domain is not ready for outbound mail (DNS or DKIM not verified)",
    "provider_not_approved": "the outbound provider has not approved production sending for this domain",
    "recipient_cap": "too many recipients for one message",
    "mailbox_daily_limit": "the mailbox's daily send limit is reached",
    "account_daily_limit": "the account's daily send limit is reached",
    "account_monthly_limit": "the account's monthly send limit is reached",
    "recipient_suppressed": "a recipient is suppressed after a bounce or complaint",
    "disabled": "the domain, mailbox, token or account is disabled",
    "invalid_headers": "the draft's addresses or headers are invalid",
}
SCOPE_HINTS: dict[str, str] = {
    "email:send": "Sending needs a token with email:send: leave the draft for a human to review and send.",
    "admin": "Only the account's admin token may do this.",
}
# Details a model may see: the public REST details, minus anything bulky.
SAFE_DETAILS = ("missing_scope", "reasons", "field", "resource_type", "retry_after", "allow", "limit")


def error_result(error: LitemxError, tool: str) -> CallToolResult:
    """The curated isError result for an expected failure."""
    message = _DESCRIBE.get(error.code, _plain)(error, tool)
    details = {k: v for k, v in error.details.items() if k in SAFE_DETAILS}
    return as_result({"error": {"code": error.code, "message": message, "details": details}}, is_error=True)


def internal_error_result(tool: str) -> CallToolResult:
    """What the model sees when a tool fails unexpectedly (the trace stays in the server log)."""
    return as_result({"error": {"code": "internal", "message": f"{tool} failed because of an internal error; "
                                "nothing was changed by this call. Try again later or tell a human.",
                                "details": {}}}, is_error=True)


def invalid_arguments_result(tool: str, problems: list[str]) -> CallToolResult:
    """Arguments that do not match the tool's input schema, by field."""
    message = f"{tool} was called with invalid arguments: " + "; ".join(problems[:10])
    return as_result({"error": {"code": "invalid_request", "message": message,
                                "details": {"problems": problems[:10]}}}, is_error=True)


def unknown_tool_result(tool: str, known: list[str]) -> CallToolResult:
    message = f"there is no tool named {tool[:100]!r}; the tools are: {', '.join(known)}"
    return as_result({"error": {"code": "not_found", "message": message, "details": {"tools": known}}},
                     is_error=True)


def _forbidden(error: LitemxError, tool: str) -> str:
    scope = error.details.get("missing_scope")
    if scope:
        hint = SCOPE_HINTS.get(str(scope), f"Ask a human for a token with the {scope} scope if this is needed.")
        return f"{tool} was refused: this token lacks the {scope} scope. {hint}"
    return f"{tool} was refused: {error.message}."


def _send_blocked(error: LitemxError, tool: str) -> str:
    reasons = [str(r) for r in error.details.get("reasons") or []]
    words = "; ".join(f"{r} ({SEND_REASONS.get(r, 'see details')})" for r in reasons)
    hint = SCOPE_HINTS["email:send"] if "scope_missing" in reasons else \
        "Do not retry or work around these reasons; report them to a human."
    return f"{tool} was blocked by the send preflight; nothing was sent. Reasons: {words}. {hint}"


def _not_found(error: LitemxError, tool: str) -> str:
    return f"{error.message} (it does not exist or is outside this token's mailboxes)."


def _invalid(error: LitemxError, tool: str) -> str:
    field = error.details.get("field")
    return f"invalid argument {field!r}: {error.message}" if field else f"invalid request: {error.message}"


def _rate_limited(error: LitemxError, tool: str) -> str:
    return f"{tool} is rate limited: {error.message}; retry after {error.details.get('retry_after', '?')} seconds."


def _unavailable(error: LitemxError, tool: str) -> str:
    return f"LiteMX is temporarily unavailable ({error.message}); try again shortly."


def _plain(error: LitemxError, tool: str) -> str:
    return error.message


_DESCRIBE: dict[str, Callable[[LitemxError, str], str]] = {
    "forbidden": _forbidden, "send_blocked": _send_blocked, "not_found": _not_found,
    "invalid_request": _invalid, "rate_limited": _rate_limited, "unavailable": _unavailable,
}

