"""The one error type every layer raises; codes are SPEC.md §3's public API.

Transports map `code` to their own vocabulary (HTTP status, SMTP reply, MCP error result,
CLI exit status) through one table each; nothing else crosses the boundary.
"""

from __future__ import annotations

from typing import Any


class LitemxError(Exception):
    """An expected failure with a stable code, a human sentence and structured details."""

    code: str = "invalid_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        # Facts for the audit row the service layer writes when this error ends an operation
        # (resource_type, resource_id, mailbox, outcome); never sent to the client.
        self.audit: dict[str, Any] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(LitemxError):
    code = "unauthorized"


class Forbidden(LitemxError):
    code = "forbidden"


class NotFound(LitemxError):
    code = "not_found"


class Conflict(LitemxError):
    code = "conflict"


class InvalidRequest(LitemxError):
    code = "invalid_request"


class PayloadTooLarge(LitemxError):
    code = "payload_too_large"


class RateLimited(LitemxError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, {"retry_after": retry_after, **(details or {})})
        self.retry_after = retry_after


class SendBlocked(LitemxError):
    code = "send_blocked"

    def __init__(self, reasons: list[str], details: dict[str, Any] | None = None):
        super().__init__("send blocked: " + ", ".join(reasons), {"reasons": reasons, **(details or {})})
        self.reasons = reasons


class Unavailable(LitemxError):
    code = "unavailable"


class NotImplementedYet(LitemxError):
    """A SPEC route whose capability has not landed yet (answers 501)."""

    code = "not_implemented"


def invalid_field(field: str, message: str) -> InvalidRequest:
    """An `invalid_request` naming the offending field, as SPEC §3 requires."""
    return InvalidRequest(message, {"field": field})
