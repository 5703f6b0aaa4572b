"""Request -> Caller: the bearer token and the facts the audit log wants; and `answer`, which
serves a short read-only service call without a thread hop.

Why: a GET of one message costs well under a millisecond of work, and a sync FastAPI
dependency or endpoint costs a thread hop each (a queue, a wake-up and a GIL handoff, paid
again under load by every request). So `caller` is async, and the read routes are async and
call their service method through `answer`; both go through `AuditWriter.run`, which runs the
work on the loop with SQLite (in one worker thread with PostgreSQL, whose queries wait on the
network) and commits the audit events it wrote, without blocking the loop, before the
response is sent. The token is still looked up in the database on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic_core import to_json

from litemx.app import Services
from litemx.service.principal import Caller

CLI_AGENT = "litemx-cli/"
bearer = HTTPBearer(auto_error=False, description="A LiteMX token: `Authorization: Bearer lmx_...`")


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def _services(request: Request) -> Services:
    # async: a sync dependency would run in the threadpool
    return services(request)


def interface_of(request: Request) -> str:
    # The CLI is a REST client; it names itself so the audit log can say `cli` (SPEC §9).
    agent = request.headers.get("user-agent", "")
    return "cli" if agent.startswith(CLI_AGENT) else "api"


async def answer(request: Request, call: Callable[[Services], dict[str, Any]]) -> Response:
    """`call(services)`'s dict as the JSON response. The route keeps `response_model` for the
    OpenAPI document; returning a Response skips FastAPI's validation pass over a dict the
    service built from plain JSON types. The bytes are those FastAPI renders for a
    `dict[str, Any]` response model (pydantic-core's JSON encoder). Taking the services from
    the request rather than a dependency saves a dependency resolution per request."""
    svc = services(request)
    return Response(to_json(await svc.infra.audit_writer.run(lambda: call(svc))), media_type="application/json")


async def caller(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    secret = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    client = request.client.host if request.client else None
    svc = services(request)
    return await svc.infra.audit_writer.run(lambda: svc.auth.authenticate(secret, interface_of(request), client,
                                                                          request.headers.get("user-agent")))


CallerDep = Annotated[Caller, Depends(caller)]
ServicesDep = Annotated[Services, Depends(_services)]
