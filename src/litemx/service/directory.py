"""Domains and mailboxes (SPEC §2, §4): create, list, show, delete, retention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from litemx.core.addresses import Address, parse_address, parse_domain
from litemx.core.ids import new_id
from litemx.errors import Conflict, Forbidden, invalid_field
from litemx.service import blob_refs, render
from litemx.service.base import ServiceBase, not_found, operation
from litemx.service.principal import Caller
from litemx.storage import directory_repo as repo
from litemx.storage import retention_repo
from litemx.storage.pagination import page

DEFAULT_RETENTION_DAYS = 60
MAX_RETENTION_DAYS = 3650


def address_field(value: str, field: str) -> Address:
    """Raises: InvalidRequest naming the field."""
    try:
        return parse_address(value)
    except ValueError as exc:
        raise invalid_field(field, f"{value!r} is not a valid address: {exc}") from None


def dmarc_report_field(value: str, field: str) -> str:
    """A DMARC aggregate-report address (RFC 7489 §6.3 `rua=mailto:`), normalised.

    Raises: InvalidRequest naming the field when it is not an address, or its local part is not
        ASCII (it is published in DNS as a mailto: URI).
    """
    addr = address_field(value, field)
    if not addr.local.isascii():
        raise invalid_field(field, f"{value!r}: a DMARC report address needs an ASCII local part "
                                   "(it is published in DNS as a mailto: URI)")
    return addr.address


DomainCreatedHook = Callable[[Connection, dict[str, Any]], None]


class DirectoryService(ServiceBase):
    # Set by the composition root (app.py): runs inside create_domain's transaction, so a domain
    # never exists without its DKIM keys.
    on_domain_created: DomainCreatedHook | None = None

    # -- domains ---------------------------------------------------------------------------
    @operation("domains.create")
    def create_domain(self, caller: Caller, name: str, dmarc_report: str | None = None) -> dict[str, Any]:
        """`dmarc_report`: the optional DMARC aggregate-report address (the plan's `rua=`).

        Raises: InvalidRequest (naming name or dmarc_report), Forbidden (needs an all-mailbox
            grant), Conflict.
        """
        try:
            name = parse_domain(name)
        except ValueError as exc:
            raise invalid_field("name", str(exc)) from None
        rua = None if dmarc_report is None else dmarc_report_field(dmarc_report, "dmarc_report")
        _require_all_mailboxes(caller, "adding a domain")
        row = {"id": new_id("dom"), "account_id": caller.principal.account_id, "name": name,
               "mail_from": f"bounce.{name}", "inbound_ready": False, "outbound_ready": False,
               "provider_approved": False, "dmarc_rua": rua, "last_checked_at": None, "disabled_at": None,
               "created_at": self.clock.now()}
        with self.db.write() as conn:
            if repo.domain_by_name(conn, name) is not None:
                raise Conflict(f"the domain {name} is already added on this instance", {"field": "name"})
            repo.add_domain(conn, row)
            if self.on_domain_created is not None:
                self.on_domain_created(conn, row)
            self.audit(conn, caller, "domain.create", resource_type="domain", resource_id=name,
                       details={"dmarc_report": rua} if rua else None)
        return render.domain(row)

    @operation("domains.list")
    def list_domains(self, caller: Caller, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        p = page(limit, cursor, str)
        with self.db.read() as conn:
            names = None if caller.principal.all_mailboxes else _granted_domains(caller)
            result = repo.list_domains(conn, caller.principal.account_id, p, names)
        self.audit_read(caller, "domain.list", resource_type="domain", details={"count": len(result.items)})
        return {"items": [render.domain(r) for r in result.items], "next_cursor": result.next_cursor}

    def visible_domain(self, conn: Connection, caller: Caller, name: str) -> dict[str, Any]:
        """The caller's domain by name; Raises: NotFound when absent, elsewhere or not granted."""
        try:
            name = parse_domain(name)
        except ValueError:
            raise not_found("domain", name) from None
        row = repo.domain_by_name(conn, name)
        p = caller.principal
        if row is None or row["account_id"] != p.account_id:
            raise not_found("domain", name)
        if not p.all_mailboxes and name not in _granted_domains(caller):
            raise not_found("domain", name, grant_denied=True)
        return row

    # -- mailboxes -------------------------------------------------------------------------
    @operation("mailboxes.create")
    def create_mailbox(self, caller: Caller, address: str, display_name: str | None = None) -> dict[str, Any]:
        """Raises: InvalidRequest (bad address, foreign domain, '+' in local part), Conflict, NotFound."""
        addr = address_field(address, "address")
        if "+" in addr.local:
            raise invalid_field("address", "'+' is reserved for plus-addressing (support+tag@ reaches support@)")
        self.require_mailbox(caller, addr.address)
        with self.db.write() as conn:
            domain = self._owned_domain(conn, caller, addr, "address")
            _ensure_address_free(conn, addr.address)
            row = {"id": new_id("mbx"), "account_id": caller.principal.account_id, "domain_id": domain["id"],
                   "address": addr.address, "display_name": _display_name(display_name),
                   "retention_days": DEFAULT_RETENTION_DAYS, "legal_hold": False, "disabled_at": None,
                   "created_at": self.clock.now()}
            repo.add_mailbox(conn, row)
            self.audit(conn, caller, "mailbox.create", resource_type="mailbox", resource_id=row["id"],
                       mailbox=addr.address)
        return render.mailbox(row)

    @operation("mailboxes.list")
    def list_mailboxes(self, caller: Caller, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        p = page(limit, cursor, str)
        only = None if caller.principal.all_mailboxes else caller.principal.grants
        with self.db.read() as conn:
            result = repo.list_mailboxes(conn, caller.principal.account_id, p, only)
        self.audit_read(caller, "mailbox.list", resource_type="mailbox", details={"count": len(result.items)})
        return {"items": [render.mailbox(r) for r in result.items], "next_cursor": result.next_cursor}

    @operation("mailboxes.show")
    def show_mailbox(self, caller: Caller, address: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = self.visible_mailbox(conn, caller, address)
        self.audit_read(caller, "mailbox.read", resource_type="mailbox", resource_id=row["id"],
                        mailbox=row["address"])
        return render.mailbox(row)

    @operation("mailboxes.delete")
    def delete_mailbox(self, caller: Caller, address: str) -> dict[str, Any]:
        with self.db.write() as conn:
            row = self.visible_mailbox(conn, caller, address)
            if repo.mailbox_has_messages(conn, row["id"]):
                # Deleting would drop mail silently (and leave blobs and index entries behind):
                # the owner exports and purges first, each an explicit, audited step.
                raise Conflict(f"{row['address']} still holds messages; export and purge it first "
                               "(litemx mailboxes export / purge)", {"reason": "mailbox_not_empty"})
            # Its drafts go with it (FK cascade); their attachment blobs only when nothing else holds them.
            draft_keys = retention_repo.delete_mailbox_draft_attachments(conn, row["id"])
            repo.delete_mailbox(conn, row["id"])
            blob_refs.delete_unreferenced(conn, self.infra.blobs, draft_keys)
            self.audit(conn, caller, "mailbox.delete", resource_type="mailbox", resource_id=row["id"],
                       mailbox=row["address"])
        return {"deleted": True, "address": row["address"]}

    @operation("mailboxes.retention_get")
    def get_retention(self, caller: Caller, address: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = self.visible_mailbox(conn, caller, address)
        self.audit_read(caller, "retention.read", resource_type="mailbox", resource_id=row["id"],
                        mailbox=row["address"])
        return _retention(row)

    @operation("mailboxes.retention_set")
    def set_retention(self, caller: Caller, address: str, days: int) -> dict[str, Any]:
        """Raises: InvalidRequest when days is outside 1..3650."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
            raise invalid_field("days", f"days must be a whole number from 1 to {MAX_RETENTION_DAYS}")
        with self.db.write() as conn:
            row = self.visible_mailbox(conn, caller, address)
            repo.update_mailbox(conn, row["id"], {"retention_days": days})
            self.audit(conn, caller, "retention.update", resource_type="mailbox", resource_id=row["id"],
                       mailbox=row["address"], details={"from": row["retention_days"], "to": days})
            row["retention_days"] = days
        return _retention(row)

    # -- shared lookups --------------------------------------------------------------------
    def visible_mailbox(self, conn: Connection, caller: Caller, address: str) -> dict[str, Any]:
        """Raises: NotFound when the mailbox is absent, in another account or outside the grants."""
        try:
            addr = parse_address(address).address
        except ValueError:
            raise not_found("mailbox", address) from None
        self.require_mailbox(caller, addr)
        row = repo.mailbox_by_address(conn, addr)
        if row is None or row["account_id"] != caller.principal.account_id:
            raise not_found("mailbox", addr)
        return row

    def _owned_domain(self, conn: Connection, caller: Caller, addr: Address, field: str) -> dict[str, Any]:
        row = repo.domain_by_name(conn, addr.domain)
        if row is None or row["account_id"] != caller.principal.account_id:
            raise invalid_field(field, f"{addr.domain} is not one of this account's domains (add it first)")
        return row


def _ensure_address_free(conn: Connection, address: str) -> None:
    """Raises: Conflict when a mailbox or alias already answers at this address."""
    if repo.mailbox_by_address(conn, address) is not None:
        raise Conflict(f"a mailbox {address} already exists", {"field": "address"})
    if repo.alias_by_address(conn, address) is not None:
        raise Conflict(f"an alias {address} already exists", {"field": "address"})


def _require_all_mailboxes(caller: Caller, what: str) -> None:
    if not caller.principal.all_mailboxes:
        raise Forbidden(f"{what} needs a token granted all mailboxes (*)", {"missing_grant": "*"})


def _granted_domains(caller: Caller) -> frozenset[str]:
    return frozenset(g.rpartition("@")[2] for g in caller.principal.grants if "@" in g)


def _display_name(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 200 or any(c in value for c in "\r\n\0"):
        raise invalid_field("display_name", "display_name must be one line of at most 200 characters")
    return value.strip() or None


def _retention(row: dict[str, Any]) -> dict[str, Any]:
    return {"mailbox": row["address"], "days": row["retention_days"], "legal_hold": bool(row["legal_hold"])}
