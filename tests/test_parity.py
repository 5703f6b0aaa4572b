"""One vocabulary (ARCHITECTURE): each operation has its route, CLI command, scope rule and
audit decision — and nothing exists outside the table."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer.main

from litemx.adapters.cli.main import app as cli_app
from litemx.adapters.http.app import create_app
from litemx.app import Services
from litemx.core.operations import OPERATIONS
from litemx.core.scopes import Scope

SPEC_ROUTES = {
    ("GET", "/openapi.json"), ("GET", "/api/health"), ("GET", "/api/bootstrap"),
    ("GET", "/api/domains"), ("POST", "/api/domains"), ("GET", "/api/domains/{domain}/status"),
    ("GET", "/api/domains/{domain}/dns-plan"), ("PUT", "/api/domains/{domain}/readiness"),
    ("GET", "/api/mailboxes"), ("POST", "/api/mailboxes"), ("GET", "/api/mailboxes/{mailbox}"),
    ("DELETE", "/api/mailboxes/{mailbox}"), ("GET", "/api/mailboxes/{mailbox}/retention"),
    ("PUT", "/api/mailboxes/{mailbox}/retention"), ("GET", "/api/aliases"), ("POST", "/api/aliases"),
    ("DELETE", "/api/aliases/{alias}"), ("GET", "/api/catchalls/{domain}"), ("PUT", "/api/catchalls/{domain}"),
    ("GET", "/api/messages"), ("GET", "/api/messages/search"), ("GET", "/api/messages/{id}"),
    ("POST", "/api/messages/{id}/reply"), ("GET", "/api/threads"), ("GET", "/api/threads/{id}"),
    ("POST", "/api/threads/{id}/reply"), ("POST", "/api/threads/{id}/drafts"), ("GET", "/api/drafts"),
    ("POST", "/api/drafts"), ("GET", "/api/drafts/{id}"), ("POST", "/api/drafts/{id}/send"), ("POST", "/api/send"),
    ("GET", "/api/tokens"), ("POST", "/api/tokens"), ("DELETE", "/api/tokens/{id}"), ("GET", "/api/audit"),
    ("POST", "/api/retention/run"), ("GET", "/mcp"), ("POST", "/mcp"), ("POST", "/api/inbound/simulate"),
    ("POST", "/api/inbound/ses"),
}
SPEC_CLI = {
    "domains add", "domains list", "domains status", "domains dns-plan", "domains check", "mailboxes create",
    "mailboxes list", "mailboxes show", "mailboxes delete", "mailboxes retention get", "mailboxes retention set",
    "aliases add", "aliases list", "aliases delete", "catchall get", "catchall set", "messages list",
    "messages search", "messages read", "messages reply", "threads list", "threads read", "threads reply",
    "drafts create", "drafts list", "drafts show", "drafts send", "send", "tokens create", "tokens list",
    "tokens revoke", "audit list", "retention run", "serve", "accounts create", "mcp",
}


def _cli_commands() -> set[str]:
    root = typer.main.get_command(cli_app)
    found: set[str] = set()

    # Typer vendors its own click, so duck-type groups instead of isinstance(click.Group).
    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{prefix} {name}".strip())
        else:
            found.add(prefix)

    walk(root, "")
    return found


def _openapi_routes(services: Services) -> set[tuple[str, str]]:
    doc = create_app(services).openapi()
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item}


def test_the_spec_routes_all_appear_in_the_openapi_document(services):
    assert SPEC_ROUTES <= _openapi_routes(services)
    assert len(SPEC_ROUTES) == 41


def test_every_operation_has_its_route_in_openapi(services):
    routes = _openapi_routes(services)
    missing = [op.name for op in OPERATIONS.values() if op.path and (op.method, op.path) not in routes]
    assert missing == []


def test_the_spec_cli_commands_all_exist():
    assert SPEC_CLI <= _cli_commands()


def test_every_operation_names_cli_commands_that_exist():
    commands = _cli_commands()
    missing = [(op.name, c) for op in OPERATIONS.values() for c in op.cli if c not in commands]
    assert missing == []


@pytest.mark.parametrize("op", OPERATIONS.values(), ids=lambda op: op.name)
def test_every_operation_has_a_scope_rule_and_an_audit_decision(op):
    assert op.scope is None or op.scope in Scope
    # No scope means: a public route (health, SES webhook), admin only, or any valid token (who-am-I, MCP).
    if op.scope is None:
        assert op.public or op.admin_only or op.name in {"system.bootstrap", "mcp.get", "mcp.post",
                                                          "agent.instructions"}
    assert op.action is not None or op.name == "system.health"
    assert op.action is None or "." in op.action


def _service_methods(services: Services) -> dict[str, object]:
    found: dict[str, object] = {}
    for name in ("auth", "directory", "routing", "tokens", "system", "domains_dns", "messages", "inbound",
                 "retention", "abuse", "drafts", "sending", "bounces"):
        for _, method in inspect.getmembers(getattr(services, name), inspect.ismethod):
            op = getattr(method, "operation", None)
            if op is not None:
                found[op.name] = method
    return found


def test_every_live_authenticated_operation_is_one_service_method(services):
    methods = _service_methods(services)
    live = {op.name for op in OPERATIONS.values() if op.live and not op.public}
    assert live == set(methods)
