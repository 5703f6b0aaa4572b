"""The read routes served on the event loop (adapters/http/deps.py `answer`, MCP read tools):
the token is looked up again on every request, so a revocation or a disable refuses the very
next request after one that was served; the response leaves only once its audit event is
committed; the size rules' one-encoding shortcuts give the same cuts as item-by-item counting."""

from __future__ import annotations

import gc
import json
import threading
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from litemx.service import message_views as views
from tests.support.api import Api, assert_error, audit_since, last_audit_id
from tests.support.inbox import Mail, send

SUPPORT = "support@acme.example"
JOIN_SECONDS = 60
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _mcp_read(api: Api, secret: str, message_id: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "read_message", "arguments": {"message_id": message_id}}}
    return api.client.post("/mcp", json=body, headers={**MCP_HEADERS, "Authorization": f"Bearer {secret}"})


def _read_ok(api: Api, secret: str, message_id: str) -> None:
    assert api.call("GET", f"/api/messages/{message_id}", secret=secret).status_code == 200
    assert api.call("GET", "/api/messages", secret=secret, params={"limit": 5}).status_code == 200
    assert api.call("GET", "/api/messages/search", secret=secret, params={"q": "parcel"}).status_code == 200
    answer = _mcp_read(api, secret, message_id)
    assert answer.status_code == 200 and not answer.json()["result"].get("isError"), answer.text


def _refused_everywhere(api: Api, services: Any, secret: str, message_id: str, status: int, code: str,
                        reason: str) -> None:
    since = last_audit_id(services)
    assert_error(api.call("GET", f"/api/messages/{message_id}", secret=secret), status, code)
    assert_error(api.call("GET", "/api/messages", secret=secret), status, code)
    assert_error(api.call("GET", "/api/messages/search", secret=secret, params={"q": "parcel"}), status, code)
    assert_error(_mcp_read(api, secret, message_id), status, code)
    events = audit_since(services, since)
    assert [(e["action"], e["outcome"], e["details"]) for e in events] == [
        ("auth.denied", "denied", {"reason": reason})] * 4
    assert not [e for e in events if e["action"] == "message.read"]


def _served_token(api: Api, services: Any) -> tuple[str, str, str]:
    """A message and a reading token that has just been served every read route: (message id,
    token id, secret)."""
    message_id = send(services, Mail())
    token_id, secret = api.token(["messages:read", "messages:search"])
    _read_ok(api, secret, message_id)
    return message_id, token_id, secret


def test_a_token_revoked_right_after_a_served_read_is_refused_on_the_next_request(api, services):
    message_id, token_id, secret = _served_token(api, services)
    api.ok("DELETE", f"/api/tokens/{token_id}")
    _refused_everywhere(api, services, secret, message_id, 401, "unauthorized", "revoked")


def test_a_token_disabled_right_after_a_served_read_is_refused_and_works_again_once_enabled(api, services):
    message_id, token_id, secret = _served_token(api, services)
    api.ok("POST", f"/api/tokens/{token_id}/disable")
    _refused_everywhere(api, services, secret, message_id, 403, "forbidden", "token disabled")
    api.ok("POST", f"/api/tokens/{token_id}/enable")
    _read_ok(api, secret, message_id)


def test_an_account_disabled_right_after_a_served_read_is_refused_on_the_next_request(api, services, tenant):
    message_id = send(services, Mail())
    _read_ok(api, tenant.token, message_id)
    services.abuse.set_account_disabled(tenant.account["id"], True)
    _refused_everywhere(api, services, tenant.token, message_id, 403, "forbidden", "account disabled")


def test_a_read_is_answered_only_once_its_audit_event_is_committed(api, services, monkeypatch):
    message_id = send(services, Mail())
    writer = services.infra.audit_writer
    committing, release = threading.Event(), threading.Event()
    insert = writer._insert

    def held_commit(batch: list[Any]) -> None:
        if any(p.row["action"] == "message.read" for p in batch):
            committing.set()
            assert release.wait(JOIN_SECONDS)
        insert(batch)

    monkeypatch.setattr(writer, "_insert", held_commit)
    since = last_audit_id(services)
    answered: list[int] = []
    reader = threading.Thread(target=lambda: answered.append(
        api.call("GET", f"/api/messages/{message_id}").status_code))
    reader.start()
    assert committing.wait(JOIN_SECONDS)
    reader.join(0.2)  # the commit is held: the answer must not have left
    assert answered == [] and reader.is_alive()
    release.set()
    reader.join(JOIN_SECONDS)
    assert answered == [200]
    [event] = [e for e in audit_since(services, since) if e["action"] == "message.read"]
    assert (event["resource_id"], event["outcome"], event["interface"]) == (message_id, "ok", "api")


def test_the_read_routes_answer_the_services_dict_as_json(api, services, tenant):
    message_id = send(services, Mail(html="<p>Hello <b>there</b></p>"))
    caller = services.auth.authenticate(tenant.token, "api", "testclient", "testclient")
    response = api.call("GET", f"/api/messages/{message_id}")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(services.messages.read_message(caller, message_id)))


def test_the_startup_heap_is_frozen_out_of_the_garbage_collectors_scans(client):
    assert gc.get_freeze_count() > 0


# -- the size rules' shortcuts --------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


def _fit_item_by_item(items: list[Any], budget: int) -> list[Any]:
    used, kept = 0, []
    for item in items:
        used += views.json_size(item) + 1
        if kept and used > budget:
            break
        kept.append(item)
    return kept


def _headers_item_by_item(headers: list[list[str]]) -> tuple[list[list[str]], bool]:
    kept: list[list[str]] = []
    used, cut = 0, False
    for name, value in headers:
        item = [name, value[:views.MAX_HEADER_VALUE]]
        cut = cut or len(value) > views.MAX_HEADER_VALUE
        used += views.json_size(item)
        if used > views.MAX_HEADERS_BYTES:
            return kept, True
        kept.append(item)
    return kept, cut


@given(st.lists(st.dictionaries(st.sampled_from(["id", "subject", "snippet"]), _text, max_size=3), max_size=12),
       st.integers(min_value=0, max_value=3000))
def test_a_page_is_cut_where_counting_item_by_item_cuts_it(items, budget):
    assert views.fit(items, budget) == _fit_item_by_item(items, budget)


_header_value = st.one_of(_text, st.text(min_size=1900, max_size=2100), st.text(min_size=5000, max_size=6000))


@given(st.lists(st.tuples(st.sampled_from(["Subject", "Received", "X-Long"]), _header_value), max_size=12))
def test_headers_are_cut_where_counting_item_by_item_cuts_them(headers):
    listed = [list(h) for h in headers]
    assert views.headers_view(listed) == _headers_item_by_item(listed)
