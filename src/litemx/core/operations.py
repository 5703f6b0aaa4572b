"""The one vocabulary (ARCHITECTURE "Layers"): every operation's scope, audit action, route,
CLI command and MCP tool in one table. The parity test walks this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from litemx.core.scopes import Scope


@dataclass(frozen=True)
class Operation:
    name: str
    scope: Scope | None  # None: any valid token (or admin_only)
    action: str | None  # audit action; None only for unaudited probes (health)
    method: str | None  # None: no REST route (MCP-only)
    path: str | None
    cli: tuple[str, ...] = ()
    mcp_tool: str | None = None
    admin_only: bool = False
    public: bool = False  # no bearer token (health, openapi, SES webhook)
    live: bool = True  # False: route answers 501 until its issue lands
    mailbox_scoped: bool = False  # acts on one mailbox, checked against grants


S = Scope
_OPS: tuple[Operation, ...] = (
    Operation("system.health", None, None, "GET", "/api/health", public=True),
    Operation("system.bootstrap", None, "bootstrap.read", "GET", "/api/bootstrap", cli=("whoami",)),
    Operation("domains.list", S.DOMAINS_READ, "domain.list", "GET", "/api/domains", ("domains list",)),
    Operation("domains.create", S.DOMAINS_WRITE, "domain.create", "POST", "/api/domains", ("domains add",)),
    Operation("domains.status", S.DOMAINS_READ, "domain.status", "GET", "/api/domains/{domain}/status",
              ("domains status", "domains check"), live=False),
    Operation("domains.dns_plan", S.DOMAINS_READ, "domain.dns_plan", "GET", "/api/domains/{domain}/dns-plan",
              ("domains dns-plan",), live=False),
    Operation("domains.readiness", S.DOMAINS_WRITE, "domain.readiness", "PUT", "/api/domains/{domain}/readiness",
              ("domains readiness",), live=False),
    Operation("mailboxes.list", S.MAILBOXES_READ, "mailbox.list", "GET", "/api/mailboxes", ("mailboxes list",),
              "list_mailboxes"),
    Operation("mailboxes.create", S.MAILBOXES_WRITE, "mailbox.create", "POST", "/api/mailboxes",
              ("mailboxes create",), mailbox_scoped=True),
    Operation("mailboxes.show", S.MAILBOXES_READ, "mailbox.read", "GET", "/api/mailboxes/{mailbox}",
              ("mailboxes show",), mailbox_scoped=True),
    Operation("mailboxes.delete", S.MAILBOXES_WRITE, "mailbox.delete", "DELETE", "/api/mailboxes/{mailbox}",
              ("mailboxes delete",), mailbox_scoped=True),
    Operation("mailboxes.retention_get", S.MAILBOXES_READ, "retention.read", "GET",
              "/api/mailboxes/{mailbox}/retention", ("mailboxes retention get",), mailbox_scoped=True),
    Operation("mailboxes.retention_set", S.MAILBOXES_WRITE, "retention.update", "PUT",
              "/api/mailboxes/{mailbox}/retention", ("mailboxes retention set",), mailbox_scoped=True),
    Operation("aliases.list", S.MAILBOXES_READ, "alias.list", "GET", "/api/aliases", ("aliases list",)),
    Operation("aliases.create", S.MAILBOXES_WRITE, "alias.create", "POST", "/api/aliases", ("aliases add",)),
    Operation("aliases.delete", S.MAILBOXES_WRITE, "alias.delete", "DELETE", "/api/aliases/{alias}",
              ("aliases delete",)),
    Operation("catchalls.get", S.MAILBOXES_READ, "catchall.read", "GET", "/api/catchalls/{domain}", ("catchall get",)),
    Operation("catchalls.set", S.MAILBOXES_WRITE, "catchall.update", "PUT", "/api/catchalls/{domain}",
              ("catchall set",)),
    Operation("messages.list", S.MESSAGES_READ, "message.list", "GET", "/api/messages", ("messages list",),
              live=False),
    Operation("messages.search", S.MESSAGES_SEARCH, "message.search", "GET", "/api/messages/search",
              ("messages search",), "search_messages", live=False),
    Operation("messages.read", S.MESSAGES_READ, "message.read", "GET", "/api/messages/{id}", ("messages read",),
              "read_message", live=False),
    Operation("messages.reply", S.DRAFTS_WRITE, "message.reply", "POST", "/api/messages/{id}/reply",
              ("messages reply",), live=False),
    Operation("threads.list", S.MESSAGES_READ, "thread.list", "GET", "/api/threads", ("threads list",),
              "list_threads", live=False),
    Operation("threads.read", S.MESSAGES_READ, "thread.read", "GET", "/api/threads/{id}", ("threads read",),
              "read_thread", live=False),
    Operation("threads.reply", S.DRAFTS_WRITE, "thread.reply", "POST", "/api/threads/{id}/reply",
              ("threads reply",), "reply_to_thread", live=False),
    Operation("threads.draft", S.DRAFTS_WRITE, "draft.create", "POST", "/api/threads/{id}/drafts", live=False),
    Operation("drafts.list", S.DRAFTS_WRITE, "draft.list", "GET", "/api/drafts", ("drafts list",), live=False),
    Operation("drafts.create", S.DRAFTS_WRITE, "draft.create", "POST", "/api/drafts", ("drafts create",),
              "create_draft", live=False),
    Operation("drafts.show", S.DRAFTS_WRITE, "draft.read", "GET", "/api/drafts/{id}", ("drafts show",), live=False),
    Operation("drafts.send", S.EMAIL_SEND, "send.accepted", "POST", "/api/drafts/{id}/send", ("drafts send",),
              "send_draft", live=False),
    Operation("send.direct", S.EMAIL_SEND, "send.accepted", "POST", "/api/send", ("send",), live=False),
    Operation("tokens.list", S.TOKENS_WRITE, "token.list", "GET", "/api/tokens", ("tokens list",)),
    Operation("tokens.create", S.TOKENS_WRITE, "token.create", "POST", "/api/tokens", ("tokens create",)),
    Operation("tokens.revoke", S.TOKENS_WRITE, "token.revoke", "DELETE", "/api/tokens/{id}", ("tokens revoke",)),
    Operation("audit.list", S.AUDIT_READ, "audit.list", "GET", "/api/audit", ("audit list",)),
    Operation("retention.run", None, "retention.cleanup", "POST", "/api/retention/run", ("retention run",),
              admin_only=True, live=False),
    Operation("mcp.get", None, "mcp.request", "GET", "/mcp", live=False),
    Operation("mcp.post", None, "mcp.request", "POST", "/mcp", live=False),
    # An MCP-only operation: SPEC names no route or CLI command for it.
    Operation("agent.instructions", None, "agent.instructions", None, None, mcp_tool="get_agent_instructions",
              live=False),
    Operation("inbound.simulate", None, "inbound.delivered", "POST", "/api/inbound/simulate", admin_only=True,
              live=False),
    Operation("inbound.ses", None, "inbound.delivered", "POST", "/api/inbound/ses", public=True, live=False),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPS}


def operation(name: str) -> Operation:
    """Raises: KeyError for a name not in the table (a programming error)."""
    return OPERATIONS[name]
