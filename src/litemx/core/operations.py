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
    # The scope is checked by the send preflight, not the scope gate: a token without it is
    # answered `send_blocked` / `scope_missing` with every other failing reason (SPEC §6).
    preflight: bool = False


S = Scope
_OPS: tuple[Operation, ...] = (
    Operation("system.health", None, None, "GET", "/api/health", public=True),
    Operation("system.bootstrap", None, "bootstrap.read", "GET", "/api/bootstrap", cli=("whoami",)),
    Operation("domains.list", S.DOMAINS_READ, "domain.list", "GET", "/api/domains", ("domains list",)),
    Operation("domains.create", S.DOMAINS_WRITE, "domain.create", "POST", "/api/domains", ("domains add",)),
    Operation("domains.status", S.DOMAINS_READ, "domain.status", "GET", "/api/domains/{domain}/status",
              ("domains status", "domains check")),
    Operation("domains.dns_plan", S.DOMAINS_READ, "domain.dns_plan", "GET", "/api/domains/{domain}/dns-plan",
              ("domains dns-plan",)),
    # provider_approved is the operator's word that the outbound provider granted production
    # sending: only the founder admin token may give it (docs/architecture-notes.md).
    Operation("domains.readiness", None, "domain.readiness", "PUT", "/api/domains/{domain}/readiness",
              ("domains readiness",), admin_only=True),
    Operation("domains.rotate_dkim", S.DOMAINS_WRITE, "domain.dkim_rotate", "POST",
              "/api/domains/{domain}/dkim/rotate", ("domains rotate-dkim",)),
    # The DMARC aggregate-report address (the plan's rua=); a token granted `*` like domain creation.
    Operation("domains.dmarc", S.DOMAINS_WRITE, "domain.dmarc", "PUT", "/api/domains/{domain}/dmarc",
              ("domains dmarc",)),
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
    Operation("messages.list", S.MESSAGES_READ, "message.list", "GET", "/api/messages", ("messages list",)),
    Operation("messages.search", S.MESSAGES_SEARCH, "message.search", "GET", "/api/messages/search",
              ("messages search",), "search_messages"),
    Operation("messages.read", S.MESSAGES_READ, "message.read", "GET", "/api/messages/{id}", ("messages read",),
              "read_message"),
    Operation("messages.attachment", S.MESSAGES_READ, "attachment.read", "GET",
              "/api/messages/{id}/attachments/{attachment_id}", ("messages attachment",)),
    Operation("messages.reply", S.DRAFTS_WRITE, "message.reply", "POST", "/api/messages/{id}/reply",
              ("messages reply",)),
    Operation("threads.list", S.MESSAGES_READ, "thread.list", "GET", "/api/threads", ("threads list",),
              "list_threads"),
    Operation("threads.read", S.MESSAGES_READ, "thread.read", "GET", "/api/threads/{id}", ("threads read",),
              "read_thread"),
    Operation("threads.reply", S.DRAFTS_WRITE, "thread.reply", "POST", "/api/threads/{id}/reply",
              ("threads reply",), "reply_to_thread"),
    Operation("threads.draft", S.DRAFTS_WRITE, "draft.create", "POST", "/api/threads/{id}/drafts"),
    Operation("drafts.list", S.DRAFTS_WRITE, "draft.list", "GET", "/api/drafts", ("drafts list",)),
    Operation("drafts.create", S.DRAFTS_WRITE, "draft.create", "POST", "/api/drafts", ("drafts create",),
              "create_draft"),
    Operation("drafts.show", S.DRAFTS_WRITE, "draft.read", "GET", "/api/drafts/{id}", ("drafts show",)),
    Operation("drafts.update", S.DRAFTS_WRITE, "draft.update", "PATCH", "/api/drafts/{id}", ("drafts update",)),
    Operation("drafts.delete", S.DRAFTS_WRITE, "draft.delete", "DELETE", "/api/drafts/{id}", ("drafts delete",)),
    Operation("drafts.send", S.EMAIL_SEND, "send.accepted", "POST", "/api/drafts/{id}/send", ("drafts send",),
              "send_draft", preflight=True),
    Operation("send.direct", S.EMAIL_SEND, "send.accepted", "POST", "/api/send", ("send",), preflight=True),
    # Account-level, filtered to the mailboxes whose sends caused them for a scoped token.
    Operation("suppressions.list", S.EMAIL_SEND, "suppression.list", "GET", "/api/suppressions",
              ("suppressions list",)),
    Operation("suppressions.delete", S.EMAIL_SEND, "suppression.remove", "DELETE", "/api/suppressions/{address}",
              ("suppressions remove",)),
    Operation("tokens.list", S.TOKENS_WRITE, "token.list", "GET", "/api/tokens", ("tokens list",)),
    Operation("tokens.create", S.TOKENS_WRITE, "token.create", "POST", "/api/tokens", ("tokens create",)),
    Operation("tokens.revoke", S.TOKENS_WRITE, "token.revoke", "DELETE", "/api/tokens/{id}", ("tokens revoke",)),
    Operation("audit.list", S.AUDIT_READ, "audit.list", "GET", "/api/audit", ("audit list",)),
    Operation("retention.run", None, "retention.cleanup", "POST", "/api/retention/run", ("retention run",),
              admin_only=True),
    # Retention, abuse and privacy (SPEC §10, §11): the account's admin token only. Disabling
    # an account is an operator action (`litemx accounts disable`, server side), not a route.
    Operation("mailboxes.legal_hold", None, "mailbox.legal_hold", "PUT", "/api/mailboxes/{mailbox}/legal-hold",
              ("mailboxes hold", "mailboxes release"), admin_only=True, mailbox_scoped=True),
    Operation("mailboxes.export", None, "mailbox.export", "GET", "/api/mailboxes/{mailbox}/export",
              ("mailboxes export",), admin_only=True, mailbox_scoped=True),
    Operation("mailboxes.purge", None, "mailbox.purge", "POST", "/api/mailboxes/{mailbox}/purge",
              ("mailboxes purge",), admin_only=True, mailbox_scoped=True),
    Operation("domains.disable", None, "abuse.disable", "POST", "/api/domains/{domain}/disable",
              ("domains disable",), admin_only=True),
    Operation("domains.enable", None, "abuse.enable", "POST", "/api/domains/{domain}/enable",
              ("domains enable",), admin_only=True),
    Operation("mailboxes.disable", None, "abuse.disable", "POST", "/api/mailboxes/{mailbox}/disable",
              ("mailboxes disable",), admin_only=True, mailbox_scoped=True),
    Operation("mailboxes.enable", None, "abuse.enable", "POST", "/api/mailboxes/{mailbox}/enable",
              ("mailboxes enable",), admin_only=True, mailbox_scoped=True),
    Operation("tokens.disable", None, "abuse.disable", "POST", "/api/tokens/{id}/disable", ("tokens disable",),
              admin_only=True),
    Operation("tokens.enable", None, "abuse.enable", "POST", "/api/tokens/{id}/enable", ("tokens enable",),
              admin_only=True),
    Operation("mcp.get", None, "mcp.request", "GET", "/mcp"),
    Operation("mcp.post", None, "mcp.request", "POST", "/mcp"),
    # An MCP-only operation: SPEC names no route or CLI command for it.
    Operation("agent.instructions", None, "agent.instructions", None, None, mcp_tool="get_agent_instructions"),
    Operation("inbound.simulate", None, "inbound.simulate", "POST", "/api/inbound/simulate", admin_only=True),
    Operation("inbound.ses", None, "inbound.delivered", "POST", "/api/inbound/ses", public=True),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPS}


def operation(name: str) -> Operation:
    """Raises: KeyError for a name not in the table (a programming error)."""
    return OPERATIONS[name]
