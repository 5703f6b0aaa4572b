"""`litemx mcp` over stdio (SPEC §7, §12): the SDK's stdio client launches the real command on
the test's database, blob store and DNS server; same tools, same scopes, same audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from litemx.storage.schema import messages
from tests.support.api import audit_since, last_audit_id
from tests.support.inbox import Mail, send
from tests.support.mcp_client import (
    SUPPORT,
    TOOLS,
    TRIAGE_SCOPES,
    build_world,
    call,
    refused,
    run,
    stdio_parameters,
    stdio_session,
)


def test_the_stdio_server_lists_the_nine_tools_and_applies_the_tokens_scopes(services, tenant):
    world = build_world(services, tenant.token)
    message_id = send(services, Mail())
    token = world.token(TRIAGE_SCOPES, [SUPPORT], name="desktop-agent")
    since = last_audit_id(services)

    async def scenario() -> dict[str, Any]:
        async with stdio_session(services, token) as s:
            tools = {t.name for t in (await s.list_tools()).tools}
            hits = await call(s, "search_messages", query="parcel")
            message = await call(s, "read_message", message_id=message_id)
            draft = await call(s, "reply_to_thread", thread_id=hits["results"][0]["thread_id"], text="Tomorrow.")
            return {"tools": tools, "hits": hits, "message": message, "draft": draft,
                    "send": await refused(s, "send_draft", draft_id=draft["draft"]["id"]),
                    "mailboxes": await refused(s, "list_mailboxes")}

    out = run(scenario)
    assert out["tools"] == TOOLS
    assert [h["id"] for h in out["hits"]["results"]] == [message_id]
    assert "where is my parcel?" in out["message"]["message"]["body"]["content"]
    assert out["draft"]["draft"]["status"] == "draft"
    assert out["send"]["code"] == "send_blocked" and "email:send" in out["send"]["message"]
    assert out["mailboxes"]["details"]["missing_scope"] == "mailboxes:read"
    events = audit_since(services, since)
    assert {(e["interface"], e["actor_name"]) for e in events} == {("mcp", "desktop-agent")}
    assert [e["action"] for e in events if not e["action"].startswith("mcp.")] == [
        "message.search", "message.read", "thread.reply", "send.blocked", "mailbox.list"]
    with services.infra.db.read() as conn:
        assert conn.execute(select(messages.c.id).where(messages.c.direction == "outbound")).all() == []


def test_a_bad_token_stops_the_stdio_server_with_a_one_line_error(services):
    # In process: the command refuses before it ever reads stdin or writes the protocol.
    env = stdio_parameters(services, "lmx_not_a_real_token_at_all_000000").env
    done = CliRunner().invoke(app, ["mcp"], env=env)
    assert done.exit_code == 3 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: unauthorized: the token is not valid (set LITEMX_TOKEN)"]
