"""Reading mail through the REST API (SPEC §3, §5, §7, §9): list, read, attachments, threads,
quarantine, body windows, grants and tenancy, and simulate — each checked as response,
database state and audit event together."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from litemx.storage.schema import inbound_queue, messages
from tests.support.api import Api, assert_error, audit_since, count, last_audit_id
from tests.support.inbox import Mail, attachment_rows, deliver, hosted, message_row, send

SUPPORT = "support@acme.example"
BILLING = "billing@acme.example"


@pytest.fixture
def other(client, other_tenant) -> Api:
    a = Api(client, other_tenant.token)
    hosted(a, "other.example", "info")
    return a


def _events(services: Any, since: int, action: str) -> list[dict[str, Any]]:
    return [e for e in audit_since(services, since) if e["action"] == action]


def _size(response: Any) -> int:
    return len(response.content)


# -- list and read -------------------------------------------------------------------------


def test_a_delivered_message_is_listed_and_read_back_with_verdicts_and_an_audit_event(api, services):
    message_id = send(services, Mail(cc="billing@acme.example", message_id="<m1@sender.example>"))
    since = last_audit_id(services)
    listing = api.ok("GET", "/api/messages", params={"mailbox": SUPPORT})
    assert [m["id"] for m in listing["items"]] == [message_id] and listing["next_cursor"] is None
    item = listing["items"][0]
    assert item["from"] == {"name": "Alice Example", "address": "alice@sender.example"}
    assert (item["subject"], item["status"], item["direction"]) == ("Question about my order", "received", "inbound")
    assert item["snippet"] == "Hello, where is my parcel?" and set(item["verdict"]) == {"spf", "dkim", "dmarc"}
    body = api.ok("GET", f"/api/messages/{message_id}")
    assert body["untrusted"] is True and body["text"]["content"].startswith("Hello, where is my parcel?")
    assert body["message_id"] == "<m1@sender.example>" and body["cc"][0]["address"] == BILLING
    assert body["authentication_results"].startswith("Authentication-Results: litemx;")
    assert body["auth"]["spf"]["result"] == message_row(services, message_id)["auth"]["spf"]["result"]
    assert ["Subject", "Question about my order"] in body["headers"]
    (listed, read) = _events(services, since, "message.list") + _events(services, since, "message.read")
    assert (listed["mailbox"], listed["outcome"], listed["details"]["count"]) == (SUPPORT, "ok", 1)
    assert (read["mailbox"], read["resource_id"], read["outcome"]) == (SUPPORT, message_id, "ok")


def test_the_list_is_newest_first_and_paginates_with_a_cursor(api, services, clock):
    ids = []
    for n in range(5):
        ids.append(send(services, Mail(subject=f"Order number {n}")))
        clock.advance(minutes=1)
    first = api.ok("GET", "/api/messages", params={"limit": 2})
    second = api.ok("GET", "/api/messages", params={"limit": 2, "cursor": first["next_cursor"]})
    third = api.ok("GET", "/api/messages", params={"limit": 2, "cursor": second["next_cursor"]})
    seen = [m["id"] for page in (first, second, third) for m in page["items"]]
    assert seen == list(reversed(ids)) and third["next_cursor"] is None


def test_a_bad_status_or_cursor_is_refused_naming_the_field(api, services):
    assert assert_error(api.call("GET", "/api/messages", params={"status": "spam"}), 422,
                        "invalid_request")["details"]["field"] == "status"
    assert assert_error(api.call("GET", "/api/messages", params={"cursor": "bm9wZQ"}), 422,
                        "invalid_request")["details"]["field"] == "cursor"
    assert assert_error(api.call("GET", "/api/messages/x", params={"offset": -1}), 422,
                        "invalid_request")["details"]["field"] == "offset"


def test_html_is_served_sanitised_without_scripts_remote_images_or_handlers(api, services):
    html = ('<p onclick="steal()">Hi <b>there</b><script>alert(1)</script>'
            '<img src="https://tracker.example/p.gif" alt="pixel"><a href="javascript:x()">x</a></p>')
    message_id = send(services, Mail(html=html))
    served = api.ok("GET", f"/api/messages/{message_id}")["html"]["content"]
    assert "<b>there</b>" in served and 'alt="pixel"' in served
    for bad in ("<script", "alert(1)", "tracker.example", "onclick", "javascript:"):
        assert bad not in served
    assert "<script>" in message_row(services, message_id)["html_body"]  # stored as received, never served raw


def test_inline_cid_images_point_at_the_attachment_route(api, services):
    raw = (b"From: a@sender.example\r\nTo: support@acme.example\r\nSubject: Logo\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/related; boundary=B\r\n\r\n--B\r\nContent-Type: text/html\r\n\r\n"
           b'<p><img src="cid:logo@x"></p>\r\n--B\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--B--\r\n")
    (message_id,) = deliver(services, raw, SUPPORT)
    (att,) = attachment_rows(services, message_id)
    body = api.ok("GET", f"/api/messages/{message_id}")
    assert f'src="/api/messages/{message_id}/attachments/{att["id"]}"' in body["html"]["content"]
    assert body["attachments"][0]["content_id"] == "logo@x"


def test_long_bodies_are_read_in_windows_that_continue_at_next_offset(api, services):
    text = "".join(f"line {n:05d} of a long report\n" for n in range(4000))  # ~112k characters
    message_id = send(services, Mail(text=text))
    stored = message_row(services, message_id)["text_body"]
    first = api.call("GET", f"/api/messages/{message_id}", params={"max_chars": 1000})
    window = first.json()["text"]
    assert (window["offset"], window["length"], window["truncated"]) == (0, len(stored), True)
    assert window["content"] == stored[:1000] and window["next_offset"] == 1000
    rest = api.ok("GET", f"/api/messages/{message_id}", params={"offset": 1000, "max_chars": 500})["text"]
    assert rest["content"] == stored[1000:1500]
    default = api.call("GET", f"/api/messages/{message_id}")
    assert default.json()["truncated"] is True and _size(default) <= 82_000
    biggest = api.call("GET", f"/api/messages/{message_id}", params={"max_chars": 60000})
    assert _size(biggest) <= 82_000 and biggest.json()["text"]["next_offset"] == 60000
    tail = api.ok("GET", f"/api/messages/{message_id}", params={"offset": len(stored) - 10})["text"]
    assert tail["content"] == stored[-10:] and tail["truncated"] is False and tail["next_offset"] is None


def test_a_window_of_wide_characters_is_cut_to_the_byte_budget_never_mid_character(api, services):
    message_id = send(services, Mail(text="Grüße aus Köln – 東京 " * 8000, html="<p>" + "東京 " * 30000 + "</p>"))
    response = api.call("GET", f"/api/messages/{message_id}", params={"max_chars": 60000})
    body = response.json()
    assert _size(response) <= 82_000 and body["truncated"] is True
    assert body["text"]["next_offset"] == len(body["text"]["content"]) < 60000
    assert body["html"]["truncated"] is True and body["html"]["content"].startswith("<p>東京")


# -- attachments ---------------------------------------------------------------------------


def test_an_attachment_downloads_as_the_exact_bytes_with_safe_headers(api, services):
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 4
    message_id = send(services, Mail(files=[("Rechnung März.pdf", "application/pdf", pdf)]))
    (att,) = api.ok("GET", f"/api/messages/{message_id}")["attachments"]
    since = last_audit_id(services)
    response = api.call("GET", att["download_url"])
    assert response.status_code == 200 and response.content == pdf
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"
    (event,) = _events(services, since, "attachment.read")
    assert (event["mailbox"], event["resource_id"], event["details"]["message_id"]) == (SUPPORT, att["id"], message_id)
    other = send(services, Mail(subject="Another"))  # an attachment id only counts with its own message
    assert_error(api.call("GET", f"/api/messages/{other}/attachments/{att['id']}"), 404, "not_found")
    assert_error(api.call("GET", f"/api/messages/{message_id}/attachments/att_nope"), 404, "not_found")


def test_risky_attachment_types_are_served_as_octet_stream(api, services):
    risky = ["text/html", "image/svg+xml", "application/x-msdownload", "text/xml"]
    message_id = send(services, Mail(files=[(f"file{n}", ctype, b"<script>alert(1)</script>")
                                            for n, ctype in enumerate(risky)]))
    for att in api.ok("GET", f"/api/messages/{message_id}")["attachments"]:
        response = api.call("GET", att["download_url"])
        assert response.headers["content-type"] == "application/octet-stream", att["content_type"]
        assert response.headers["content-disposition"].startswith("attachment;")


# -- threads -------------------------------------------------------------------------------


def test_a_reply_with_in_reply_to_lands_in_the_same_thread_read_oldest_first(api, services, clock):
    first = send(services, Mail(subject="Broken invoice PDF", message_id="<a1@sender.example>"))
    clock.advance(minutes=5)
    other = send(services, Mail(subject="Unrelated", message_id="<b1@sender.example>"))
    clock.advance(minutes=5)
    reply = send(services, Mail(subject="Re: Broken invoice PDF", text="Any news?", message_id="<a2@sender.example>",
                                in_reply_to="<a1@sender.example>", references="<a1@sender.example>"))
    thread_id = message_row(services, first)["thread_id"]
    assert message_row(services, reply)["thread_id"] == thread_id != message_row(services, other)["thread_id"]
    since = last_audit_id(services)
    threads = api.ok("GET", "/api/threads", params={"mailbox": SUPPORT})["items"]
    (listed,) = _events(services, since, "thread.list")
    assert (listed["mailbox"], listed["details"]["count"]) == (SUPPORT, 2)
    assert [t["id"] for t in threads][0] == thread_id and threads[0]["message_count"] == 2
    assert threads[0]["latest"]["id"] == reply
    page = api.ok("GET", "/api/threads", params={"limit": 1})
    rest = api.ok("GET", "/api/threads", params={"limit": 1, "cursor": page["next_cursor"]})
    assert [t["id"] for t in page["items"] + rest["items"]] == [t["id"] for t in threads] and not rest["next_cursor"]
    since = last_audit_id(services)
    view = api.ok("GET", f"/api/threads/{thread_id}")
    assert [m["id"] for m in view["messages"]] == [first, reply] and view["untrusted"] is True
    assert view["messages"][1]["text"]["content"].startswith("Any news?")
    (event,) = _events(services, since, "thread.read")
    assert (event["mailbox"], event["resource_id"], event["details"]["messages"]) == (SUPPORT, thread_id,
                                                                                      [first, reply])


def test_a_long_thread_stays_under_the_response_cap_and_says_so(api, services):
    root = send(services, Mail(subject="Weekly log", message_id="<w0@sender.example>", text="x " * 15_000))
    for n in range(1, 12):
        send(services, Mail(subject="Re: Weekly log", message_id=f"<w{n}@sender.example>", text="y " * 15_000,
                            in_reply_to=f"<w{n - 1}@sender.example>"))
    thread_id = message_row(services, root)["thread_id"]
    response = api.call("GET", f"/api/threads/{thread_id}", params={"max_chars": 10_000, "limit": 50})
    view = response.json()
    assert _size(response) <= 82_000 and view["truncated"] is True and view["next_cursor"]
    assert all(m["text"]["truncated"] for m in view["messages"])
    seen = [m["id"] for m in view["messages"]]
    while view["next_cursor"]:
        view = api.ok("GET", f"/api/threads/{thread_id}", params={"max_chars": 10_000, "cursor": view["next_cursor"]})
        seen += [m["id"] for m in view["messages"]]
    assert len(seen) == len(set(seen)) == 12


# -- quarantine ----------------------------------------------------------------------------


@pytest.fixture
def quarantined(api, services, dns) -> str:
    """A message from a domain publishing DMARC p=reject that passes neither SPF nor DKIM."""
    dns.load({"_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
              "bank.example": [("TXT", "v=spf1 ip4:198.51.100.1 -all")]})
    (message_id,) = deliver(services, Mail(sender="Bank <alerts@bank.example>", subject="Verify your account").build(),
                            SUPPORT, mail_from="alerts@bank.example")
    assert message_row(services, message_id)["status"] == "quarantined"
    return message_id


def test_quarantined_messages_are_hidden_unless_asked_for(api, services, quarantined):
    normal = send(services, Mail())
    assert [m["id"] for m in api.ok("GET", "/api/messages")["items"]] == [normal]
    shown = api.ok("GET", "/api/messages", params={"include_quarantined": "true"})["items"]
    assert [m["id"] for m in shown] == [normal, quarantined] and shown[1]["status"] == "quarantined"
    only = api.ok("GET", "/api/messages", params={"status": "quarantined"})["items"]
    assert [m["id"] for m in only] == [quarantined]
    assert api.ok("GET", "/api/messages/search", params={"q": "verify"})["items"] == []
    assert len(api.ok("GET", "/api/messages/search", params={"q": "verify", "include_quarantined": "true"})["items"]) == 1
    assert quarantined not in [t["latest"]["id"] for t in api.ok("GET", "/api/threads")["items"]]
    body = api.ok("GET", f"/api/messages/{quarantined}")
    assert body["quarantined"] is True and body["verdict"]["dmarc"] == "fail"


# -- grants and tenancy --------------------------------------------------------------------


@pytest.fixture
def two_mailboxes(api, services) -> dict[str, str]:
    return {"support": send(services, Mail(subject="For support", text="kiwi"), SUPPORT),
            "billing": send(services, Mail(subject="For billing", text="kiwi", to=BILLING), BILLING)}


def test_a_mailbox_scoped_token_never_reads_lists_or_finds_another_mailbox(api, services, two_mailboxes):
    _, secret = api.token(["messages:read", "messages:search"], [SUPPORT])
    billing = two_mailboxes["billing"]
    billing_thread = message_row(services, billing)["thread_id"]
    listed = api.ok("GET", "/api/messages", secret=secret)
    assert [m["id"] for m in listed["items"]] == [two_mailboxes["support"]]
    found = api.call("GET", "/api/messages/search", params={"q": "kiwi"}, secret=secret).json()["items"]
    assert [m["id"] for m in found] == [two_mailboxes["support"]]
    assert [t["mailbox"] for t in api.call("GET", "/api/threads", secret=secret).json()["items"]] == [SUPPORT]
    since = last_audit_id(services)
    for path in (f"/api/messages/{billing}", f"/api/threads/{billing_thread}", "/api/messages?mailbox=" + BILLING,
                 "/api/threads?mailbox=" + BILLING, "/api/messages/search?q=kiwi&mailbox=" + BILLING):
        missing = path.replace(billing, "msg_doesnotexist").replace(billing_thread, "thr_doesnotexist")
        refused = assert_error(api.call("GET", path, secret=secret), 404, "not_found")
        absent = api.call("GET", missing.replace(BILLING, "nobody@acme.example"), secret=secret)
        assert refused["message"].split()[0] == absent.json()["error"]["message"].split()[0]  # no hint
    denied = {e["resource_id"] for e in audit_since(services, since) if e["outcome"] == "denied"}
    assert {billing, billing_thread, BILLING} <= denied  # recorded for the account's admins


def test_another_account_never_sees_the_messages(api, other, services, two_mailboxes):
    message_id = two_mailboxes["support"]
    thread_id = message_row(services, message_id)["thread_id"]
    assert other.ok("GET", "/api/messages")["items"] == []
    assert other.ok("GET", "/api/threads")["items"] == []
    assert other.ok("GET", "/api/messages/search", params={"q": "kiwi"})["items"] == []
    for path in (f"/api/messages/{message_id}", f"/api/threads/{thread_id}", f"/api/messages?mailbox={SUPPORT}"):
        assert_error(other.call("GET", path), 404, "not_found")
    assert all(e["account_id"] == other.me()["account"]["id"]
               for e in audit_since(services, 0) if e["actor_id"] and e["resource_id"] == message_id)


def test_a_token_without_messages_read_is_refused_naming_the_scope(api, services, two_mailboxes):
    _, secret = api.token(["messages:search"], ["*"])
    message_id = two_mailboxes["support"]
    thread_id = message_row(services, message_id)["thread_id"]
    for path in ("/api/messages", f"/api/messages/{message_id}", "/api/threads", f"/api/threads/{thread_id}",
                 f"/api/messages/{message_id}/attachments/att_x"):
        since = last_audit_id(services)
        error = assert_error(api.call("GET", path, secret=secret), 403, "forbidden")
        assert error["details"]["missing_scope"] == "messages:read"
        (event,) = audit_since(services, since)
        assert event["outcome"] == "denied" and event["details"]["missing_scope"] == "messages:read", path
    _, reader = api.token(["messages:read"], ["*"])
    error = assert_error(api.call("GET", "/api/messages/search", params={"q": "kiwi"}, secret=reader), 403, "forbidden")
    assert error["details"]["missing_scope"] == "messages:search"


# -- simulate ------------------------------------------------------------------------------


def test_simulate_runs_the_mx_pipeline_and_answers_the_message_ids(api, services):
    raw = Mail(subject="Simulated", text="Through the pipeline").build()
    since = last_audit_id(services)
    answer = api.ok("POST", "/api/inbound/simulate", {"raw_base64": base64.b64encode(raw).decode(),
                                                      "recipients": [SUPPORT, "support+tag@acme.example", BILLING],
                                                      "mail_from": "alice@sender.example", "client_ip": "192.0.2.1"})
    assert answer["status"] == "delivered" and sorted(m["mailbox"] for m in answer["messages"]) == [BILLING, SUPPORT]
    for delivered in answer["messages"]:
        row = message_row(services, delivered["id"])
        assert services.infra.blobs.get(row["raw_key"]) == raw and row["mail_from"] == "alice@sender.example"
    actions = [e["action"] for e in audit_since(services, since)]
    assert actions.count("inbound.delivered") == 2 and actions[-1] == "inbound.simulate"
    assert api.ok("GET", f"/api/messages/{answer['messages'][0]['id']}")["subject"] == "Simulated"


def test_simulate_refuses_unknown_and_foreign_recipients_and_accepts_nothing(api, other, services):
    before = count(services, inbound_queue)
    error = assert_error(api.call("POST", "/api/inbound/simulate", {
        "raw": "Subject: x\r\n\r\nhi\r\n",
        "recipients": [SUPPORT, "nobody@acme.example", "x@unhosted.example", "info@other.example"]}),
        422, "invalid_request")
    assert error["details"]["field"] == "recipients"
    assert error["details"]["recipients"] == [
        {"recipient": "nobody@acme.example", "reason": "unknown_user"},
        {"recipient": "x@unhosted.example", "reason": "relay_denied"},
        {"recipient": "info@other.example", "reason": "relay_denied"}]
    assert count(services, inbound_queue) == before and count(services, messages) == 0


def test_simulate_is_admin_only_and_validates_its_body(api, services):
    _, secret = api.token(["messages:read", "messages:search", "mailboxes:write"], ["*"])
    body = {"raw": "Subject: x\r\n\r\nhi\r\n", "recipients": [SUPPORT]}
    assert assert_error(api.call("POST", "/api/inbound/simulate", body, secret=secret), 403,
                        "forbidden")["details"]["missing_scope"] == "admin"
    both = {**body, "raw_base64": "eA=="}
    assert assert_error(api.call("POST", "/api/inbound/simulate", both), 422, "invalid_request")["details"]["field"] == "raw"
    bad = {"raw_base64": "***", "recipients": [SUPPORT]}
    assert assert_error(api.call("POST", "/api/inbound/simulate", bad), 422,
                        "invalid_request")["details"]["field"] == "raw_base64"
    assert count(services, messages) == 0




def test_a_mailbox_that_still_holds_mail_is_not_deleted_until_purged(api, services):
    send(services, Mail())
    refused = api.client.delete("/api/mailboxes/support@acme.example", headers=api.headers)
    assert_error(refused, 409, "conflict")
    assert refused.json()["error"]["details"]["reason"] == "mailbox_not_empty"
    assert count(services, messages) == 1
    assert api.client.post("/api/mailboxes/support@acme.example/purge", headers=api.headers).status_code == 200
    gone = api.client.delete("/api/mailboxes/support@acme.example", headers=api.headers)
    assert gone.status_code == 200 and count(services, messages) == 0
