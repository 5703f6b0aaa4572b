"""Helpers for the retention, abuse and export tests: a hosted account, mail ingested at chosen
times through the real inbound pipeline, and direct looks at the index, rows and blobs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, text

from litemx.app import Services
from litemx.core.ids import new_id
from litemx.service.principal import Caller
from litemx.storage import directory_repo
from litemx.storage.schema import attachments, audit_events, messages, threads
from tests.support.clock import FakeClock
from tests.support.inbox import Mail, deliver

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
DOMAIN = "acme.example"
SUPPORT = f"support@{DOMAIN}"
SALES = f"sales@{DOMAIN}"
LEGAL = f"legal@{DOMAIN}"


def host(services: Services, token: str, domain: str = DOMAIN, locals_: tuple[str, ...] = ("support", "sales",
                                                                                             "legal")) -> Caller:
    """The founder's caller, with `domain` and its mailboxes written straight to the directory
    (domain creation's DKIM key generation would dominate these tests; test_api_directory covers it)."""
    caller = services.auth.authenticate(token, "api", None, None)
    now = services.infra.clock.now()
    with services.infra.db.write() as conn:
        domain_id = new_id("dom")
        directory_repo.add_domain(conn, {
            "id": domain_id, "account_id": caller.principal.account_id, "name": domain, "mail_from": f"bounce.{domain}",
            "inbound_ready": False, "outbound_ready": False, "provider_approved": False, "dmarc_rua": None,
            "last_checked_at": None, "disabled_at": None, "created_at": now})
        for local in locals_:
            directory_repo.add_mailbox(conn, {
                "id": new_id("mbx"), "account_id": caller.principal.account_id, "domain_id": domain_id,
                "address": f"{local}@{domain}", "display_name": None, "retention_days": 60, "legal_hold": False,
                "disabled_at": None, "created_at": now})
    return caller


def ingest(services: Services, clock: FakeClock, when: datetime, mail: Mail, *recipients: str) -> list[str]:
    """Deliver `mail` as if it arrived at `when` (the MX path: accept + process)."""
    clock.current = when
    return deliver(services, mail.build(), *(recipients or (mail.to,)))


def days(n: float) -> timedelta:
    return timedelta(days=n)


def row(services: Services, message_id: str) -> dict[str, Any] | None:
    with services.infra.db.read() as conn:
        found = conn.execute(select(messages).where(messages.c.id == message_id)).mappings().first()
    return dict(found) if found else None


def attachment_rows(services: Services, message_id: str) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        stmt = select(attachments).where(attachments.c.message_id == message_id).order_by(attachments.c.position)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def blob_keys(services: Services, message_id: str) -> set[str]:
    """The raw message's and the attachments' blob keys, as stored now."""
    found = {a["blob_key"] for a in attachment_rows(services, message_id) if a["blob_key"]}
    current = row(services, message_id)
    if current and current["raw_key"]:
        found.add(current["raw_key"])
    return found


def fts_hits(services: Services, word: str) -> list[int]:
    """Seqs the full-text index finds for one word (queried directly, both backends)."""
    with services.infra.db.read() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q"), {"q": f'"{word}"'})
        else:
            rows = conn.execute(text("SELECT seq FROM message_fts WHERE doc @@ plainto_tsquery('simple', :q)"),
                                {"q": word})
        return sorted(r[0] for r in rows)


def fts_is_consistent(services: Services) -> bool:
    """SQLite's FTS5 integrity check (an external-content index corrupts on a bad 'delete')."""
    with services.infra.db.write() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("INSERT INTO message_fts(message_fts, rank) VALUES('integrity-check', 1)"))
        else:
            orphans = conn.execute(text("SELECT count(*) FROM message_fts f LEFT JOIN messages m ON m.seq = f.seq "
                                        "WHERE m.seq IS NULL")).scalar_one()
            assert orphans == 0
    return True


def events(services: Services, action: str, account_id: str | None = None) -> list[dict[str, Any]]:
    with services.infra.db.read() as conn:
        stmt = select(audit_events).where(audit_events.c.action == action).order_by(audit_events.c.id)
        if account_id is not None:
            stmt = stmt.where(audit_events.c.account_id == account_id)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def count(services: Services, table: Any, *conds: Any) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*conds)).scalar_one())


def thread_count(services: Services) -> int:
    return count(services, threads)
