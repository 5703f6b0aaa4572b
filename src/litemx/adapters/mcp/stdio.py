"""`litemx mcp`: the same nine tools over stdio for a local MCP client (SPEC §7, §12).

Server side, like `serve` and `accounts create`: it opens the data dir / database from the
same settings and acts as the token in LITEMX_TOKEN. The token is checked once at start (a
bad one stops the process with a one-line error and the CLI's exit status) and again on every
call, so revoking or disabling it takes effect immediately (SPEC §11). stdout carries only
the protocol; anything human goes to stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from litemx import __version__
from litemx.adapters.cli.output import EXIT_CODES
from litemx.app import Services, build_services
from litemx.errors import LitemxError
from litemx.service.principal import Caller
from litemx.settings import Settings

INTERFACE = "mcp"
USER_AGENT = f"litemx-mcp-stdio/{__version__}"


class TokenCaller:
    """The stdio session's Caller: LITEMX_TOKEN, authenticated on every call."""

    def __init__(self, services: Services, secret: str | None):
        self.services = services
        self.secret = secret

    def __call__(self, _request: Any = None) -> Caller:
        """Raises: Unauthorized / Forbidden once the token is revoked, expired or disabled."""
        return self.services.auth.authenticate(self.secret, INTERFACE, None, USER_AGENT)


def serve_stdio(settings: Settings, secret: str | None) -> int:
    """Serve until the client closes stdin; returns the process exit status."""
    services = build_services(settings)
    try:
        callers = TokenCaller(services, secret)
        try:
            callers()
        except LitemxError as error:
            print(f"error: {error.code}: {error.message} (set LITEMX_TOKEN)", file=sys.stderr)
            return EXIT_CODES.get(error.code, 1)
        from litemx.adapters.mcp.server import build_server  # the SDK loads only once the token passed

        anyio.run(build_server(services, callers).run_stdio_async)
        return 0
    finally:
        services.close()
