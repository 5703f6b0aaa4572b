"""Aliases, catchalls and the routing function the SMTP listener calls (SPEC §5).

Resolution order for a recipient: mailbox → alias → plus-address (`support+x@` → `support@`,
then mailbox → alias again) → the domain's catchall → reject. Domains not hosted here are a
relay attempt and are refused, so LiteMX is never an open relay.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from litemx.core.addresses import Address, parse_address
from litemx.core.delivery import BOUNCE_TARGET
from litemx.core.ids import new_id
from litemx.errors import InvalidRequest, invalid_field
from litemx.service import render
from litemx.service.base import ServiceBase, not_found, operation
from litemx.service.directory import DirectoryService, _ensure_address_free, _require_all_mailboxes, address_field
from litemx.service.principal import Caller
from litemx.storage import directory_repo as repo
from litemx.storage import sending_repo, tokens_repo
from litemx.storage.pagination import page

MAX_ALIAS_TARGETS = 50
ROUTE_CACHE_SIZE = 10_000  # recipients whose route the MX remembers (per process)


@dataclass(frozen=True)
class Route:
    """Where a recipient's mail goes, or why it is refused.

    reject is one of: `invalid_address`, `relay_denied` (domain not hosted), `unknown_user`,
    `domain_disabled`, `mailbox_disabled`; `via` is mailbox | alias | plus | catchall.
    """

    recipient: str
    mailboxes: tuple[dict[str, Any], ...] = ()
    via: str | None = None
    reject: str | None = None
    account_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.reject is None


class RouteCache:
    """Routes by the recipient string as the client sent it, valid for one routing version.

    Bounded: an address-probing client fills it with refusals, so the oldest entry goes when
    it is full. Shared by the MX's threads, hence the lock.
    """

    def __init__(self, capacity: int = ROUTE_CACHE_SIZE):
        self.capacity = capacity
        self.version: int | None = None
        self.routes: dict[str, Route] = {}
        self.lock = threading.Lock()

    def get(self, version: int | None, recipient: str) -> Route | None:
        with self.lock:
            if version is None or version != self.version:
                return None
            return self.routes.get(recipient)

    def put(self, version: int | None, recipient: str, route: Route) -> None:
        if version is None:
            return  # no version row: nothing could tell us when the route goes stale
        with self.lock:
            if self.version is not None and version < self.version:
                return  # computed from an older snapshot than what the cache holds now
            if version != self.version:
                self.routes.clear()
                self.version = version
            elif len(self.routes) >= self.capacity:
                del self.routes[next(iter(self.routes))]
            self.routes[recipient] = route


class RoutingService(ServiceBase):
    def __init__(self, infra: Any, directory: DirectoryService):
        super().__init__(infra)
        self.directory = directory
        self.routes = RouteCache()

    # -- aliases ---------------------------------------------------------------------------
    @operation("aliases.create")
    def create_alias(self, caller: Caller, address: str, targets: list[str]) -> dict[str, Any]:
        """Raises: InvalidRequest (bad address, foreign domain, loop, bad targets), Conflict."""
        addr = address_field(address, "address")
        if "+" in addr.local:
            raise invalid_field("address", "'+' is reserved for plus-addressing")
        with self.db.write() as conn:
            domain = self.directory._owned_domain(conn, caller, addr, "address")
            boxes = self._alias_targets(conn, caller, addr, targets)
            _ensure_address_free(conn, addr.address)
            row = {"id": new_id("als"), "account_id": caller.principal.account_id, "domain_id": domain["id"],
                   "address": addr.address, "created_at": self.clock.now()}
            repo.add_alias(conn, row, [b["id"] for b in boxes])
            row["targets"] = boxes
            self.audit(conn, caller, "alias.create", resource_type="alias", resource_id=addr.address,
                       mailbox=boxes[0]["address"], details={"targets": [b["address"] for b in boxes]})
        return render.alias(row)

    def _alias_targets(self, conn: Connection, caller: Caller, addr: Address, targets: list[str]
                       ) -> list[dict[str, Any]]:
        if not targets or len(targets) > MAX_ALIAS_TARGETS:
            raise invalid_field("targets", f"an alias needs 1 to {MAX_ALIAS_TARGETS} target mailboxes")
        boxes: dict[str, dict[str, Any]] = {}
        for value in targets:
            target = address_field(value, "targets").address
            if target == addr.address:
                raise _loop("an alias cannot point at itself")
            other = repo.alias_by_address(conn, target)
            if other is not None and _alias_visible(caller, other):
                raise _loop(f"{target} is an alias; aliases point at mailboxes only, so no loop can form")
            box = repo.mailbox_by_address(conn, target)
            if box is None or box["account_id"] != caller.principal.account_id or not caller.principal.can_see(target):
                raise invalid_field("targets", f"{target} is not a mailbox of this account")
            boxes[target] = box
        return list(boxes.values())

    @operation("aliases.list")
    def list_aliases(self, caller: Caller, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        p = page(limit, cursor, str)
        only = None if caller.principal.all_mailboxes else caller.principal.grants
        with self.db.read() as conn:
            result = repo.list_aliases(conn, caller.principal.account_id, p, only)
        self.audit_read(caller, "alias.list", resource_type="alias", details={"count": len(result.items)})
        return {"items": [render.alias(r) for r in result.items], "next_cursor": result.next_cursor}

    @operation("aliases.delete")
    def delete_alias(self, caller: Caller, address: str) -> dict[str, Any]:
        with self.db.write() as conn:
            row = self._visible_alias(conn, caller, address)
            repo.delete_alias(conn, row["id"])
            self.audit(conn, caller, "alias.delete", resource_type="alias", resource_id=row["address"],
                       mailbox=row["targets"][0]["address"] if row["targets"] else None)
        return {"deleted": True, "address": row["address"]}

    def _visible_alias(self, conn: Connection, caller: Caller, address: str) -> dict[str, Any]:
        try:
            addr = parse_address(address).address
        except ValueError:
            raise not_found("alias", address) from None
        row = repo.alias_by_address(conn, addr)
        if row is None or not _alias_visible(caller, row):
            raise not_found("alias", addr)
        return row

    # -- catchalls -------------------------------------------------------------------------
    @operation("catchalls.get")
    def get_catchall(self, caller: Caller, domain: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = self.directory.visible_domain(conn, caller, domain)
            box = repo.catchall_for(conn, row["id"])
        self.audit_read(caller, "catchall.read", resource_type="domain", resource_id=row["name"])
        if box is not None and not caller.principal.can_see(box["address"]):
            return {"domain": row["name"], "mailbox": None, "enabled": True}  # on, but not yours to see
        return _catchall(row["name"], box)

    @operation("catchalls.set")
    def set_catchall(self, caller: Caller, domain: str, mailbox: str | None) -> dict[str, Any]:
        """Point unknown recipients of a domain at one mailbox, or turn it off (None).

        A catchall captures mail for every address nobody else claims, so only a token
        granted all mailboxes may set it. Raises: Forbidden, InvalidRequest, NotFound.
        """
        _require_all_mailboxes(caller, "setting a catchall")
        with self.db.write() as conn:
            row = self.directory.visible_domain(conn, caller, domain)
            box = self._catchall_target(conn, caller, mailbox)
            before = repo.catchall_for(conn, row["id"])
            repo.set_catchall(conn, row["id"], box["id"] if box else None, self.clock.now())
            self.audit(conn, caller, "catchall.update", resource_type="domain", resource_id=row["name"],
                       mailbox=box["address"] if box else None,
                       details={"from": before["address"] if before else None, "to": box["address"] if box else None})
        return _catchall(row["name"], box)

    def _catchall_target(self, conn: Connection, caller: Caller, mailbox: str | None) -> dict[str, Any] | None:
        if mailbox is None:
            return None
        target = address_field(mailbox, "mailbox").address
        box = repo.mailbox_by_address(conn, target)
        if box is None or box["account_id"] != caller.principal.account_id:
            raise invalid_field("mailbox", f"{target} is not a mailbox of this account")
        return box

    # -- routing ---------------------------------------------------------------------------
    def cached(self, recipient: str) -> Route | None:
        """The cached route if the directory is unchanged since it was cached, else None (call
        resolve()). On SQLite one primary-key read on this thread's own connection: cheap
        enough for the MX's event loop, which then skips a thread hop per RCPT."""
        version = repo.peek_routing_version(self.db)
        return None if version is None else self.routes.get(version, recipient)

    def resolve(self, recipient: str) -> Route:
        """Route one RCPT TO address (no principal: this is the MX deciding, SPEC §5).

        Routes are cached per directory version: each call reads the version (one primary-key
        read) and reuses a route only if nothing that routing depends on has changed since,
        on any node, so a disable or a new mailbox takes effect on the very next RCPT
        (SPEC §11). The version is read before the directory, in the same transaction, so a
        cached route is never older than the version it is filed under.
        """
        with self.db.read() as conn:
            version = repo.current_routing_version(conn)
            cached = self.routes.get(version, recipient)
            if cached is not None:
                return cached
            try:
                route = _resolve(conn, parse_address(recipient))
            except ValueError:
                route = Route(recipient, reject="invalid_address")
        self.routes.put(version, recipient, route)
        return route


def _resolve(conn: Connection, addr: Address) -> Route:
    domain = repo.domain_by_name(conn, addr.domain)
    if domain is None:
        return _bounce_route(conn, addr) or Route(addr.address, reject="relay_denied")
    # A disabled account's domains refuse mail like disabled domains (SPEC §11: every path).
    if domain["disabled_at"] is not None or _account_disabled(conn, domain["account_id"]):
        return Route(addr.address, reject="domain_disabled", account_id=domain["account_id"])
    route = _exact(conn, addr, "mailbox", "alias")
    base = addr.base()
    if route is None and base is not None:
        route = _exact(conn, base, "plus", "plus")
    if route is None:
        box = repo.catchall_for(conn, domain["id"])
        route = ([box], "catchall") if box is not None else None
    if route is None:
        return Route(addr.address, reject="unknown_user", account_id=domain["account_id"])
    boxes, via = route
    live = tuple(b for b in boxes if b["disabled_at"] is None)
    if not live:
        return Route(addr.address, reject="mailbox_disabled", account_id=domain["account_id"])
    return Route(addr.address, live, via, account_id=domain["account_id"])


def _account_disabled(conn: Connection, account_id: str) -> bool:
    account = tokens_repo.get_account(conn, account_id)
    return account is None or account["disabled_at"] is not None


def _exact(conn: Connection, addr: Address, via_box: str, via_alias: str) -> tuple[list[dict[str, Any]], str] | None:
    box = repo.mailbox_by_address(conn, addr.address)
    if box is not None:
        return [box], via_box
    alias = repo.alias_by_address(conn, addr.address)
    if alias is not None and alias["targets"]:
        return alias["targets"], via_alias
    return None


def _alias_visible(caller: Caller, alias: dict[str, Any]) -> bool:
    """An alias is the caller's to see when it is in the account and reaches only granted mailboxes."""
    p = caller.principal
    return alias["account_id"] == p.account_id and all(p.can_see(t["address"]) for t in alias["targets"])


def _loop(message: str) -> InvalidRequest:
    return InvalidRequest(message, {"field": "targets", "reason": "alias_loop"})


def _catchall(domain: str, box: dict[str, Any] | None) -> dict[str, Any]:
    return {"domain": domain, "mailbox": box["address"] if box else None, "enabled": box is not None}


def _bounce_route(conn: Connection, addr: Address) -> Route | None:
    """Mail to a hosted domain's MAIL FROM subdomain (DSNs to VERP senders, ARF complaints) goes
    to the bounce processor (service.bounces), never to a mailbox: no mailbox lives there."""
    domain = sending_repo.domain_by_mail_from(conn, addr.domain)
    if domain is None:
        return None
    target = {"id": BOUNCE_TARGET + domain["id"], "address": addr.address, "disabled_at": None}
    return Route(addr.address, (target,), "bounce", account_id=domain["account_id"])
