"""MCP request middleware: every JSON-RPC request leaves an audit event (SPEC §9), and a tool
call the SDK refuses before the tool runs gets a curated error instead of the SDK's text.

A tool that ran has written its own event through its service method; this middleware records
the rest (`initialize`, `tools/list`, unknown tools, invalid arguments) through
`SystemService.mcp_request`, with the same Caller as the tools.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, CallToolResult

from litemx.adapters.mcp.arguments import problems
from litemx.adapters.mcp.errors import invalid_arguments_result, unknown_tool_result
from litemx.errors import LitemxError
from litemx.service.principal import Caller

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from litemx.app import Services

# The request object the transport attached (a Starlette Request over HTTP, None on stdio) -> Caller.
CallerSource = Callable[[Any], Caller]
# Set per tools/call: a mutable flag, so a tool body running in a child task can still raise it.
_TOOL_RAN: ContextVar[list[bool] | None] = ContextVar("litemx_mcp_tool_ran", default=None)


def mark_tool_ran() -> None:
    """Called by the tool guard: this tools/call reached a tool, whose service method audits it."""
    flag = _TOOL_RAN.get()
    if flag is not None:
        flag[0] = True


class AuditMiddleware:
    """`ServerMiddleware`: audit what no tool recorded; curate the SDK's pre-tool refusals."""

    def __init__(self, services: Services, caller_of: CallerSource, server: MCPServer[Any]):
        self.services = services
        self.caller_of = caller_of
        self.server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:
            return await call_next(ctx)  # a notification: nothing answered, nothing to record
        caller = self._caller(ctx)
        if ctx.method != "tools/call":
            return await self._recorded(ctx, call_next, caller)
        ran = [False]
        reset = _TOOL_RAN.set(ran)
        try:
            result = await call_next(ctx)
        finally:
            _TOOL_RAN.reset(reset)
        if ran[0] or not isinstance(result, dict):
            return result  # the tool ran and its service method wrote the audit event
        return await self._curated(ctx, result, caller)

    def _caller(self, ctx: ServerRequestContext[Any, Any]) -> Caller:
        """Raises: MCPError when the token is refused (stdio re-checks it on every request;
        the refusal itself was audited by the auth service)."""
        try:
            return self.caller_of(ctx.request)
        except LitemxError as error:
            raise MCPError(code=INVALID_REQUEST, message=f"{error.code}: {error.message}") from None

    async def _recorded(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext,
                        caller: Caller) -> HandlerResult:
        try:
            result = await call_next(ctx)
        except MCPError as error:
            await self._audit(caller, ctx.method, None, f"json-rpc error {error.code}")
            raise
        await self._audit(caller, ctx.method, None, None)
        return result

    async def _curated(self, ctx: ServerRequestContext[Any, Any], result: dict[str, Any],
                       caller: Caller) -> dict[str, Any]:
        """Replace the SDK's refusal text (pydantic's message, echoing input) with our own words."""
        params = ctx.params or {}
        name = str(params.get("name") or "")[:100]
        tools = {tool.name: tool for tool in await self.server.list_tools()}
        curated: CallToolResult
        if name not in tools:
            curated, problem = unknown_tool_result(name, sorted(tools)), "unknown tool"
        else:
            found = problems(tools[name].input_schema, params.get("arguments") or {})
            curated, problem = invalid_arguments_result(name, found), "invalid arguments"
        await self._audit(caller, "tools/call", name or None, problem)
        # Keep the envelope keys the SDK set (resultType, _meta); replace the content.
        return {**result, **curated.model_dump(by_alias=True, mode="json", exclude_none=True)}

    async def _audit(self, caller: Caller, method: str, tool: str | None, problem: str | None) -> None:
        record = functools.partial(self.services.system.mcp_request, caller, method, tool, problem)
        await self.services.infra.audit_writer.run(record)
