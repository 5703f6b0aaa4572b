"""`/mcp` on the FastAPI app: stateless streamable HTTP with JSON responses (SPEC §7).

Every request is authenticated here, before any MCP processing: a missing or bad bearer token
answers 401 with the SPEC §3 envelope. The Caller rides in the ASGI scope to the tools, which
read it from the request the SDK attaches to each message. POST carries JSON-RPC; GET (and
DELETE) answer 405, which the protocol allows a server that keeps no event stream or session.

Decisions: DNS-rebinding protection (Host/Origin allow-lists) is off because every request
must carry a bearer token a rebinding page cannot have, and a reverse proxy may present any
Host. The SDK's session manager runs once per app instance, inside the app's lifespan.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from litemx.adapters.http.errors import envelope, error_headers
from litemx.adapters.mcp.server import build_server
from litemx.app import Services
from litemx.errors import LitemxError, Unavailable
from litemx.service.principal import Caller

PATH = "/mcp"
CALLER_KEY = "litemx.caller"
SUMMARY = "MCP endpoint (streamable HTTP, JSON-RPC)"
TAG = "Tokens, audit, retention, MCP"
INTERFACE = "mcp"


def caller_of_request(request: Any) -> Caller:
    """The Caller this endpoint authenticated for the HTTP request a message came in.

    Raises: RuntimeError when a message arrives without one (a wiring bug, never client input).
    """
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if not isinstance(caller, Caller):
        raise RuntimeError("MCP message without an authenticated caller")
    return caller


class McpEndpoint:
    """The ASGI app behind `/mcp`: authenticate, then the SDK's stateless transport."""

    def __init__(self, services: Services):
        self.services = services
        self.server: MCPServer[Any] = build_server(services, caller_of_request)
        # Builds the session manager (server.session_manager); its own Starlette app is not used.
        self.server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.running = False

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """The session manager's lifetime (once per instance; the app's lifespan enters it)."""
        async with self.server.session_manager.run():
            self.running = True
            try:
                yield
            finally:
                self.running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            # Authentication is short: no thread hop on SQLite (see AuditWriter.run).
            caller = await self.services.infra.audit_writer.run(functools.partial(self._admit, request))
        except LitemxError as error:
            await _refusal(error)(scope, receive, send)
            return
        await self.server.session_manager.handle_request({**scope, CALLER_KEY: caller}, receive, send)

    def _admit(self, request: Request) -> Caller:
        """Authenticate; only POST goes on to MCP.

        Raises: Unauthorized/Forbidden (token), LitemxError method_not_allowed (GET, DELETE),
        Unavailable (outside the app's lifespan).
        """
        caller = self.services.auth.authenticate(_bearer(request), INTERFACE,
                                                 request.client.host if request.client else None,
                                                 request.headers.get("user-agent"))
        if request.method != "POST":
            self.services.system.mcp_stream(caller)
        if not self.running:
            raise Unavailable("the MCP endpoint is not running (the server is starting or stopping)")
        return caller


def mount(app: FastAPI, services: Services) -> McpEndpoint:
    """Route `/mcp` to a fresh endpoint, run it in the app's lifespan, describe it in OpenAPI."""
    endpoint = McpEndpoint(services)
    # A raw ASGI endpoint (not a request handler): the SDK writes the response itself. First in
    # the table: no other route matches /mcp, and an MCP call then skips matching all the others.
    app.router.routes.insert(0, Route(PATH, endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False))
    app.router.lifespan_context = _with_endpoint(app.router.lifespan_context, endpoint)
    app.openapi = _describing(app.openapi)  # type: ignore[method-assign]
    return endpoint


def _with_endpoint(previous: Callable[[Any], Any], endpoint: McpEndpoint) -> Callable[[Any], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with previous(app) as state, endpoint.run():
            yield state

    return lifespan


def _describing(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """OpenAPI with `/mcp` listed (SPEC §3), though the SDK, not FastAPI, serves it."""
    def openapi() -> dict[str, Any]:
        doc = build()
        schemes = doc.get("components", {}).get("securitySchemes", {})
        security: list[dict[str, list[str]]] = [{str(name): []} for name in list(schemes)[:1]]
        doc["paths"][PATH] = {method: _operation(method, security) for method in ("get", "post")}
        return doc

    return openapi


def _operation(method: str, security: list[dict[str, list[str]]]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "tags": [TAG], "summary": SUMMARY, "operationId": f"mcp.{method}", "security": security,
        "description": ("Model Context Protocol over streamable HTTP, stateless, JSON responses. POST one "
                        "JSON-RPC message with Authorization: Bearer and Accept: application/json, "
                        "text/event-stream. GET answers 405: there is no server-initiated stream."),
        "responses": {
            "200": {"description": "The JSON-RPC response",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "401": {"description": "Missing or invalid bearer token (error envelope)"},
        },
    }
    if method == "post":
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "A JSON-RPC 2.0 request or notification"}}}}
        described["responses"]["202"] = {"description": "Accepted (a notification)"}
    else:
        described["responses"]["405"] = {"description": "No event stream: use POST"}
    return described


def _bearer(request: Request) -> str | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


def _refusal(error: LitemxError) -> Any:
    headers = error_headers(error)
    if error.code == "method_not_allowed":
        headers["Allow"] = "POST"
    return envelope(error.code, error.message, error.details, headers)
