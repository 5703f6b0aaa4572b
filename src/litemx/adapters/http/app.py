"""The FastAPI application: routes, the error table, body limits, and the planned routes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from litemx import __version__
from litemx.adapters.http import errors
from litemx.adapters.http.deps import CallerDep
from litemx.adapters.http.limits import BodyLimit
from litemx.adapters.http.routes import router
from litemx.adapters.http.routes_admin import router as admin_router
from litemx.adapters.http.routes_domains import router as domains_router
from litemx.adapters.http.routes_messages import router as messages_router
from litemx.adapters.http.routes_send import router as send_router
from litemx.adapters.http.routes_ses import router as ses_router
from litemx.adapters.mcp.http import mount as mount_mcp
from litemx.app import Services
from litemx.core.operations import OPERATIONS, Operation
from litemx.errors import NotImplementedYet

JSON_BODY_LIMIT = 1024 * 1024
TAGS = {
    "/api/messages": "Messages and threads", "/api/threads": "Messages and threads",
    "/api/drafts": "Drafts and sending", "/api/send": "Drafts and sending", "/api/inbound": "Inbound",
    "/mcp": "Tokens, audit, retention, MCP", "/api/retention": "Tokens, audit, retention, MCP",
}


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="LiteMX", version=__version__,
        description="Self-hostable email for role inboxes operated by AI agents. "
                    "Every error answers {\"error\": {\"code\", \"message\", \"details\"}}.",
    )
    app.state.services = services
    errors.install(app)
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(domains_router)
    app.include_router(messages_router)
    app.include_router(send_router)
    app.include_router(ses_router)
    for op in OPERATIONS.values():
        if not op.live and op.path is not None and op.method is not None:
            _add_planned(app, op)
    mount_mcp(app, services)
    app.router.lifespan_context = _freezing_startup_heap(app.router.lifespan_context)
    _describe_openapi_route(app)
    inbound = int(services.infra.settings.max_message_bytes * 1.5)
    # Drafts and sends carry base64 attachments: a message of max_message_bytes is about that
    # much base64 in JSON, plus bodies; the services then check the message size exactly.
    outbound = max(JSON_BODY_LIMIT, inbound)
    app.add_middleware(BodyLimit, default_limit=JSON_BODY_LIMIT,
                       overrides={"/api/inbound/simulate": inbound, "/api/inbound/ses": inbound,
                                  "/api/drafts": outbound, "/api/drafts/{id}": outbound, "/api/send": outbound})
    return app


_heap_frozen = False


def _freezing_startup_heap(previous: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Move what exists once the app has started (modules, services, the app, its routes: about
    a million objects) out of the cyclic garbage collector's reach, once per process.

    Under concurrent load every young collection promotes the objects of the requests in flight,
    so full collections come every second or two; each one scanned the whole startup heap, a
    ~100 ms pause of the event loop (the p99 of every route). With the startup heap frozen a
    full collection scans only what was allocated since, and takes about a millisecond.
    """
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        global _heap_frozen
        async with previous(app) as state:
            if not _heap_frozen:
                _heap_frozen = True
                gc.collect()
                gc.freeze()
            yield state

    return lifespan


def _add_planned(app: FastAPI, op: Operation) -> None:
    """A SPEC route whose capability lands with a later issue: listed, authenticated, 501."""
    def planned(caller: CallerDep) -> Any:
        raise NotImplementedYet(f"{op.method} {op.path} is not available in this version yet",
                                {"operation": op.name})

    def planned_public() -> Any:
        raise NotImplementedYet(f"{op.method} {op.path} is not available in this version yet",
                                {"operation": op.name})

    tag = next((t for prefix, t in TAGS.items() if op.path.startswith(prefix)), "Other")
    summary = "MCP endpoint (streamable HTTP, JSON-RPC)" if op.path == "/mcp" else op.name
    app.add_api_route(op.path, planned_public if op.public else planned, methods=[op.method], tags=[tag],
                      summary=summary, operation_id=f"{op.name}", status_code=200,
                      responses={501: {"description": "Not available in this version yet"}})


def _describe_openapi_route(app: FastAPI) -> None:
    """FastAPI serves /openapi.json but leaves it out of the document; SPEC lists it as a route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            doc["paths"]["/openapi.json"] = {"get": {
                "tags": ["System"], "summary": "This OpenAPI document", "operationId": "system.openapi",
                "responses": {"200": {"description": "The OpenAPI 3 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
