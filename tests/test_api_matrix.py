"""The refusal matrix for every live, authenticated route of the spine (SPEC §2, §3, §9).

Driven by the operation table: a new live route without a row in REQUESTS fails
`test_every_live_route_has_a_valid_request_in_the_matrix`, so it cannot be forgotten. For each
refusal the test checks what a user can see: the response envelope, that the database did not
change, and the audit event the refusal left.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from litemx.core.operations import OPERATIONS, Operation
from litemx.core.scopes import ALL_SCOPES
from litemx.storage import sending_repo
from tests.support.api import Api, assert_error, audit_since, last_audit_id, snapshot
from tests.support.clock import FakeClock
from tests.support.inbox import Mail, deliver

DOMAIN = "acme.example"
SUPPORT = f"support@{DOMAIN}"
BILLING = f"billing@{DOMAIN}"
SALES = f"sales@{DOMAIN}"  # an alias -> support@
INBOX = f"inbox@{DOMAIN}"  # holds the world's one message (support@ is deleted by the matrix)
OTHER_DOMAIN = "other.example"
GHOST_TOKEN = "tok_" + "a" * 26
GHOST_MESSAGE, GHOST_THREAD, GHOST_ATTACHMENT = "msg_" + "a" * 26, "thr_" + "a" * 26, "att_" + "a" * 26
GHOST_DRAFT = "drf_" + "a" * 26
REPLY = {"text": "Thanks, paid."}
BOUNCED = "bounced@example.net"  # suppressed for inbox@ (as a hard bounce of its send would)

# One valid request per operation: path parameters ("?" is the query string) and body.
# "{victim}" is the id of a scoped token of the tenant (the thing tokens.revoke acts on);
# "{message}", "{thread}", "{attachment}" are the world's one message in inbox@, its thread and
# its attachment; "{draft}" an unsent draft in inbox@.
REQUESTS: dict[str, tuple[dict[str, str], dict[str, Any] | None]] = {
    "system.bootstrap": ({}, None),
    "domains.list": ({}, None),
    "domains.create": ({}, {"name": "new.example"}),
    # The domain DNS routes (issue 3).
    "domains.status": ({"domain": DOMAIN}, None),
    "domains.dns_plan": ({"domain": DOMAIN}, None),
    "domains.readiness": ({"domain": DOMAIN}, {"provider_approved": True}),
    "domains.rotate_dkim": ({"domain": DOMAIN}, None),
    "domains.dmarc": ({"domain": DOMAIN}, {"report_address": f"dmarc@{DOMAIN}"}),
    "mailboxes.list": ({}, None),
    "mailboxes.create": ({}, {"address": f"new@{DOMAIN}"}),
    "mailboxes.show": ({"mailbox": SUPPORT}, None),
    "mailboxes.delete": ({"mailbox": SUPPORT}, None),
    "mailboxes.retention_get": ({"mailbox": SUPPORT}, None),
    "mailboxes.retention_set": ({"mailbox": SUPPORT}, {"days": 30}),
    "aliases.list": ({}, None),
    "aliases.create": ({}, {"address": f"hello@{DOMAIN}", "targets": [SUPPORT]}),
    "aliases.delete": ({"alias": SALES}, None),
    "catchalls.get": ({"domain": DOMAIN}, None),
    "catchalls.set": ({"domain": DOMAIN}, {"mailbox": SUPPORT}),
    "tokens.list": ({}, None),
    "tokens.create": ({}, {"name": "bot", "scopes": ["mailboxes:read"], "mailboxes": [SUPPORT]}),
    "tokens.revoke": ({"id": "{victim}"}, None),
    "audit.list": ({}, None),
    # Reading mail (issue 4): what an agent's read-only token does all day.
    "messages.list": ({}, None),
    "messages.search": ({"?": "q=invoice"}, None),
    "messages.read": ({"id": "{message}"}, None),
    "messages.attachment": ({"id": "{message}", "attachment_id": "{attachment}"}, None),
    "threads.list": ({}, None),
    "threads.read": ({"id": "{thread}"}, None),
    # Drafts and replies (issue 5): an agent drafts, a human sends.
    "drafts.list": ({}, None),
    "drafts.create": ({}, {"mailbox": INBOX, "to": ["bob@example.net"], "subject": "Hello"}),
    "drafts.show": ({"id": "{draft}"}, None),
    "drafts.update": ({"id": "{draft}"}, {"subject": "Hello again"}),
    "drafts.delete": ({"id": "{draft}"}, None),
    "messages.reply": ({"id": "{message}"}, REPLY),
    "threads.reply": ({"id": "{thread}"}, REPLY),
    "threads.draft": ({"id": "{thread}"}, REPLY),
    "suppressions.list": ({}, None),
    "suppressions.delete": ({"address": BOUNCED}, None),
    # Sending (issue 6): this world's domain is not ready, so even the founder is refused by the
    # preflight (NO_SUCCESS_HERE); test_send_preflight.py covers the success path.
    "drafts.send": ({"id": "{draft}"}, None),
    "send.direct": ({}, {"mailbox": INBOX, "to": ["bob@example.net"], "subject": "Hi", "text": "Hello"}),
    # Founder-only operator operations (SPEC §8, retention and abuse): billing@ holds no mail, so
    # holding, purging or disabling it takes nothing the other rows need; each disable is undone
    # by its enable, and the domain's pair runs last (see the founder's order).
    "retention.run": ({}, None),
    "mailboxes.legal_hold": ({"mailbox": BILLING}, {"hold": False}),
    "mailboxes.export": ({"mailbox": INBOX}, None),
    "mailboxes.purge": ({"mailbox": BILLING}, None),
    "mailboxes.disable": ({"mailbox": BILLING}, None),
    "mailboxes.enable": ({"mailbox": BILLING}, None),
    "domains.disable": ({"domain": DOMAIN}, None),
    "domains.enable": ({"domain": DOMAIN}, None),
    "tokens.disable": ({"id": "{victim}"}, None),
    "tokens.enable": ({"id": "{victim}"}, None),
    "inbound.simulate": ({}, {"raw": f"From: a@example.net\r\nTo: {INBOX}\r\nSubject: Simulated\r\n\r\nhi\r\n",
                              "recipients": [INBOX], "mail_from": "a@example.net"}),
}

# Live operations whose issue has not yet added its row (their own tests cover them for now).
# Listing an operation here is a deliberate, reviewable act; a new live route found in neither
# table fails test_every_live_route_has_a_valid_request_in_the_matrix.
PENDING = {
    # transports with their own protocol
    "mcp.get", "mcp.post",
}
# Operations whose success path needs more than this world (live DNS through the configured
# resolver): refusals are checked, the founder's success is not.
NO_SUCCESS_HERE = {"domains.status", "drafts.send", "send.direct"}

AUTHENTICATED = sorted(name for name, op in OPERATIONS.items() if op.live and not op.public and op.path)
SCOPED = [n for n in AUTHENTICATED if OPERATIONS[n].scope is not None or OPERATIONS[n].admin_only]
# Founder-only operations refuse any other token with 403 before looking anything up (the scope
# tests cover them), so the grant tests are about the others.
MAILBOX_SCOPED = [n for n in AUTHENTICATED if OPERATIONS[n].mailbox_scoped and not OPERATIONS[n].admin_only]


@dataclass
class World:
    api: Api  # the tenant's founder
    other: Api  # another account's founder
    founder_id: str
    victim_id: str
    account_id: str
    other_account_id: str
    mail: dict[str, str]  # the ids of the world's message, thread and attachment


    @staticmethod
    def routes(names: list[str]) -> list[str]:
        """The live operations among `names` that have a row (PENDING ones have none yet)."""
        return [n for n in names if n in REQUESTS and OPERATIONS[n].live]

    def request(self, name: str, **params: str) -> tuple[str, str, dict[str, Any] | None]:
        op = OPERATIONS[name]
        defaults, body = REQUESTS[name]
        merged = {k: self._resolve(v) for k, v in {**defaults, **params}.items()}
        assert op.path is not None and op.method is not None
        query = merged.pop("?", None)
        return op.method, op.path.format(**merged) + (f"?{query}" if query else ""), body

    def _resolve(self, value: str) -> str:
        for name, real in {"victim": self.victim_id, **self.mail}.items():
            value = value.replace("{" + name + "}", real)
        return value


@pytest.fixture
def world(client, services, tenant, other_tenant) -> World:
    api, other = Api(client, tenant.token), Api(client, other_tenant.token)
    api.domain(DOMAIN)
    api.mailbox(SUPPORT)
    api.mailbox(BILLING)
    api.alias(SALES, SUPPORT)
    victim_id, _ = api.token(["mailboxes:read"], [SUPPORT], name="victim")
    other.domain(OTHER_DOMAIN)
    other.mailbox(f"info@{OTHER_DOMAIN}")
    return World(api, other, api.me()["token"]["id"], victim_id, tenant.account["id"], other_tenant.account["id"],
                 _one_message(api, services))


def _one_message(api: Api, services: Any) -> dict[str, str]:
    """inbox@ receives one message with an attachment, through the real inbound pipeline."""
    api.mailbox(INBOX)
    [message_id] = deliver(services, Mail(subject="Invoice 7", text="invoice attached", to=INBOX,
                                          files=[("invoice.pdf", "application/pdf", b"%PDF-1.4 seven")]).build(), INBOX)
    read = api.ok("GET", f"/api/messages/{message_id}")
    draft = api.ok("POST", "/api/drafts", {"mailbox": INBOX, "to": ["carol@example.net"], "subject": "Draft"})
    account_id = api.me()["account"]["id"]
    with services.infra.db.write() as conn:  # what a hard bounce of an inbox@ send leaves (test_bounces.py)
        sending_repo.add_suppression(conn, {"account_id": account_id, "address": BOUNCED,
                                            "reason": "bounce", "mailbox": INBOX, "message_id": message_id,
                                            "details": {"status": "5.1.1"}, "created_at": services.infra.clock.now()})
    return {"message": message_id, "thread": read["thread_id"], "attachment": read["attachments"][0]["id"],
            "draft": draft["id"]}


def _send(world: World, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return world.api.client.request(method, path, json=body, headers=headers)


def _one_event(services: Any, since: int) -> dict[str, Any]:
    events = audit_since(services, since)
    assert len(events) == 1, events
    return events[0]


def each_route(names: list[str], check: Callable[[str], None]) -> None:
    """Run `check` for every operation and report every failing one at once.

    One world serves every route (refusals change nothing), which keeps the matrix fast.
    """
    assert names, "nothing to check: the matrix would pass vacuously"
    failures = []
    for name in names:
        try:
            check(name)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


# -- the table itself -----------------------------------------------------------------------


def test_every_live_route_has_a_valid_request_in_the_matrix():
    missing = sorted(set(AUTHENTICATED) - set(REQUESTS) - PENDING)
    assert not missing, f"add a valid request for {missing} to REQUESTS (and CROSS_CASES if it names a resource)"
    assert set(REQUESTS) <= set(OPERATIONS) and not set(REQUESTS) & PENDING


def test_the_founder_can_perform_every_request_in_the_matrix(world, services):
    # Destructive requests last, so each request still finds what it acts on.
    order = sorted(AUTHENTICATED, key=lambda n: ({"aliases.delete": 1, "tokens.revoke": 1, "drafts.delete": 1,
                                                   "suppressions.delete": 1, "mailboxes.delete": 2,
                                                   "mailboxes.disable": 3, "mailboxes.enable": 4,
                                                   "domains.disable": 5, "domains.enable": 6}.get(n, 0), n))

    def check(name: str) -> None:
        method, path, body = world.request(name)
        since = last_audit_id(services)
        response = world.api.call(method, path, body)
        assert response.status_code in (200, 201), response.text
        events = audit_since(services, since)
        # A simulated delivery also leaves its `inbound.delivered` event, as mail from the MX does.
        assert len(events) == (2 if name == "inbound.simulate" else 1), events
        [event] = [e for e in events if e["action"] == OPERATIONS[name].action]
        # A retention run's event is the system's, whoever asked (docs/retention-and-privacy.md).
        actor = None if name == "retention.run" else world.founder_id
        assert (event["action"], event["outcome"], event["actor_id"]) == (OPERATIONS[name].action, "ok", actor)

    each_route([n for n in world.routes(order) if n not in NO_SUCCESS_HERE], check)


# -- authentication (401) ------------------------------------------------------------------


def test_a_request_without_a_token_is_refused_with_a_bearer_challenge(world, services):
    before = snapshot(services)

    def check(name: str) -> None:
        method, path, body = world.request(name)
        response = world.api.client.request(method, path, json=body)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    each_route(world.routes(AUTHENTICATED), check)
    assert snapshot(services) == before


def test_a_request_without_a_token_leaves_an_auth_denied_event(world, services):
    since = last_audit_id(services)
    assert_error(world.api.client.get("/api/mailboxes"), 401, "unauthorized")
    event = _one_event(services, since)
    assert (event["action"], event["outcome"], event["account_id"]) == ("auth.denied", "denied", None)


BAD_SECRETS: dict[str, Callable[[str], str]] = {
    "malformed": lambda _real: "not-a-token",
    "unknown": lambda _real: "lmx_" + secrets.token_urlsafe(32),
    # A real token's lookup prefix with the wrong rest: the constant-time compare must refuse it.
    "known-prefix-wrong-secret": lambda real: real[:20] + secrets.token_urlsafe(32)[: len(real) - 20],
}


@pytest.mark.parametrize("kind", list(BAD_SECRETS))
def test_an_unknown_token_is_refused_and_recorded_with_no_account(world, services, kind):
    secret = BAD_SECRETS[kind](world.api.secret)
    assert secret != world.api.secret
    before = snapshot(services)

    def check(name: str) -> None:
        method, path, body = world.request(name)
        since = last_audit_id(services)
        response = _send(world, method, path, body, {"Authorization": f"Bearer {secret}"})
        error = assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert secret not in response.text and error["details"] == {}
        event = _one_event(services, since)
        assert (event["action"], event["outcome"], event["account_id"], event["actor_type"]) == (
            "auth.denied", "denied", None, "anonymous")
        assert secret not in str(event)

    each_route(world.routes(AUTHENTICATED), check)
    assert snapshot(services) == before


def test_a_revoked_token_is_refused_and_the_founder_sees_the_denial(world, services):
    token_id, secret = world.api.token(sorted(ALL_SCOPES))
    world.api.ok("DELETE", f"/api/tokens/{token_id}")
    _refused_on_every_route(world, services, token_id, secret, "revoked")
    seen = world.api.audit(action="auth.denied", limit=200)  # one page: more routes than the default 50
    assert [(e["actor"]["id"], e["outcome"]) for e in seen] == [(token_id, "denied")] * len(
        world.routes(AUTHENTICATED))


def test_an_expired_token_is_refused(world, services, clock: FakeClock):
    token_id, secret = world.api.token(sorted(ALL_SCOPES), expires_at=clock.now() + timedelta(hours=1))
    clock.advance(hours=2)
    _refused_on_every_route(world, services, token_id, secret, "expired")


def _refused_on_every_route(world: Any, services: Any, token_id: str, secret: str, reason: str) -> None:
    """Every authenticated route answers 401 and writes one `auth.denied` event; nothing changes."""
    before = snapshot(services)

    def check(name: str) -> None:
        method, path, body = world.request(name)
        since = last_audit_id(services)
        assert_error(world.api.call(method, path, body, secret=secret), 401, "unauthorized")
        event = _one_event(services, since)
        assert (event["action"], event["outcome"], event["account_id"], event["actor_id"]) == (
            "auth.denied", "denied", world.account_id, token_id)
        assert event["details"] == {"reason": reason}

    each_route(world.routes(AUTHENTICATED), check)
    assert snapshot(services) == before


def test_a_token_just_before_its_expiry_still_works(world, clock: FakeClock):
    _, secret = world.api.token(["mailboxes:read"], expires_at=clock.now() + timedelta(hours=1))
    clock.advance(minutes=59)
    assert world.api.call("GET", "/api/mailboxes", secret=secret).status_code == 200
    clock.advance(minutes=1)  # expiry is exclusive: at expires_at the token is dead
    assert_error(world.api.call("GET", "/api/mailboxes", secret=secret), 401, "unauthorized")


# -- scopes (403) ---------------------------------------------------------------------------


def _required(op: Operation) -> str:
    """What the refusal names: the operation's scope, or `admin` for founder-only operations."""
    return "admin" if op.admin_only else op.scope.value  # type: ignore[union-attr]


def test_a_token_lacking_the_operations_scope_is_refused_naming_the_scope(world, services):
    lacking = {}
    for name in world.routes(SCOPED):
        scope = OPERATIONS[name].scope
        held = ALL_SCOPES - {scope.value} if scope is not None else ALL_SCOPES
        lacking[name] = world.api.token(sorted(held), name=f"without-{_required(OPERATIONS[name])}")
    before = snapshot(services)

    def check(name: str) -> None:
        op: Operation = OPERATIONS[name]
        token_id, secret = lacking[name]
        method, path, body = world.request(name)
        since = last_audit_id(services)
        # A send's scope is checked by its preflight (SPEC §6): send_blocked, every reason listed.
        code, action, outcome = (("send_blocked", "send.blocked", "blocked") if op.preflight
                                 else ("forbidden", op.action, "denied"))
        error = assert_error(world.api.call(method, path, body, secret=secret), 403, code)
        assert error["details"]["missing_scope"] == _required(op)
        assert ("scope_missing" if op.preflight else _required(op)) in error["message"]
        event = _one_event(services, since)
        assert (event["action"], event["outcome"], event["actor_id"], event["account_id"]) == (
            action, outcome, token_id, world.account_id)
        assert event["details"]["missing_scope"] == _required(op)

    each_route(world.routes(SCOPED), check)
    assert snapshot(services) == before


def test_a_token_with_only_the_operations_scope_is_let_through(world):
    _, secret = world.api.token(["mailboxes:read"])
    assert world.api.call("GET", f"/api/mailboxes/{SUPPORT}", secret=secret).status_code == 200


# -- mailbox grants (404, never a hint) -----------------------------------------------------


def _missing_mailbox_error(world: World, address: str) -> dict[str, Any]:
    """What the founder is told about a mailbox that does not exist, renamed to `address`."""
    ghost = f"ghost@{DOMAIN}"
    error = assert_error(world.api.call("GET", f"/api/mailboxes/{ghost}"), 404, "not_found")
    return {**error, "message": error["message"].replace(ghost, address)}


def test_a_mailbox_outside_the_tokens_grants_looks_exactly_like_a_missing_one(world, services):
    token_id, secret = world.api.token(sorted(ALL_SCOPES), [BILLING])

    def check(name: str) -> None:
        target = f"new@{DOMAIN}" if name == "mailboxes.create" else SUPPORT
        method, path, body = world.request(name, mailbox=target)
        if name == "mailboxes.create":
            body = {"address": target}
        expected = _missing_mailbox_error(world, target)
        before, since = snapshot(services), last_audit_id(services)
        error = assert_error(world.api.call(method, path, body, secret=secret), 404, "not_found")
        assert error == expected
        event = _one_event(services, since)
        assert (event["action"], event["outcome"], event["actor_id"], event["mailbox"]) == (
            OPERATIONS[name].action, "denied", token_id, target)
        assert snapshot(services) == before

    each_route(world.routes(MAILBOX_SCOPED), check)


def test_a_mailbox_inside_the_tokens_grants_is_reachable(world):
    _, secret = world.api.token(sorted(ALL_SCOPES), [SUPPORT])

    def check(name: str) -> None:
        method, path, body = world.request(name)
        assert world.api.call(method, path, body, secret=secret).status_code == 200

    each_route(world.routes([n for n in MAILBOX_SCOPED if n not in ("mailboxes.create", "mailboxes.delete")]
                            + ["mailboxes.delete"]), check)


@dataclass(frozen=True)
class GrantCase:
    """A request by a token granted only billing@ that reaches beyond its grants, and the twin
    request naming something that does not exist (None: no twin, the refusal is explicit)."""

    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    code: str
    twin_path: str | None = None
    twin_body: dict[str, Any] | None = None
    outcome: str = "denied"


GRANT_CASES = {
    "alias reaching an ungranted mailbox is missing": GrantCase(
        "DELETE", f"/api/aliases/{SALES}", None, 404, "not_found", f"/api/aliases/ghost@{DOMAIN}"),
    "catchall of an ungranted domain is missing": GrantCase(
        "GET", "/api/catchalls/beta.example", None, 404, "not_found", "/api/catchalls/ghost.example"),
    "dns plan of an ungranted domain is missing": GrantCase(
        "GET", "/api/domains/beta.example/dns-plan", None, 404, "not_found", "/api/domains/ghost.example/dns-plan"),
    "dkim rotation of an ungranted domain is missing": GrantCase(
        "POST", "/api/domains/beta.example/dkim/rotate", None, 404, "not_found",
        "/api/domains/ghost.example/dkim/rotate"),
    "alias targeting an ungranted mailbox names targets": GrantCase(
        "POST", "/api/aliases", {"address": f"new@{DOMAIN}", "targets": [SUPPORT]}, 422, "invalid_request",
        "/api/aliases", {"address": f"new@{DOMAIN}", "targets": [f"ghost@{DOMAIN}"]}, outcome="error"),
    "token granting an ungranted mailbox names mailboxes": GrantCase(
        "POST", "/api/tokens", {"name": "t", "scopes": ["mailboxes:read"], "mailboxes": [SUPPORT]}, 422,
        "invalid_request", "/api/tokens",
        {"name": "t", "scopes": ["mailboxes:read"], "mailboxes": [f"ghost@{DOMAIN}"]}, outcome="error"),
    "token granting every mailbox is forbidden": GrantCase(
        "POST", "/api/tokens", {"name": "t", "scopes": ["mailboxes:read"], "mailboxes": ["*"]}, 403, "forbidden"),
    "adding a domain needs every mailbox": GrantCase("POST", "/api/domains", {"name": "x.example"}, 403, "forbidden"),
    "setting the DMARC report address needs every mailbox": GrantCase(
        "PUT", f"/api/domains/{DOMAIN}/dmarc", {"report_address": BILLING}, 403, "forbidden"),
    "dmarc of an ungranted domain is missing": GrantCase(
        "PUT", "/api/domains/beta.example/dmarc", {"report_address": None}, 404, "not_found",
        "/api/domains/ghost.example/dmarc", {"report_address": None}),
    "setting a catchall needs every mailbox": GrantCase(
        "PUT", f"/api/catchalls/{DOMAIN}", {"mailbox": BILLING}, 403, "forbidden"),
    "revoking a wider token is forbidden": GrantCase("DELETE", "/api/tokens/{victim}", None, 403, "forbidden"),
    "a suppression caused by an ungranted mailbox is missing": GrantCase(
        "DELETE", f"/api/suppressions/{BOUNCED}", None, 404, "not_found", "/api/suppressions/ghost@example.net"),
    "a message in an ungranted mailbox is missing": GrantCase(
        "GET", "/api/messages/{message}", None, 404, "not_found", f"/api/messages/{GHOST_MESSAGE}"),
    "an attachment in an ungranted mailbox is missing": GrantCase(
        "GET", "/api/messages/{message}/attachments/{attachment}", None, 404, "not_found",
        f"/api/messages/{GHOST_MESSAGE}/attachments/{GHOST_ATTACHMENT}"),
    "a thread in an ungranted mailbox is missing": GrantCase(
        "GET", "/api/threads/{thread}", None, 404, "not_found", f"/api/threads/{GHOST_THREAD}"),
    "listing an ungranted mailbox's messages is missing": GrantCase(
        "GET", f"/api/messages?mailbox={INBOX}", None, 404, "not_found", f"/api/messages?mailbox=ghost@{DOMAIN}"),
    "a draft in an ungranted mailbox is missing": GrantCase(
        "GET", "/api/drafts/{draft}", None, 404, "not_found", f"/api/drafts/{GHOST_DRAFT}"),
    "editing a draft in an ungranted mailbox is missing": GrantCase(
        "PATCH", "/api/drafts/{draft}", {"subject": "x"}, 404, "not_found", f"/api/drafts/{GHOST_DRAFT}",
        {"subject": "x"}),
    "drafting from an ungranted mailbox is missing": GrantCase(
        "POST", "/api/drafts", {"mailbox": INBOX, "to": ["bob@example.net"]}, 404, "not_found", "/api/drafts",
        {"mailbox": f"ghost@{DOMAIN}", "to": ["bob@example.net"]}),
    "replying to a message in an ungranted mailbox is missing": GrantCase(
        "POST", "/api/messages/{message}/reply", REPLY, 404, "not_found", f"/api/messages/{GHOST_MESSAGE}/reply",
        REPLY),
    "replying in a thread of an ungranted mailbox is missing": GrantCase(
        "POST", "/api/threads/{thread}/reply", REPLY, 404, "not_found", f"/api/threads/{GHOST_THREAD}/reply", REPLY),
    "sending from an ungranted mailbox is blocked like from a missing one": GrantCase(
        "POST", "/api/send", {"mailbox": INBOX, "to": ["bob@example.net"], "text": "x"}, 403, "send_blocked",
        "/api/send", {"mailbox": f"ghost@{DOMAIN}", "to": ["bob@example.net"], "text": "x"}, outcome="blocked"),
    "sending a draft of an ungranted mailbox is missing": GrantCase(
        "POST", "/api/drafts/{draft}/send", None, 404, "not_found", f"/api/drafts/{GHOST_DRAFT}/send"),
    "searching an ungranted mailbox is missing": GrantCase(
        "GET", f"/api/messages/search?q=invoice&mailbox={INBOX}", None, 404, "not_found",
        f"/api/messages/search?q=invoice&mailbox=ghost@{DOMAIN}"),
}


def test_a_mailbox_scoped_token_cannot_reach_past_its_grants(world, services):
    world.api.domain("beta.example")
    world.api.mailbox("x@beta.example")
    token_id, secret = world.api.token(sorted(ALL_SCOPES), [BILLING])

    def check(label: str) -> None:
        case = GRANT_CASES[label]
        path = world._resolve(case.path)
        before, since = snapshot(services), last_audit_id(services)
        error = assert_error(world.api.call(case.method, path, case.body, secret=secret), case.status, case.code)
        event = _one_event(services, since)
        assert (event["outcome"], event["actor_id"]) == (case.outcome, token_id)
        assert snapshot(services) == before
        if case.code == "forbidden":
            assert error["details"].get("missing_grant") == "*"
        if case.twin_path is not None:
            twin = assert_error(world.api.call(case.method, case.twin_path, case.twin_body, secret=secret),
                                case.status, case.code)
            assert _blank(twin["details"]) == _blank(error["details"])  # the caller's own words aside
            assert _shape(twin["message"]) == _shape(error["message"])

    each_route(list(GRANT_CASES), check)


def _blank(value: Any) -> Any:
    """Details with every address and domain blanked (a refusal may repeat what the caller asked)."""
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v) for v in value]
    return "<name>" if isinstance(value, str) and ("." in value or "@" in value) else value


def _shape(message: str) -> str:
    """A message with every address and domain blanked, to compare wording only."""
    return " ".join("<name>" if "." in w or "@" in w or w.startswith(("tok_", "msg_", "thr_", "att_", "drf_")) else w
                    for w in message.split())


# -- other accounts (404, nothing changed) -------------------------------------------------


@dataclass(frozen=True)
class CrossCase:
    """The other founder naming one of the tenant's things, and the twin naming nothing."""

    name: str
    params: dict[str, str]
    twin: dict[str, str]
    status: int = 404
    code: str = "not_found"
    body: dict[str, Any] | None = None
    twin_body: dict[str, Any] | None = None


CROSS_CASES = [
    CrossCase("mailboxes.show", {"mailbox": SUPPORT}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.delete", {"mailbox": SUPPORT}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.retention_get", {"mailbox": SUPPORT}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.retention_set", {"mailbox": SUPPORT}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("aliases.delete", {"alias": SALES}, {"alias": f"ghost@{DOMAIN}"}),
    CrossCase("catchalls.get", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.status", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.dns_plan", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.readiness", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.rotate_dkim", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.dmarc", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("catchalls.set", {"domain": DOMAIN}, {"domain": "ghost.example"}, body={"mailbox": None}),
    CrossCase("tokens.revoke", {"id": "{victim}"}, {"id": GHOST_TOKEN}),
    CrossCase("messages.read", {"id": "{message}"}, {"id": GHOST_MESSAGE}),
    CrossCase("messages.attachment", {"id": "{message}", "attachment_id": "{attachment}"},
              {"id": GHOST_MESSAGE, "attachment_id": GHOST_ATTACHMENT}),
    CrossCase("threads.read", {"id": "{thread}"}, {"id": GHOST_THREAD}),
    CrossCase("drafts.show", {"id": "{draft}"}, {"id": GHOST_DRAFT}),
    CrossCase("drafts.update", {"id": "{draft}"}, {"id": GHOST_DRAFT}),
    CrossCase("drafts.delete", {"id": "{draft}"}, {"id": GHOST_DRAFT}),
    CrossCase("messages.reply", {"id": "{message}"}, {"id": GHOST_MESSAGE}),
    CrossCase("threads.reply", {"id": "{thread}"}, {"id": GHOST_THREAD}),
    CrossCase("threads.draft", {"id": "{thread}"}, {"id": GHOST_THREAD}),
    CrossCase("drafts.send", {"id": "{draft}"}, {"id": GHOST_DRAFT}),
    CrossCase("suppressions.delete", {"address": BOUNCED}, {"address": "ghost@example.net"}),
    CrossCase("send.direct", {}, {}, 403, "send_blocked", body={"mailbox": INBOX, "to": ["bob@example.net"]},
              twin_body={"mailbox": f"ghost@{DOMAIN}", "to": ["bob@example.net"]}),
    CrossCase("drafts.create", {}, {}, body={"mailbox": INBOX, "to": ["bob@example.net"]},
              twin_body={"mailbox": f"ghost@{DOMAIN}", "to": ["bob@example.net"]}),
    CrossCase("mailboxes.create", {}, {}, 422, "invalid_request",
              {"address": f"new@{DOMAIN}"}, {"address": "new@ghost.example"}),
    CrossCase("aliases.create", {}, {}, 422, "invalid_request",
              {"address": f"a@{OTHER_DOMAIN}", "targets": [SUPPORT]},
              {"address": f"a@{OTHER_DOMAIN}", "targets": [f"ghost@{DOMAIN}"]}),
    CrossCase("mailboxes.legal_hold", {"mailbox": BILLING}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.export", {"mailbox": INBOX}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.purge", {"mailbox": BILLING}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.disable", {"mailbox": BILLING}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("mailboxes.enable", {"mailbox": BILLING}, {"mailbox": f"ghost@{DOMAIN}"}),
    CrossCase("domains.disable", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("domains.enable", {"domain": DOMAIN}, {"domain": "ghost.example"}),
    CrossCase("tokens.disable", {"id": "{victim}"}, {"id": GHOST_TOKEN}),
    CrossCase("tokens.enable", {"id": "{victim}"}, {"id": GHOST_TOKEN}),
    CrossCase("inbound.simulate", {}, {}, 422, "invalid_request", REQUESTS["inbound.simulate"][1],
              {**(REQUESTS["inbound.simulate"][1] or {}), "recipients": [f"ghost@{DOMAIN}"]}),
    CrossCase("tokens.create", {}, {}, 422, "invalid_request",
              {"name": "t", "scopes": ["mailboxes:read"], "mailboxes": [SUPPORT]},
              {"name": "t", "scopes": ["mailboxes:read"], "mailboxes": [f"ghost@{DOMAIN}"]}),
]


def test_every_operation_naming_a_resource_has_a_cross_account_case():
    naming = {n for n, (params, body) in REQUESTS.items()
              if set(params) - {"?"} or (body and OPERATIONS[n].method == "POST")}
    assert naming - {"domains.create"} == {c.name for c in CROSS_CASES}


def test_another_accounts_founder_cannot_tell_this_accounts_things_from_missing_ones(world, services):
    cases = {c.name: c for c in CROSS_CASES}

    def check(name: str) -> None:
        case = cases[name]
        method, path, body = world.request(case.name, **case.params)
        _, twin_path, twin_body = world.request(case.name, **case.twin)
        body, twin_body = case.body or body, case.twin_body or case.body or twin_body
        before, since = snapshot(services), last_audit_id(services)
        error = assert_error(world.other.call(method, path, body), case.status, case.code)
        event = _one_event(services, since)
        assert snapshot(services) == before
        assert event["account_id"] == world.other_account_id  # nothing lands in the tenant's log
        twin_since = last_audit_id(services)
        twin = assert_error(world.other.call(method, twin_path, twin_body), case.status, case.code)
        twin_event = _one_event(services, twin_since)
        assert _blank(twin["details"]) == _blank(error["details"])  # the caller's own words aside
        assert _shape(twin["message"]) == _shape(error["message"])
        # The caller reads its own log: the two refusals must look alike there too.
        assert event["outcome"] == twin_event["outcome"] != "ok"
        # A send refused before it is queued is audited as send.blocked (SPEC §6), whatever the reason.
        expected = "send.blocked" if OPERATIONS[case.name].preflight else OPERATIONS[case.name].action
        assert event["action"] == twin_event["action"] == expected

    each_route(world.routes(list(cases)), check)


def test_another_account_cannot_add_a_domain_already_hosted_here(world, services):
    # Domains are unique per instance (routing needs one owner), so this is a 409, not a 404.
    before = snapshot(services)
    error = assert_error(world.other.call("POST", "/api/domains", {"name": DOMAIN.upper()}), 409, "conflict")
    assert error["details"] == {"field": "name"}
    assert snapshot(services) == before


def test_another_accounts_lists_never_show_this_accounts_things(world):
    def check(name: str) -> None:
        method, path, _ = world.request(name)
        response = world.other.call(method, path)
        assert response.status_code == 200
        for secret_thing in (DOMAIN, world.account_id, world.victim_id, world.founder_id):
            assert secret_thing not in response.text

    each_route([n for n in world.routes(AUTHENTICATED) if OPERATIONS[n].method == "GET" and not REQUESTS[n][0]],
               check)


# -- what a mailbox-scoped token can read never names an ungranted mailbox ------------------


def test_an_alias_of_another_account_is_no_different_from_a_missing_target(world, services):
    body = {"address": f"a@{OTHER_DOMAIN}", "targets": [SALES]}  # the tenant's alias
    error = assert_error(world.other.call("POST", "/api/aliases", body), 422, "invalid_request")
    twin = assert_error(world.other.call("POST", "/api/aliases", {**body, "targets": [f"ghost@{DOMAIN}"]}),
                        422, "invalid_request")
    assert error["details"] == twin["details"] == {"field": "targets"}
    assert _shape(error["message"]) == _shape(twin["message"])


@pytest.fixture
def support_reader(world) -> tuple[str, str]:
    """A token granted support@ only, with every read scope and tokens:write."""
    return world.api.token(["mailboxes:read", "audit:read", "domains:read", "tokens:write"], [SUPPORT])


def test_a_scoped_tokens_alias_list_never_names_an_ungranted_mailbox(world, support_reader):
    world.api.alias(f"team@{DOMAIN}", SUPPORT, BILLING)
    response = world.api.call("GET", "/api/aliases", secret=support_reader[1])
    assert response.status_code == 200
    assert BILLING not in response.text


def test_a_scoped_tokens_catchall_view_never_names_an_ungranted_mailbox(world, support_reader):
    world.api.catchall(DOMAIN, BILLING)
    response = world.api.call("GET", f"/api/catchalls/{DOMAIN}", secret=support_reader[1])
    assert response.status_code in (200, 404)
    assert BILLING not in response.text


def test_a_scoped_tokens_token_list_never_names_an_ungranted_mailbox(world, support_reader):
    world.api.token(["mailboxes:read"], [BILLING], name="billing-bot")
    response = world.api.call("GET", "/api/tokens", secret=support_reader[1])
    assert response.status_code == 200
    assert BILLING not in response.text and "billing-bot" not in response.text


def test_a_scoped_tokens_audit_view_never_names_an_ungranted_mailbox(world, support_reader):
    world.api.alias(f"team@{DOMAIN}", SUPPORT, BILLING)  # an event on support@ naming billing@
    world.api.catchall(DOMAIN, BILLING)
    world.api.catchall(DOMAIN, SUPPORT)  # an event on support@ whose details say "from billing@"
    items = world.api.ok("GET", "/api/audit", secret=support_reader[1])["items"]
    assert {e["action"] for e in items} >= {"alias.create", "catchall.update"}
    assert BILLING not in str(items)


def test_a_scoped_token_cannot_tell_a_hidden_domain_from_a_missing_one_in_its_own_log(world, support_reader):
    world.api.domain("beta.example")
    _, secret = support_reader
    assert_error(world.api.call("GET", "/api/catchalls/beta.example", secret=secret), 404, "not_found")
    assert_error(world.api.call("GET", "/api/catchalls/ghost.example", secret=secret), 404, "not_found")
    items = world.api.ok("GET", "/api/audit", params={"action": "catchall.read"}, secret=secret)["items"]
    hidden, missing = (next(e for e in items if e["resource_id"] == d) for d in ("beta.example", "ghost.example"))
    assert hidden["outcome"] == missing["outcome"]
    assert hidden["details"] == {**missing["details"], "message": missing["details"]["message"].replace(
        "ghost.example", "beta.example")}
