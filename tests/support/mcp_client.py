"""The official MCP client against LiteMX, over real HTTP or a real `litemx mcp` subprocess,
plus the account every MCP test starts from."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from litemx.app import Services
from litemx.service.principal import Caller

TOOLS = {"list_mailboxes", "search_messages", "list_threads", "read_thread", "read_message", "create_draft",
         "send_draft", "reply_to_thread", "get_agent_instructions"}
TRIAGE_SCOPES = ["messages:read", "messages:search", "drafts:write"]
DOMAIN = "acme.example"
SUPPORT = f"support@{DOMAIN}"
BILLING = f"billing@{DOMAIN}"


@dataclass
class World:
    """One account with acme.example, support@ and billing@, and a way to mint scoped tokens."""

    services: Services
    admin: Caller

    def token(self, scopes: list[str], mailboxes: list[str], name: str = "bot") -> str:
        return str(self.services.tokens.create_token(self.admin, name, scopes, mailboxes)["token"])


def build_world(services: Services, founder_token: str) -> World:
    admin = services.auth.authenticate(founder_token, "api", None, None)
    services.directory.create_domain(admin, DOMAIN)
    for address in (SUPPORT, BILLING):
        services.directory.create_mailbox(admin, address)
    return World(services, admin)


@asynccontextmanager
async def http_session(base_url: str, token: str) -> AsyncIterator[ClientSession]:
    """An initialized ClientSession over streamable HTTP with the bearer header."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            streamable_http_client(f"{base_url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def stdio_parameters(services: Services, token: str) -> StdioServerParameters:
    """`python -m litemx.adapters.cli mcp` on the test's database, blobs and DNS server."""
    settings = services.infra.settings
    env = {"LITEMX_TOKEN": token, "LITEMX_DATA_DIR": str(settings.data_dir),
           "LITEMX_DATABASE_URL": settings.resolved_database_url,
           "LITEMX_DNS_SERVERS": ",".join(settings.dns_servers), "LITEMX_LOG_LEVEL": "WARNING"}
    return StdioServerParameters(command=sys.executable, args=["-m", "litemx.adapters.cli", "mcp"], env=env)


@asynccontextmanager
async def stdio_session(services: Services, token: str) -> AsyncIterator[ClientSession]:
    async with stdio_client(stdio_parameters(services, token)) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Run an async scenario from a sync test, bounded."""
    async def bounded() -> Any:
        with anyio.fail_after(timeout):
            return await scenario()

    return anyio.run(bounded)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A successful tool call's structured content (fails the test on an error result)."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool error result's `error` object (fails the test when the call succeeded)."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, (tool, result.content)
    assert isinstance(result.structured_content, dict)
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in text and "Error executing tool" not in text
    return result.structured_content["error"]  # type: ignore[no-any-return]


def wire_bytes(result: CallToolResult) -> int:
    """The result as it travels (UTF-8 JSON, nulls left out)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())
