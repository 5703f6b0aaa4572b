"""Request-body size limit as pure ASGI middleware: refuse before reading a huge body."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException

Scope = dict[str, Any]


class BodyLimit:
    """`overrides` maps a path to its limit; a `{name}` segment matches any one path segment
    (e.g. `/api/drafts/{id}`)."""

    def __init__(self, app: Any, default_limit: int, overrides: dict[str, int]):
        self.app = app
        self.default_limit = default_limit
        self.overrides = {p: n for p, n in overrides.items() if "{" not in p}
        self.patterns = [(_segments(p), n) for p, n in overrides.items() if "{" in p]

    def _limit(self, path: str) -> int:
        if path in self.overrides:
            return self.overrides[path]
        return next((n for pattern, n in self.patterns if pattern.match(path)), self.default_limit)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _nul_field(scope)
        if field is not None:
            await _reply(send, 422, {"code": "invalid_request", "message": f"{field} contains a NUL character",
                                     "details": {"field": field}})
            return
        limit = self._limit(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # An HTTPException passes through FastAPI's body reader untouched (anything
                # else becomes a 400 parse error) and the error table renders it as 413.
                raise HTTPException(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, counted, send)


def _segments(path: str) -> re.Pattern[str]:
    return re.compile("/".join("[^/]+" if seg.startswith("{") else re.escape(seg) for seg in path.split("/")) + "$")


def _nul_field(scope: Scope) -> str | None:
    """The path or query parameter carrying a NUL, if any: no address, id or query may hold
    one, and PostgreSQL text refuses it."""
    if "\x00" in scope["path"]:
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "query"
    return None


async def _too_large(send: Any, limit: int) -> None:
    await _reply(send, 413, {"code": "payload_too_large", "message": f"request body over {limit} bytes",
                             "details": {"limit": limit}})


async def _reply(send: Any, status: int, error: dict[str, Any]) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
