"""`litemx messages list|search|read|attachment` and `litemx threads list|read` against a real
server on loopback (SPEC §1 step 5, §8): tables, --json, --html, downloads, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from tests.support.api import Api, audit_since
from tests.support.inbox import Mail, hosted, message_row, send
from tests.support.live import live_http

SUPPORT = "support@acme.example"
PDF = b"%PDF-1.4 not really\x00\xff"


# SQLite only: the CLI is a REST client, so the storage behind it adds nothing here; both
# databases are covered through the same routes by test_messages_api.py and test_search.py.
@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def mail(client, services, tenant) -> dict[str, str]:
    hosted(Api(client, tenant.token))
    first = send(services, Mail(subject="Lost parcel", text="Where is parcel 77812?\n\x1b[31mred\x1b[0m",
                                message_id="<p1@sender.example>",
                                html="<p>Where is <b>parcel</b><script>alert(1)</script></p>",
                                files=[("label.pdf", "application/pdf", PDF)]))
    reply = send(services, Mail(subject="Re: Lost parcel", text="Found it, thanks.", in_reply_to="<p1@sender.example>"))
    return {"first": first, "reply": reply, "thread": message_row(services, first)["thread_id"]}


@pytest.fixture
def cli(services, tenant, monkeypatch, tmp_path) -> Iterator:
    with live_http(services) as url:
        monkeypatch.setenv("LITEMX_URL", url)
        monkeypatch.setenv("LITEMX_TOKEN", tenant.token)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        runner = CliRunner()

        def run(*args: str, token: str | None = None):  # type: ignore[no-untyped-def]
            return runner.invoke(app, list(args), env={"LITEMX_TOKEN": token} if token else None)

        yield run


def test_messages_list_and_search_print_tables_and_json(cli, mail):
    table = cli("messages", "list", "--mailbox", SUPPORT)
    assert table.exit_code == 0, table.output
    assert "Lost parcel" in table.stdout and "alice@sender.example" in table.stdout
    listed = json.loads(cli("messages", "list", "--json").stdout)
    assert [m["id"] for m in listed["items"]] == [mail["reply"], mail["first"]]
    found = json.loads(cli("messages", "search", "parcel has:attachment", "--json").stdout)
    assert [m["id"] for m in found["items"]] == [mail["first"]] and "**parcel**" in found["items"][0]["snippet"]


def test_messages_read_prints_headers_verdicts_text_html_and_reads_on_at_an_offset(cli, mail, services):
    out = cli("messages", "read", mail["first"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert "Subject:  Lost parcel" in lines and any(line.startswith("Verdicts: spf=") for line in lines)
    assert "Where is parcel 77812?" in out.stdout and "label.pdf" in out.stdout
    assert "\x1b" not in out.stdout  # the message's escape codes never reach the terminal
    events = [e for e in audit_since(services, 0) if e["action"] == "message.read"]
    assert [(e["interface"], e["mailbox"]) for e in events] == [("cli", SUPPORT)]
    html = cli("messages", "read", mail["first"], "--html")
    assert html.exit_code == 0 and "<b>parcel</b>" in html.stdout
    assert "<script" not in html.stdout and "alert(1)" not in html.stdout
    first = cli("messages", "read", mail["first"], "--max-chars", "9")
    assert "Where is " in first.stdout and "--offset 9" in first.stdout
    rest = json.loads(cli("messages", "read", mail["first"], "--offset", "9", "--json").stdout)
    assert rest["text"]["content"].startswith("parcel 77812?")


def test_messages_attachment_saves_the_exact_bytes(cli, mail, tmp_path):
    body = json.loads(cli("messages", "read", mail["first"], "--json").stdout)
    (att,) = body["attachments"]
    target = tmp_path / "label.pdf"
    out = cli("messages", "attachment", mail["first"], att["id"], "--out", str(target))
    assert out.exit_code == 0, out.output
    assert Path(target).read_bytes() == PDF
    missing = cli("messages", "attachment", mail["first"], "att_nope", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 5 and missing.stderr.startswith("error: not_found:")
    assert not (tmp_path / "x").exists()


def test_threads_list_and_read_show_the_conversation_oldest_first(cli, mail):
    listing = cli("threads", "list")
    assert listing.exit_code == 0 and mail["thread"] in listing.stdout
    out = cli("threads", "read", mail["thread"])
    assert out.exit_code == 0, out.output
    assert out.stdout.index("Where is parcel") < out.stdout.index("Found it, thanks.")
    data = json.loads(cli("threads", "read", mail["thread"], "--json").stdout)
    assert [m["id"] for m in data["messages"]] == [mail["first"], mail["reply"]]


def test_errors_are_one_line_with_the_code(cli, mail, client, tenant):
    assert cli("messages", "read", "msg_nope").stderr.strip() == "error: not_found: message msg_nope not found"
    bad = cli("messages", "search", "colour:red")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: invalid_request:") and "[field: q]" in bad.stderr
    _, secret = Api(client, tenant.token).token(["messages:search"], ["*"])
    refused = cli("threads", "list", token=secret)
    assert refused.exit_code == 4 and "messages:read" in refused.stderr


def test_crlf_mail_reads_without_replacement_marks(cli, mail, services):
    raw = (b"From: Bob <bob@sender.example>\r\nTo: support@acme.example\r\nSubject: Line endings\r\n"
           b"Message-ID: <crlf@sender.example>\r\n\r\nFirst line.\r\nSecond line.\r\n")
    from tests.support.inbox import deliver

    [message_id] = deliver(services, raw, SUPPORT)
    out = cli("messages", "read", message_id)
    assert out.exit_code == 0, out.output
    assert "First line.\nSecond line." in out.stdout and "\ufffd" not in out.stdout
