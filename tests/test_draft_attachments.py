"""Attachments on drafts and direct sends (SPEC §6 "text and HTML bodies, attachments"): validated,
stored as content-addressed blobs, sent as MIME parts inside the DKIM signature, read back from
the sent message, and their blobs freed only when nothing references them any more."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from litemx.adapters.outbound import SmtpRelayTransport
from litemx.storage.schema import attachments, draft_attachments, drafts, messages
from tests.support.api import assert_error, bearer
from tests.support.live import live_http
from tests.support.sending import (
    MAILBOX,
    SmtpSink,
    audit_actions,
    count,
    hosted,
    outbound_count,
    receive,
    run_worker,
    verify_dkimpy,
)


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, red) PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png()
NOTES = "Order 1234\r\nShipped: yes\r\nÜmlaut line\r\n".encode()


def _file(filename: str, content_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"filename": filename, "content_type": content_type,
            "content_base64": base64.b64encode(data).decode("ascii"), **extra}


def _blob_files(services) -> set[str]:
    root = Path(services.infra.blobs.root)
    return {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _received_files(raw: bytes) -> list[tuple[str | None, str, str | None, bytes]]:
    msg = message_from_bytes(raw, policy=policy.default)
    return [(part.get_filename(), part.get_content_type(), part.get_content_disposition(),
             part.get_payload(decode=True)) for part in msg.walk()
            if not part.is_multipart() and part.get_content_disposition() in ("attachment", "inline")]


@pytest.fixture
def caller(services, tenant, dns):
    return hosted(services, tenant.token, dns, MAILBOX, "billing@project.dev")


@pytest.fixture
def h(tenant):
    return bearer(tenant.token)


@pytest.fixture
def relay(services):
    with SmtpSink() as sink:
        services.outbound.transport = SmtpRelayTransport("127.0.0.1", sink.port, "mx.litemx.test", timeout=10)
        yield sink


def test_a_draft_with_a_text_file_and_a_png_is_sent_signed_and_reads_back(services, client, caller, h, relay,
                                                                          dns):
    made = client.post("/api/drafts", headers=h, json={
        "mailbox": MAILBOX, "to": ["Bob <bob@example.net>"], "subject": "Your order", "text": "Files attached.",
        "html": "<p>Files attached.</p>",
        "attachments": [_file("notes.txt", "text/plain", NOTES), _file("photo.png", "image/png", PNG)]})
    assert made.status_code == 201, made.text
    draft = made.json()
    assert [(a["filename"], a["content_type"], a["size"], a["disposition"]) for a in draft["attachments"]] == [
        ("notes.txt", "text/plain", len(NOTES), "attachment"), ("photo.png", "image/png", len(PNG), "attachment")]
    assert all(set(a) == {"id", "filename", "content_type", "size", "content_id", "disposition"}
               for a in draft["attachments"])  # metadata only, never the bytes
    assert client.get(f"/api/drafts/{draft['id']}", headers=h).json() == draft
    [listed] = client.get("/api/drafts", headers=h).json()["items"]
    assert listed["attachments"] == draft["attachments"]

    sent = client.post(f"/api/drafts/{draft['id']}/send", headers=h)
    assert sent.status_code == 202, sent.text
    sent = sent.json()
    assert [a["filename"] for a in sent["attachments"]] == ["notes.txt", "photo.png"]
    assert run_worker(services) == 1
    [got] = relay.received
    top = message_from_bytes(got.data, policy=policy.default)
    assert top.get_content_type() == "multipart/mixed"
    assert top.get_body(("plain",)).get_content().strip() == "Files attached."
    assert top.get_body(("html",)).get_content().strip() == "<p>Files attached.</p>"
    assert _received_files(got.data) == [("notes.txt", "text/plain", "attachment", NOTES),
                                         ("photo.png", "image/png", "attachment", PNG)]
    assert verify_dkimpy(got.data, dns) and all(verify_dkimpy(got.data, dns))  # signs the whole message

    view = client.get(f"/api/messages/{sent['id']}", headers=h).json()
    assert view["direction"] == "outbound" and view["has_attachments"] is True
    assert [(a["filename"], a["content_type"], a["size"]) for a in view["attachments"]] == [
        ("notes.txt", "text/plain", len(NOTES)), ("photo.png", "image/png", len(PNG))]
    downloaded = client.get(view["attachments"][1]["download_url"], headers=h)
    assert downloaded.status_code == 200 and downloaded.content == PNG

    # The sent draft keeps its metadata; the blob references moved to the message's rows.
    after = client.get(f"/api/drafts/{draft['id']}", headers=h).json()
    assert after["status"] == "sent" and after["attachments"] == draft["attachments"]
    with services.infra.db.read() as conn:
        assert conn.execute(select(draft_attachments.c.blob_key)).scalars().all() == [None, None]
        keys = conn.execute(select(attachments.c.blob_key).join(messages, messages.c.id == attachments.c.message_id)
                            .where(messages.c.id == sent["id"]).order_by(attachments.c.position)).scalars().all()
    assert [services.infra.blobs.get(k) for k in keys] == [NOTES, PNG]


def test_a_non_ascii_filename_and_an_inline_image_round_trip(services, client, caller, h, relay, dns):
    name = "Résumé – Q4 ☃.pdf"
    sent = client.post("/api/send", headers=h, json={
        "mailbox": MAILBOX, "to": ["bob@example.net"], "subject": "CV", "text": "See the logo.",
        "html": '<p><img src="cid:logo@project.dev"> See the logo.</p>',
        "attachments": [_file(name, "application/pdf", b"%PDF-1.4 fake"),
                        _file("logo.png", "image/png", PNG, content_id="<logo@project.dev>", inline=True)]})
    assert sent.status_code == 202, sent.text
    run_worker(services)
    [got] = relay.received
    assert b"filename*=utf-8''R%C3%A9sum%C3%A9" in got.data.replace(b"\r\n ", b" ")  # RFC 2231, never raw 8-bit
    assert max(got.data) < 0x80  # the whole message stays 7-bit
    assert _received_files(got.data) == [("logo.png", "image/png", "inline", PNG),
                                         (name, "application/pdf", "attachment", b"%PDF-1.4 fake")]
    msg = message_from_bytes(got.data, policy=policy.default)
    [related] = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]
    assert list(related.iter_parts())[1]["Content-ID"] == "<logo@project.dev>"
    assert all(verify_dkimpy(got.data, dns))
    view = client.get(f"/api/messages/{sent.json()['id']}", headers=h).json()
    assert [(a["filename"], a["disposition"], a["content_id"]) for a in view["attachments"]] == [
        (name, "attachment", None), ("logo.png", "inline", "logo@project.dev")]
    assert view["has_attachments"] is True


BAD = [
    ({"content_base64": "not base64!"}, 422, "invalid_request", "attachments[0].content_base64"),
    ({"filename": "evil.txt\r\nX-Injected: yes"}, 422, "invalid_request", "attachments[0].filename"),
    ({"filename": "../../etc/passwd"}, 422, "invalid_request", "attachments[0].filename"),
    ({"filename": "a\x00b"}, 422, "invalid_request", None),  # NUL is refused before any handler runs
    ({"content_type": "text"}, 422, "invalid_request", "attachments[0].content_type"),
    ({"content_type": "multipart/mixed"}, 422, "invalid_request", "attachments[0].content_type"),
    ({"inline": True}, 422, "invalid_request", "attachments[0].content_id"),
    ({"content_id": "no spaces allowed@x"}, 422, "invalid_request", "attachments[0].content_id"),
]


@pytest.mark.parametrize(("change", "status", "code", "field"), BAD)
def test_a_bad_attachment_is_refused_naming_the_field_and_nothing_is_stored(services, client, caller, h, change,
                                                                            status, code, field):
    blobs_before = _blob_files(services)
    attachment = {**_file("ok.txt", "text/plain", b"fine"), **change}
    for method, path, extra in (("POST", "/api/drafts", {"mailbox": MAILBOX}),
                                ("POST", "/api/send", {"mailbox": MAILBOX, "to": ["bob@example.net"]})):
        error = assert_error(client.request(method, path, headers=h, json={**extra, "attachments": [attachment]}),
                             status, code)
        if field:
            assert error["details"]["field"] == field
    assert count(services, drafts) == 0 and count(services, draft_attachments) == 0
    assert outbound_count(services) == 0 and _blob_files(services) == blobs_before


def test_too_large_attachments_are_payload_too_large_and_a_patch_keeps_the_old_list(services, settings, client,
                                                                                      caller, h):
    limit = 64 * 1024
    object.__setattr__(services.infra, "settings", services.infra.settings.with_(max_message_bytes=limit))
    kept = client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX,
                                                        "attachments": [_file("a.txt", "text/plain", b"a")]}).json()
    blobs_before = _blob_files(services)
    one_big = {"mailbox": MAILBOX, "attachments": [_file("big.bin", "application/octet-stream", b"x" * limit)]}
    error = assert_error(client.post("/api/drafts", headers=h, json=one_big), 413, "payload_too_large")
    assert error["details"]["field"] == "attachments[0].content_base64" and error["details"]["limit"] == limit
    two = [_file(f"{i}.bin", "application/octet-stream", bytes([i]) * 30_000) for i in range(2)]
    error = assert_error(client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX, "attachments": two}), 413,
                         "payload_too_large")
    assert error["details"]["field"] == "attachments"
    error = assert_error(client.patch(f"/api/drafts/{kept['id']}", headers=h, json={"attachments": two}), 413,
                         "payload_too_large")
    error = assert_error(client.post("/api/send", headers=h, json={**one_big, "to": ["bob@example.net"]}), 413,
                         "payload_too_large")
    assert client.get(f"/api/drafts/{kept['id']}", headers=h).json()["attachments"] == kept["attachments"]
    assert count(services, drafts) == 1 and count(services, draft_attachments) == 1
    assert _blob_files(services) == blobs_before and outbound_count(services) == 0
    assert audit_actions(services, "send.") == ["send.blocked"]


def test_the_draft_routes_take_bodies_past_the_default_json_limit(services, client, caller, h):
    big = bytes(range(256)) * 8192  # 2 MiB of file: about 2.7 MB of JSON, over the 1 MiB default
    made = client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX,
                                                        "attachments": [_file("big.bin", "application/zip", big)]})
    assert made.status_code == 201, made.text
    changed = client.patch(f"/api/drafts/{made.json()['id']}", headers=h,
                           json={"attachments": [_file("big2.bin", "application/zip", big[::-1])]})
    assert changed.status_code == 200, changed.text
    over = "A" * int(services.infra.settings.max_message_bytes * 1.6)
    assert_error(client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX, "attachments": [
        {"filename": "x", "content_type": "a/b", "content_base64": over}]}), 413, "payload_too_large")


def test_replacing_deleting_and_purging_free_only_unshared_blobs(services, client, caller, h):
    a, b, c = (_file(f"{n}.txt", "text/plain", n.encode() * 10) for n in "abc")
    first = client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX, "attachments": [a, b]}).json()
    second = client.post("/api/drafts", headers=h, json={"mailbox": MAILBOX, "attachments": [a]}).json()
    blobs = services.infra.blobs
    key = {n: hashlib.sha256(n.encode() * 10).hexdigest() for n in "abc"}  # content-addressed keys
    assert all(blobs.exists(key[n]) for n in "ab") and not blobs.exists(key["c"])
    changed = client.patch(f"/api/drafts/{first['id']}", headers=h, json={"attachments": [c]}).json()
    assert [x["filename"] for x in changed["attachments"]] == ["c.txt"]
    assert blobs.exists(key["a"]) and not blobs.exists(key["b"]) and blobs.exists(key["c"])
    assert client.patch(f"/api/drafts/{first['id']}", headers=h, json={"subject": "s"}).json()["attachments"] == \
        changed["attachments"]  # other fields leave the list alone
    client.delete(f"/api/drafts/{first['id']}", headers=h)
    assert not blobs.exists(key["c"]) and blobs.exists(key["a"])  # the second draft still holds a
    assert count(services, draft_attachments) == 1
    purged = client.post(f"/api/mailboxes/{MAILBOX}/purge", headers=h)
    assert purged.status_code == 200, purged.text
    assert purged.json()["counts"]["drafts_deleted"] == 1
    assert not blobs.exists(key["a"]) and count(services, draft_attachments) == 0
    assert_error(client.get(f"/api/drafts/{second['id']}", headers=h), 404, "not_found")
    # Deleting a mailbox (allowed once it holds no messages) takes its drafts' files along.
    key_d = hashlib.sha256(b"d" * 10).hexdigest()  # the blob store's key: the content's SHA-256
    made = client.post("/api/drafts", headers=h, json={"mailbox": "billing@project.dev",
                                                        "attachments": [_file("d.txt", "text/plain", b"d" * 10)]})
    assert made.status_code == 201 and blobs.exists(key_d)
    assert client.delete("/api/mailboxes/billing@project.dev", headers=h).status_code == 200
    assert not blobs.exists(key_d) and count(services, draft_attachments) == 0


def test_a_reply_draft_starts_without_the_parents_attachments(services, client, caller, h):
    parent = receive(services, (
        b"From: alice@sender.example\r\nTo: support@project.dev\r\nSubject: Invoice\r\n"
        b"Message-ID: <i1@sender.example>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"See attached.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=i.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"))
    reply = client.post(f"/api/messages/{parent}/reply", headers=h, json={"text": "Thanks."}).json()
    assert reply["attachments"] == []


def test_the_cli_attaches_files_to_drafts_and_direct_sends(services, caller, tenant, monkeypatch, tmp_path, relay):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "notes.txt").write_bytes(NOTES)
    (tmp_path / "photo.png").write_bytes(PNG)
    (tmp_path / "data.bin.gz").write_bytes(zlib.compress(b"x"))
    runner = CliRunner()
    with live_http(services) as url:
        env = {"LITEMX_URL": url, "LITEMX_TOKEN": tenant.token}

        def cli(*args: str):
            out = runner.invoke(app, [*args, "--json"], env=env)
            assert out.exit_code == 0, out.output
            return json.loads(out.stdout)

        draft = cli("drafts", "create", "--mailbox", MAILBOX, "--to", "bob@example.net", "--subject", "Files",
                    "--body", "Here.", "--attach", str(tmp_path / "notes.txt"), "--attach", str(tmp_path / "photo.png"))
        assert [(a["filename"], a["content_type"], a["size"]) for a in draft["attachments"]] == [
            ("notes.txt", "text/plain", len(NOTES)), ("photo.png", "image/png", len(PNG))]
        updated = cli("drafts", "update", draft["id"], "--attach", str(tmp_path / "data.bin.gz"))
        assert [(a["filename"], a["content_type"]) for a in updated["attachments"]] == [
            ("data.bin.gz", "application/gzip")]
        sent = cli("send", "--from", MAILBOX, "--to", "bob@example.net", "--subject", "Photo", "--body", "Look.",
                   "--attach", str(tmp_path / "photo.png"))
        assert [a["filename"] for a in sent["attachments"]] == ["photo.png"]
        missing = runner.invoke(app, ["send", "--from", MAILBOX, "--to", "bob@example.net", "--subject", "x",
                                      "--attach", str(tmp_path / "nope.pdf")], env=env)
        assert missing.exit_code == 2
    run_worker(services)
    [got] = relay.received
    assert _received_files(got.data) == [("photo.png", "image/png", "attachment", PNG)]


def test_the_mcp_create_draft_tool_takes_attachments_within_its_schema(services, tenant):
    from tests.support.mcp_client import SUPPORT, build_world, call, http_session, refused, run

    world = build_world(services, tenant.token)
    token = world.token(["drafts:write"], [SUPPORT])

    async def scenario() -> tuple[dict, dict, dict]:
        async with http_session(url, token) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            schema = tools["create_draft"].input_schema
            made = await call(s, "create_draft", mailbox=SUPPORT, to=["bob@example.net"], subject="Logo", text="x",
                              attachments=[_file("logo.png", "image/png", PNG)])
            bad = await refused(s, "create_draft", mailbox=SUPPORT, to=["bob@example.net"], subject="x", text="y",
                                attachments=[_file("a\r\nb.txt", "text/plain", b"x")])
            return schema, made, bad

    with live_http(services) as url:
        schema, made, bad = run(scenario)
    files = schema["properties"]["attachments"]
    assert files["anyOf"][0]["maxItems"] == 10
    assert [(a["content_type"], a["size"]) for a in made["draft"]["attachments"]] == [("image/png", len(PNG))]
    assert bad["code"] == "invalid_request" and count(services, draft_attachments) == 1
