"""Mail for read-side tests: build messages, deliver them through the real inbound pipeline
(accept + process_due, exactly what the MX does after `250`), and read the stored rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from litemx.app import Services
from litemx.core.ids import new_id
from litemx.storage import directory_repo
from litemx.storage.schema import attachments, messages
from tests.support.api import Api


@dataclass
class Mail:
    """A message to build; `html`, `files` and threading headers are optional."""

    subject: str = "Question about my order"
    text: str = "Hello, where is my parcel?"
    sender: str = "Alice Example <alice@sender.example>"
    to: str = "support@acme.example"
    cc: str | None = None
    html: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (filename, content type, bytes)
    extra_headers: dict[str, str] = field(default_factory=dict)

    def build(self) -> bytes:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, self.to, self.subject
        for name, value in (("Cc", self.cc), ("Message-ID", self.message_id), ("In-Reply-To", self.in_reply_to),
                            ("References", self.references), *self.extra_headers.items()):
            if value is not None:
                msg[name] = value
        msg.set_content(self.text)
        if self.html is not None:
            msg.add_alternative(self.html, subtype="html")
        for filename, ctype, data in self.files:
            maintype, subtype = ctype.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return msg.as_bytes()


def deliver(services: Services, raw: bytes, *recipients: str, mail_from: str = "alice@sender.example",
            client_ip: str = "192.0.2.10") -> list[str]:
    """Route, accept and process one message; returns the created message ids (in mailbox order)."""
    routes = [services.inbound.route_recipient(r) for r in recipients]
    assert all(r.accepted for r in routes), [(r.recipient, r.reject) for r in routes]
    queue_id = services.inbound.accept(raw, mail_from, routes, client_ip=client_ip, helo="client.example",
                                       source="smtp")
    for _ in range(10):
        if not services.inbound.process_due():
            break
    with services.infra.db.read() as conn:
        rows = conn.execute(select(messages.c.id).where(messages.c.queue_id == queue_id)
                            .order_by(messages.c.seq)).all()
    return [r[0] for r in rows]


def send(services: Services, mail: Mail, *recipients: str) -> str:
    """Deliver `mail` to its To address (or `recipients`) and return the one message id."""
    ids = deliver(services, mail.build(), *(recipients or (mail.to,)))
    assert len(ids) == 1, ids
    return ids[0]


def message_row(services: Services, message_id: str) -> dict[str, Any]:
    with services.infra.db.read() as conn:
        return dict(conn.execute(select(messages).where(messages.c.id == message_id)).mappings().one())


def attachment_rows(services: Services, message_id: str) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        stmt = select(attachments).where(attachments.c.message_id == message_id).order_by(attachments.c.position)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def hosted(api: Api, domain: str = "acme.example", *locals_: str) -> list[str]:
    """Add a domain and mailboxes (default support@ and billing@) to the API caller's account;
    returns the addresses.

    Written straight to the directory tables: the read-side tests need the rows, not the
    domain-creation path (whose DKIM key generation would dominate their run time), which
    tests/test_api_directory.py covers.
    """
    services: Services = api.client.app.state.services  # type: ignore[attr-defined]
    account_id = api.me()["account"]["id"]
    addresses = [f"{local}@{domain}" for local in (locals_ or ("support", "billing"))]
    now = services.infra.clock.now()
    with services.infra.db.write() as conn:
        domain_id = new_id("dom")
        directory_repo.add_domain(conn, {
            "id": domain_id, "account_id": account_id, "name": domain, "mail_from": f"bounce.{domain}",
            "inbound_ready": False, "outbound_ready": False, "provider_approved": False, "dmarc_rua": None,
            "last_checked_at": None, "disabled_at": None, "created_at": now})
        for address in addresses:
            directory_repo.add_mailbox(conn, {
                "id": new_id("mbx"), "account_id": account_id, "domain_id": domain_id, "address": address,
                "display_name": None, "retention_days": 60, "legal_hold": False, "disabled_at": None,
                "created_at": now})
    return addresses
