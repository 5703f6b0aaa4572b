"""A first end-to-end check of the MX: smtplib -> listener -> queue -> messages row."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import func, select

from litemx.storage.schema import messages
from tests.support.live import live_smtp, wait_for

MESSAGE = b"""From: Alice <alice@sender.example>\r
To: support@project.dev\r
Subject: Hello there\r
Message-ID: <m1@sender.example>\r
\r
Can you help me with my order?\r
"""


@pytest.fixture
def hosted(services, tenant):
    from tests.conftest import Tenant  # noqa: F401

    from litemx.service.principal import Caller
    caller = services.auth.authenticate(tenant.token, "api", None, None)
    services.directory.create_domain(caller, "project.dev")
    services.directory.create_mailbox(caller, "support@project.dev")
    return caller


def _count(services) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


def test_a_message_sent_over_smtp_lands_in_the_mailbox(services, hosted):
    with live_smtp(services) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            code, caps = smtp.ehlo("client.example")
            assert code == 250 and b"PIPELINING" in caps and b"SIZE" in caps
            refused = smtp.sendmail("alice@sender.example", ["support@project.dev"], MESSAGE)
            assert refused == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
                smtp.sendmail("alice@sender.example", ["nobody@project.dev"], MESSAGE)
            assert err.value.recipients["nobody@project.dev"][0] == 550
            with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
                smtp.sendmail("alice@sender.example", ["someone@elsewhere.example"], MESSAGE)
            assert err.value.recipients["someone@elsewhere.example"][1].startswith(b"5.7.1")
        wait_for(lambda: _count(services) == 1)
    with services.infra.db.read() as conn:
        row = conn.execute(select(messages)).mappings().one()
    assert row["subject"] == "Hello there" and row["mailbox"] == "support@project.dev"
    assert row["from_addr"] == "alice@sender.example" and "order" in row["text_body"]


def test_the_delivered_message_carries_verdicts_and_is_indexed(services, hosted):
    from sqlalchemy import text

    with live_smtp(services) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.sendmail("alice@sender.example", ["support@project.dev"], MESSAGE)
        wait_for(lambda: _count(services) == 1)
    with services.infra.db.read() as conn:
        row = conn.execute(select(messages)).mappings().one()
        if conn.dialect.name == "sqlite":
            hits = conn.execute(text("SELECT rowid FROM message_fts WHERE message_fts MATCH '\"order\"'")).all()
        else:
            hits = conn.execute(text("SELECT seq FROM message_fts WHERE doc @@ plainto_tsquery('simple', 'order')"))
            hits = hits.all()
    assert [h[0] for h in hits] == [row["seq"]]
    assert row["auth"]["spf"]["result"] in {"none", "temperror"}
    assert row["auth"]["dmarc"]["result"] == "none"
