"""Drafts and reply drafts (SPEC §6): CRUD with audit, grants, and replies with correct
In-Reply-To / References (RFC 5322 §3.6.4), `Re:` subject and recipients."""

from __future__ import annotations

import json
from email import message_from_bytes

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from litemx.adapters.outbound import SmtpRelayTransport
from litemx.storage import messages_repo
from tests.support.api import assert_error, audit_since, bearer, last_audit_id
from tests.support.live import live_http
from tests.support.sending import MAILBOX, SmtpSink, hosted, receive, run_worker

PARENT = b"""From: Alice <alice@sender.example>\r
To: support@project.dev, Carol <carol@sender.example>\r
Cc: dave@other.example, support+orders@project.dev\r
Reply-To: Alice Desk <desk@sender.example>\r
Subject: Re: Order 1234\r
Message-ID: <m2@sender.example>\r
In-Reply-To: <m1@sender.example>\r
References: <m0@sender.example> <m1@sender.example>\r
\r
Where is my order?\r
"""
FIRST = b"""From: Erin <erin@sender.example>\r
To: support@project.dev\r
Subject: Refund request\r
Message-ID: <e1@sender.example>\r
\r
Please refund.\r
"""


@pytest.fixture
def caller(services, tenant, dns):
    return hosted(services, tenant.token, dns, MAILBOX, "billing@project.dev")


@pytest.fixture
def h(tenant):
    return bearer(tenant.token)


def test_a_draft_is_created_listed_shown_updated_and_deleted_each_audited(services, client, caller, h):
    mark = last_audit_id(services)
    made = client.post("/api/drafts", headers=h, json={
        "mailbox": MAILBOX, "to": ["Bob Example <BOB@Example.NET>"], "cc": ["carol@example.net"],
        "bcc": ["audit@example.net"], "subject": "Quote", "text": "Here it is.", "html": "<p>Here it is.</p>"})
    assert made.status_code == 201, made.text
    draft = made.json()
    assert draft["to"] == ["Bob Example <bob@example.net>"] and draft["bcc"] == ["audit@example.net"]
    assert draft["status"] == "draft" and draft["mailbox"] == MAILBOX and draft["in_reply_to"] is None
    listed = client.get("/api/drafts", headers=h, params={"mailbox": MAILBOX}).json()
    assert [d["id"] for d in listed["items"]] == [draft["id"]]
    assert client.get(f"/api/drafts/{draft['id']}", headers=h).json() == draft
    changed = client.patch(f"/api/drafts/{draft['id']}", headers=h, json={"subject": "Quote v2", "cc": []}).json()
    assert changed["subject"] == "Quote v2" and changed["cc"] == [] and changed["to"] == draft["to"]
    assert client.delete(f"/api/drafts/{draft['id']}", headers=h).json() == {"deleted": True, "id": draft["id"]}
    assert_error(client.get(f"/api/drafts/{draft['id']}", headers=h), 404, "not_found")
    events = [(e["action"], e["resource_id"], e["mailbox"], e["outcome"]) for e in audit_since(services, mark)]
    assert events == [("draft.create", draft["id"], MAILBOX, "ok"), ("draft.list", None, MAILBOX, "ok"),
                      ("draft.read", draft["id"], MAILBOX, "ok"), ("draft.update", draft["id"], MAILBOX, "ok"),
                      ("draft.delete", draft["id"], MAILBOX, "ok"), ("draft.read", draft["id"], None, "error")]


def test_a_reply_carries_in_reply_to_references_re_and_the_reply_to_address(services, client, caller, h):
    parent = receive(services, PARENT)
    reply = client.post(f"/api/messages/{parent}/reply", headers=h, json={"text": "It ships today."})
    assert reply.status_code == 201, reply.text
    draft = reply.json()
    assert draft["subject"] == "Re: Order 1234"  # never "Re: Re: ..."
    assert draft["in_reply_to"] == "<m2@sender.example>"
    assert draft["references"] == ["<m0@sender.example>", "<m1@sender.example>", "<m2@sender.example>"]
    assert draft["to"] == ["Alice Desk <desk@sender.example>"] and draft["cc"] == []
    assert draft["reply_to_message"] == parent and draft["text"] == "It ships today."
    with services.infra.db.read() as conn:
        assert draft["thread_id"] == messages_repo.message_by_id(conn, parent)["thread_id"]
    [event] = [e for e in audit_since(services, 0) if e["action"] == "message.reply"]
    assert event["resource_id"] == draft["id"] and event["details"]["message_id"] == parent


def test_reply_all_copies_to_and_cc_without_the_mailbox_itself(services, client, caller, h):
    parent = receive(services, PARENT)
    draft = client.post(f"/api/messages/{parent}/reply", headers=h, json={"reply_all": True}).json()
    assert draft["to"] == ["Alice Desk <desk@sender.example>"]
    assert draft["cc"] == ["Carol <carol@sender.example>", "dave@other.example"]


def test_a_thread_reply_answers_the_latest_inbound_message(services, client, caller, h):
    receive(services, FIRST)
    second = receive(services, FIRST.replace(b"<e1@", b"<e2@").replace(b"Subject: Refund request",
                                                                      b"In-Reply-To: <e1@sender.example>\r\n"
                                                                      b"Subject: Re: Refund request"))
    with services.infra.db.read() as conn:
        thread_id = messages_repo.message_by_id(conn, second)["thread_id"]
    draft = client.post(f"/api/threads/{thread_id}/reply", headers=h, json={"text": "Done."}).json()
    assert draft["in_reply_to"] == "<e2@sender.example>" and draft["to"] == ["Erin <erin@sender.example>"]
    assert draft["references"] == ["<e1@sender.example>", "<e2@sender.example>"]
    assert draft["subject"] == "Re: Refund request"
    other = client.post(f"/api/threads/{thread_id}/drafts", headers=h, json={}).json()
    assert other["in_reply_to"] == "<e2@sender.example>"
    actions = [e["action"] for e in audit_since(services, 0) if e["resource_type"] == "draft"]
    assert actions == ["thread.reply", "draft.create"]


def test_a_sent_reply_joins_the_thread_with_its_headers(services, client, caller, h):
    parent = receive(services, FIRST)
    draft = client.post(f"/api/messages/{parent}/reply", headers=h, json={"text": "Refunded."}).json()
    with SmtpSink() as sink:
        services.outbound.transport = SmtpRelayTransport("127.0.0.1", sink.port, "mx.litemx.test", timeout=10)
        sent = client.post(f"/api/drafts/{draft['id']}/send", headers=h)
        assert sent.status_code == 202, sent.text
        run_worker(services)
    assert sent.json()["thread_id"] == draft["thread_id"]
    msg = message_from_bytes(sink.received[0].data)
    assert msg["In-Reply-To"] == "<e1@sender.example>" and msg["References"] == "<e1@sender.example>"
    assert msg["Subject"] == "Re: Refund request" and msg["To"] == "Erin <erin@sender.example>"
    thread = client.get(f"/api/threads/{draft['thread_id']}", headers=h).json()
    assert [m["id"] for m in thread["messages"]][-1] == sent.json()["id"] and len(thread["messages"]) == 2


def test_drafts_and_messages_outside_the_grants_are_not_found(services, client, caller, h):
    parent = receive(services, FIRST)
    theirs = client.post("/api/drafts", headers=h, json={"mailbox": "billing@project.dev"}).json()
    made = client.post("/api/tokens", headers=h, json={"name": "bot", "scopes": ["drafts:write"],
                                                       "mailboxes": ["billing@project.dev"]}).json()
    bot = bearer(made["token"])
    assert_error(client.post("/api/drafts", headers=bot, json={"mailbox": MAILBOX}), 404, "not_found")
    assert_error(client.post(f"/api/messages/{parent}/reply", headers=bot, json={}), 404, "not_found")
    assert client.get("/api/drafts", headers=bot).json()["items"] == [
        client.get(f"/api/drafts/{theirs['id']}", headers=bot).json()]
    mine = client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX}).json()
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {"subject": "x"}} if method == "PATCH" else {}
        assert_error(client.request(method, f"/api/drafts/{mine['id']}", headers=bot, **kwargs), 404, "not_found")
    no_scope = client.post("/api/tokens", headers=h, json={"name": "reader", "scopes": ["messages:read"],
                                                           "mailboxes": ["*"]}).json()
    refused = assert_error(client.get("/api/drafts", headers=bearer(no_scope["token"])), 403, "forbidden")
    assert refused["details"]["missing_scope"] == "drafts:write"


def test_the_cli_writes_edits_and_deletes_drafts(services, caller, tenant, monkeypatch, tmp_path):
    parent = receive(services, PARENT)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    with live_http(services) as url:
        env = {"LITEMX_URL": url, "LITEMX_TOKEN": tenant.token}

        def cli(*args: str):
            out = runner.invoke(app, [*args, "--json"], env=env)
            assert out.exit_code == 0, out.output
            return json.loads(out.stdout)

        draft = cli("drafts", "create", "--mailbox", MAILBOX, "--to", "a@example.net,b@example.net",
                    "--subject", "Hello", "--body", "Hi there")
        assert draft["to"] == ["a@example.net", "b@example.net"]
        assert cli("drafts", "update", draft["id"], "--to", "c@example.net")["to"] == ["c@example.net"]
        assert [d["id"] for d in cli("drafts", "list")["items"]] == [draft["id"]]
        assert cli("drafts", "delete", draft["id"])["deleted"] is True
        reply = cli("messages", "reply", parent, "--body", "On it.", "--all")
        assert reply["subject"] == "Re: Order 1234" and "dave@other.example" in reply["cc"]
        bad = runner.invoke(app, ["drafts", "create", "--mailbox", MAILBOX, "--to", "not-an-address"], env=env)
        assert bad.exit_code == 2 and "[field: to]" in bad.stderr
    events = [e for e in audit_since(services, 0) if e["action"] == "draft.create"]
    assert events and all(e["interface"] == "cli" for e in events)
