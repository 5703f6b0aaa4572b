"""Domains and DNS (SPEC §4): DKIM keys, the DNS plan, live checks, readiness, re-checks.

- Keys: every domain gets an RSA-2048 DKIM key when it is added (plus Ed25519 with
  `dkim_ed25519`), in the same transaction (the `DirectoryService.on_domain_created` hook).
  Private keys are sealed (AES-256-GCM, bound to "<domain>/<selector>") and leave this module
  only through `private_key_for_signing`, for the outbound signer; no route, audit detail or
  log line carries them.
- Rotation lifecycle: `active` (signs, published) -> `retiring` (published only, so mail
  signed before the rotation still verifies, RFC 6376 §3.6.1) -> `retired` (neither). A
  rotation makes a new active key per algorithm, moves the active keys to retiring and retires
  keys already retiring; `retire=<selector>` ends one retiring key's grace period early.
- Checks: DNS lookups run outside any database transaction; an outage (`Unavailable`) answers
  503 and changes nothing. Each check stores the readiness flags, `last_checked_at` and every
  record's status (`dns_status`); the background re-check writes `domain.dns_changed` only when
  a status differs from the previous check's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from litemx.core.addresses import parse_domain
from litemx.core.dkimkeys import Algorithm, generate_key_pair, load_or_create_secret_key, new_selector, seal, unseal
from litemx.core.dnscheck import RecordCheck, check_records, collect_found, inbound_ready, is_dmarc, outbound_ready
from litemx.core.dnsplan import DkimPublicKey, DnsRecord, plan_records, render_zone, report_authorization, zone_line
from litemx.core.ids import new_id
from litemx.errors import Forbidden, Unavailable, invalid_field
from litemx.ports import Resolver
from litemx.service import render
from litemx.service.base import Infra, ServiceBase, not_found, operation
from litemx.service.directory import DirectoryService, dmarc_report_field
from litemx.service.principal import Caller, system_caller
from litemx.settings import Settings
from litemx.storage import directory_repo
from litemx.storage import dkim_repo as keys_repo
from litemx.storage.dkim_repo import ACTIVE, PUBLISHED, RETIRED, RETIRING

log = logging.getLogger("litemx.dns")

PLAN_FORMATS = ("json", "zone")
SES_SPF = ("include:amazonses.com",)  # SES's sending hosts (AWS SES developer guide, "SPF")
RECHECK_BATCH = 100


class SigningKey(NamedTuple):
    """(selector, algorithm, pem) for the outbound signer; the PEM stays out of reprs."""

    selector: str
    algorithm: str
    pem: bytes

    def __repr__(self) -> str:
        return f"SigningKey(selector={self.selector!r}, algorithm={self.algorithm!r}, pem=<hidden>)"


@dataclass(frozen=True)
class CheckOutcome:
    """One live check of a domain: every record's verdict and the readiness it implies."""

    checks: tuple[RecordCheck, ...]
    inbound_ready: bool
    outbound_ready: bool
    retiring: frozenset[str]
    at: datetime

    @property
    def statuses(self) -> dict[str, str]:
        """{"<type> <host>": status}: type and host name each planned record uniquely."""
        return {record_key(c.record): c.status for c in self.checks}


class DomainDnsService(ServiceBase):
    def __init__(self, infra: Infra, directory: DirectoryService, resolver: Resolver):
        """Raises: ValueError/OSError when the sealing key cannot be loaded or created."""
        super().__init__(infra)
        self.directory = directory
        self.resolver = resolver
        # Loaded once per process: every seal and unseal here uses the same key.
        self._sealing_key = load_or_create_secret_key(infra.settings.data_dir, infra.settings.secret_key)

    # -- keys ------------------------------------------------------------------------------
    def provision_keys(self, conn: Connection, domain: dict[str, Any]) -> None:
        """The `on_domain_created` hook: a new domain's first keys, in its creation transaction."""
        for algorithm in self._algorithms():
            self._add_key(conn, domain, algorithm)

    def private_key_for_signing(self, domain: str) -> list[SigningKey]:
        """The active keys of `domain`, RSA first (RFC 8463 §3: sign with both when both exist).

        For the outbound signer only: never render, log or audit the result.
        Raises: NotFound when the domain is not hosted here;
            SealError when the keys were sealed under another secret key.
        """
        try:
            name = parse_domain(domain)
        except ValueError:
            raise not_found("domain", domain) from None
        with self.db.read() as conn:
            row = directory_repo.domain_by_name(conn, name)
            if row is None:
                raise not_found("domain", name)
            keys = keys_repo.keys_for_domain(conn, row["id"], (ACTIVE,))
        return [SigningKey(k["selector"], k["algorithm"], self._unseal(row["name"], k)) for k in keys]

    @operation("domains.rotate_dkim")
    def rotate_dkim(self, caller: Caller, name: str, retire: str | None = None) -> dict[str, Any]:
        """A new active key per algorithm (old ones go retiring), or with `retire` the end of one
        retiring key's grace period.

        Raises: NotFound; Forbidden without an all-mailbox grant (the key signs every mailbox's
            mail); InvalidRequest when `retire` names no retiring selector of the domain.
        """
        with self.db.write() as conn:
            domain = self.directory.visible_domain(conn, caller, name)
            if not caller.principal.all_mailboxes:
                raise Forbidden("rotating DKIM keys needs a token granted all mailboxes (*)", {"missing_grant": "*"})
            keys = keys_repo.keys_for_domain(conn, domain["id"], PUBLISHED)
            changes = self._retire(conn, domain, keys, retire) if retire is not None \
                else self._rotate(conn, domain, keys)
            self.audit(conn, caller, "domain.dkim_rotate", resource_type="domain", resource_id=domain["name"],
                       details=changes)
            every_key = keys_repo.keys_for_domain(conn, domain["id"])
        published = [k for k in every_key if k["status"] in PUBLISHED]
        return {"domain": domain["name"], **changes, "keys": [key_json(k) for k in every_key],
                "records": [record_json(r) for r in self._plan(domain, published) if r.purpose == "dkim"]}

    def _rotate(self, conn: Connection, domain: dict[str, Any], keys: list[dict[str, Any]]) -> dict[str, list[str]]:
        now = self.clock.now()
        changes: dict[str, list[str]] = {"created": [], "retiring": [], "retired": []}
        for key in keys:
            # A second rotation ends the previous grace period: at most two generations published.
            status = RETIRED if key["status"] == RETIRING else RETIRING
            keys_repo.set_status(conn, key["id"], status, now)
            changes[status].append(key["selector"])
        algorithms = dict.fromkeys([*self._algorithms(), *(k["algorithm"] for k in keys if k["status"] == ACTIVE)])
        changes["created"] = [self._add_key(conn, domain, alg)["selector"] for alg in algorithms]
        # The new selector is not in DNS yet: mail signed with it fails DKIM until it is
        # published, so sending waits for the next check that finds it.
        directory_repo.update_domain(conn, domain["id"], {"outbound_ready": False})
        return changes

    def _retire(self, conn: Connection, domain: dict[str, Any], keys: list[dict[str, Any]],
                selector: str) -> dict[str, list[str]]:
        """Raises: InvalidRequest naming `retire` unless the selector is a retiring key."""
        wanted = selector.strip().lower()
        key = next((k for k in keys if k["selector"] == wanted), None)
        if key is None:
            raise invalid_field("retire", f"{wanted!r} is not a published DKIM selector of {domain['name']}")
        if key["status"] != RETIRING:
            raise invalid_field("retire", f"{wanted} is the active key: rotate first, then retire it")
        keys_repo.set_status(conn, key["id"], RETIRED, self.clock.now())
        return {"created": [], "retiring": [], "retired": [wanted]}

    def _algorithms(self) -> tuple[Algorithm, ...]:
        return ("rsa", "ed25519") if self.infra.settings.dkim_ed25519 else ("rsa",)

    def _add_key(self, conn: Connection, domain: dict[str, Any], algorithm: Algorithm) -> dict[str, Any]:
        now = self.clock.now()
        # Selectors are never reused (retired ones included): see storage.schema.dkim_keys.
        selector = new_selector(algorithm, now, keys_repo.selectors(conn, domain["id"]))
        pair = generate_key_pair(algorithm, selector)
        return keys_repo.add_key(conn, {
            "id": new_id("dkim"), "domain_id": domain["id"], "selector": selector, "algorithm": algorithm,
            "public_key_b64": pair.public_key_b64, "status": ACTIVE, "created_at": now, "retired_at": None,
            "private_key_sealed": seal(pair.private_pem, self._sealing_key, _seal_context(domain["name"], selector)),
        })

    def _unseal(self, domain: str, key: dict[str, Any]) -> bytes:
        """Raises: SealError (wrong secret key or tampered row)."""
        return unseal(bytes(key["private_key_sealed"]), self._sealing_key, _seal_context(domain, key["selector"]))

    # -- the plan --------------------------------------------------------------------------
    @operation("domains.dns_plan")
    def dns_plan(self, caller: Caller, name: str, fmt: str = "json") -> dict[str, Any]:
        """The records to publish; `fmt="zone"` adds a BIND snippet.

        Raises: InvalidRequest naming `format`; NotFound.
        """
        if fmt not in PLAN_FORMATS:
            raise invalid_field("format", "format must be json or zone")
        with self.db.read() as conn:
            domain = self.directory.visible_domain(conn, caller, name)
            keys = keys_repo.keys_for_domain(conn, domain["id"], PUBLISHED)
        records = self._plan(domain, keys)
        self.audit_read(caller, "domain.dns_plan", resource_type="domain", resource_id=domain["name"],
                        details={"format": fmt, "records": len(records)})
        out: dict[str, Any] = {"domain": domain["name"], "records": [record_json(r) for r in records],
                               "warnings": plan_warnings(domain)}
        if fmt == "zone":
            out["zone"] = render_zone(records, domain["name"]) + _zone_notes(domain)
        return out

    @operation("domains.dmarc")
    def set_dmarc(self, caller: Caller, name: str, report_address: str | None) -> dict[str, Any]:
        """Set (or with None clear) the DMARC aggregate-report address, the plan's `rua=`.

        Returns the DMARC record to republish and the plan's warnings (RFC 7489 §7.1 when the
        address is on another domain). Readiness is unchanged: any DMARC record counts.
        Raises: InvalidRequest naming report_address; NotFound; Forbidden without an
            all-mailbox grant (one DMARC record covers every mailbox of the domain).
        """
        rua = None if report_address is None else dmarc_report_field(report_address, "report_address")
        with self.db.write() as conn:
            domain = self.directory.visible_domain(conn, caller, name)
            if not caller.principal.all_mailboxes:
                raise Forbidden("setting the DMARC report address needs a token granted all mailboxes (*)",
                                {"missing_grant": "*"})
            directory_repo.update_domain(conn, domain["id"], {"dmarc_rua": rua})
            self.audit(conn, caller, "domain.dmarc", resource_type="domain", resource_id=domain["name"],
                       details={"from": domain["dmarc_rua"], "to": rua})
        domain = {**domain, "dmarc_rua": rua}
        return {"domain": domain["name"], "report_address": rua,
                "records": [record_json(r) for r in self._plan(domain, ()) if r.purpose == "dmarc"],
                "warnings": plan_warnings(domain)}

    def _plan(self, domain: dict[str, Any], keys: Sequence[dict[str, Any]]) -> list[DnsRecord]:
        settings = self.infra.settings
        public = [DkimPublicKey(k["selector"], k["public_key_b64"], k["algorithm"]) for k in keys]
        return plan_records(domain["name"], settings.hostname, public, mail_from=domain["mail_from"],
                            spf_mechanisms=spf_mechanisms(settings), dmarc_rua=domain["dmarc_rua"])

    # -- live checks -----------------------------------------------------------------------
    @operation("domains.status")
    def status(self, caller: Caller, name: str) -> dict[str, Any]:
        """Check every planned record live; store readiness, last_checked_at and the statuses.

        Raises: NotFound; Unavailable (503) when DNS could not be asked (nothing is stored).
        """
        with self.db.read() as conn:
            domain = self.directory.visible_domain(conn, caller, name)
            keys = keys_repo.keys_for_domain(conn, domain["id"], PUBLISHED)
        outcome = self._check(domain, keys)  # network I/O: never inside a transaction
        with self.db.write() as conn:
            row, changes = self._store(conn, domain["name"], outcome)
            self.audit(conn, caller, "domain.status", resource_type="domain", resource_id=domain["name"],
                       details=_check_details(outcome, changes))
        return {"domain": domain["name"], "records": [check_json(c, outcome.retiring) for c in outcome.checks],
                "readiness": render.readiness(row), "checked_at": render.iso(outcome.at)}

    def recheck_all(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
        """Re-check every enabled domain as the system principal (the DnsRecheckWorker's job);
        writes `domain.dns_changed` for each domain whose record statuses changed.

        A domain DNS cannot answer for is skipped (logged, nothing stored) and counted.
        `should_stop` is asked between domains so a shutting-down server need not wait.
        Raises: database errors only.
        """
        summary = {"checked": 0, "changed": 0, "unavailable": 0}
        after: str | None = None
        while not should_stop():
            with self.db.read() as conn:
                batch = keys_repo.domains_for_recheck(conn, after, RECHECK_BATCH)
            for domain in batch:
                if should_stop():
                    break
                self._recheck(domain, summary)
            if len(batch) < RECHECK_BATCH:
                break
            after = batch[-1]["name"]
        return summary

    def _recheck(self, domain: dict[str, Any], summary: dict[str, int]) -> None:
        with self.db.read() as conn:
            keys = keys_repo.keys_for_domain(conn, domain["id"], PUBLISHED)
        try:
            outcome = self._check(domain, keys)
        except Unavailable as exc:
            log.warning("DNS re-check of %s skipped: %s", domain["name"], exc.message)
            summary["unavailable"] += 1
            return
        summary["checked"] += 1
        with self.db.write() as conn:
            _, changes = self._store(conn, domain["name"], outcome)
            if changes:
                summary["changed"] += 1
                self.audit(conn, system_caller(domain["account_id"]), "domain.dns_changed", resource_type="domain",
                           resource_id=domain["name"], details=_check_details(outcome, changes))

    def _check(self, domain: dict[str, Any], keys: Sequence[dict[str, Any]]) -> CheckOutcome:
        """Raises: Unavailable (DnsError) when a lookup could not be completed."""
        plan = self._plan(domain, keys)
        # SPF include: targets are followed through the same resolver (RFC 7208 §4.6.4 count).
        checks = tuple(check_records(plan, collect_found(plan, self.resolver), txt_lookup=self.resolver.txt))
        checks = self._with_report_authorization(domain, checks)
        retiring = frozenset(k["selector"] for k in keys if k["status"] == RETIRING)
        # A retiring key only serves mail signed before the rotation: it does not gate sending.
        gating = [c for c in checks if c.record.selector not in retiring]
        return CheckOutcome(checks, inbound_ready(checks), outbound_ready(gating), retiring, self.clock.now())

    def _with_report_authorization(self, domain: dict[str, Any],
                                   checks: tuple[RecordCheck, ...]) -> tuple[RecordCheck, ...]:
        """A warning on the DMARC check when the report address's domain has not published its
        RFC 7489 §7.1 authorisation. Never a status: reports are optional, and that zone is
        often not the user's. A lookup failure there is a warning too, not a 503."""
        auth = report_authorization(domain["name"], domain["dmarc_rua"])
        if auth is None:
            return checks
        try:
            authorised = any(is_dmarc(t) for t in self.resolver.txt(auth.host))
            warning = None if authorised else f"{auth.host} has no TXT \"{auth.value}\": " + _REPORT_AUTH_WHY
        except Unavailable as exc:
            warning = f"could not look up {auth.host} ({exc.message}): " + _REPORT_AUTH_WHY
        if warning is None:
            return checks
        return tuple(dataclasses.replace(c, warnings=(*c.warnings, warning)) if c.record.purpose == "dmarc" else c
                     for c in checks)

    def _store(self, conn: Connection, name: str, outcome: CheckOutcome) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Persist one check on the domain row; returns the row and the status changes."""
        row = directory_repo.domain_by_name(conn, name)
        if row is None:  # a domain is never deleted today; say so loudly if that changes
            raise not_found("domain", name)
        values = {"inbound_ready": outcome.inbound_ready, "outbound_ready": outcome.outbound_ready,
                  "last_checked_at": outcome.at, "dns_status": outcome.statuses}
        directory_repo.update_domain(conn, row["id"], values)
        return {**row, **values}, status_changes(row["dns_status"], outcome.statuses)

    # -- readiness -------------------------------------------------------------------------
    @operation("domains.readiness")
    def set_readiness(self, caller: Caller, name: str, provider_approved: bool) -> dict[str, Any]:
        """Record whether the outbound provider granted production sending (admin token only).

        Raises: InvalidRequest naming provider_approved; NotFound; Forbidden (not the admin).
        """
        if not isinstance(provider_approved, bool):
            raise invalid_field("provider_approved", "provider_approved must be true or false")
        with self.db.write() as conn:
            domain = self.directory.visible_domain(conn, caller, name)
            before = bool(domain["provider_approved"])
            directory_repo.update_domain(conn, domain["id"], {"provider_approved": provider_approved})
            self.audit(conn, caller, "domain.readiness", resource_type="domain", resource_id=domain["name"],
                       details={"from": before, "to": provider_approved})
        return render.domain({**domain, "provider_approved": provider_approved})


# -- shapes and small rules ---------------------------------------------------------------

def spf_mechanisms(settings: Settings) -> tuple[str, ...] | None:
    """What SPF must authorise: SES's hosts when SES sends, else the plan's default (`a:<host>`)."""
    return SES_SPF if settings.outbound == "ses" else None


_REPORT_AUTH_WHY = ("receivers send aggregate reports to another domain only when it publishes this "
                    "record (RFC 7489 §7.1)")


def plan_warnings(domain: Mapping[str, Any]) -> list[str]:
    """What the plan cannot publish for the user: today the RFC 7489 §7.1 authorisation a report
    address on another domain needs. A warning rather than a planned record, because it lives in
    another zone (often another DNS host) and never gates readiness."""
    auth = report_authorization(domain["name"], domain["dmarc_rua"])
    if auth is None:
        return []
    other = auth.host.split("._report._dmarc.", 1)[1]
    return [f"DMARC reports go to {domain['dmarc_rua']} on another domain: {other} must publish "
            f"TXT {auth.host} \"{auth.value}\", or receivers will not send them there (RFC 7489 §7.1)"]


def _zone_notes(domain: Mapping[str, Any]) -> str:
    """The authorisation record as a comment: it belongs in the report domain's zone, not this one."""
    auth = report_authorization(domain["name"], domain["dmarc_rua"])
    if auth is None:
        return ""
    other = auth.host.split("._report._dmarc.", 1)[1]
    return f"; dmarc report authorisation: publish in the zone of {other} (RFC 7489 §7.1)\n; {zone_line(auth)}\n"


def record_key(record: DnsRecord) -> str:
    return f"{record.type} {record.host}"


def record_json(record: DnsRecord) -> dict[str, Any]:
    return {"type": record.type, "host": record.host, "value": record.value, "purpose": record.purpose,
            "ttl": record.ttl, "priority": record.priority, "selector": record.selector}


def check_json(check: RecordCheck, retiring: Iterable[str] = ()) -> dict[str, Any]:
    warnings = list(check.warnings)
    if check.record.selector is not None and check.record.selector in set(retiring):
        warnings.append(f"{check.record.selector} is a retiring key: keep it published until mail signed "
                        "before the rotation has been delivered, then retire it")
    return {**record_json(check.record), "status": check.status, "expected": check.expected,
            "found": list(check.found), "hint": check.hint or None, "warnings": warnings}


def key_json(key: Mapping[str, Any]) -> dict[str, Any]:
    """A key's public facts (the sealed private key is never rendered)."""
    return {"selector": key["selector"], "algorithm": key["algorithm"], "status": key["status"],
            "public_key_b64": key["public_key_b64"], "created_at": render.iso(key["created_at"]),
            "retired_at": render.iso(key["retired_at"])}


def status_changes(previous: Mapping[str, str] | None, current: Mapping[str, str]) -> list[dict[str, Any]]:
    """Records whose status differs from the previous check's (null: not planned then/now).

    The first check of a domain has nothing to compare with: it is the baseline, not a change.
    """
    if previous is None:
        return []
    return [{"record": key, "from": previous.get(key), "to": current.get(key)}
            for key in sorted(set(previous) | set(current)) if previous.get(key) != current.get(key)]


def _check_details(outcome: CheckOutcome, changes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inbound_ready": outcome.inbound_ready, "outbound_ready": outcome.outbound_ready, "changes": changes}


def _seal_context(domain: str, selector: str) -> bytes:
    """Authenticated with the sealed key, so a row's key cannot be moved to another domain or selector."""
    return f"{domain}/{selector}".encode()
