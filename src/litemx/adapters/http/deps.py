"""Request -> Caller: the bearer token and the facts the audit log wants."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from litemx.app import Services
from litemx.service.principal import Caller

CLI_AGENT = "litemx-cli/"
bearer = HTTPBearer(auto_error=False, description="A LiteMX token: `Authorization: Bearer lmx_...`")


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def interface_of(request: Request) -> str:
    # The CLI is a REST client; it names itself so the audit log can say `cli` (SPEC §9).
    agent = request.headers.get("user-agent", "")
    return "cli" if agent.startswith(CLI_AGENT) else "api"


def caller(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    secret = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    client = request.client.host if request.client else None
    return services(request).auth.authenticate(secret, interface_of(request), client,
                                               request.headers.get("user-agent"))


CallerDep = Annotated[Caller, Depends(caller)]
ServicesDep = Annotated[Services, Depends(services)]
