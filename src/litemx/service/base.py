"""What every service shares: transactions, the scope gate and the audit writer.

Mutations write their audit event with `audit(conn, ...)` inside their own transaction.
Read-only operations read in `db.read()` (no write lock) and then call `audit_read(...)`,
which returns once the event is committed by the group-committing AuditWriter
(storage/audit_writer.py), or hands it to the `AuditWriter.run` the call runs in, which commits
it before the request answers: still "every read is audited before the response is returned",
without serialising the reads on the database's single writer.

`@operation("mailboxes.create")` puts a method behind the operation table's scope rule and
guarantees that a refused or failed call leaves exactly one audit event (outcome `denied`,
`blocked` or `error`), written after the failed transaction rolled back so the refusal is
recorded while the change is not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection

from litemx.core.operations import Operation
from litemx.core.operations import operation as lookup_operation
from litemx.errors import Forbidden, LitemxError, NotFound, SendBlocked, Unauthorized
from litemx.ports import BlobStore, Clock
from litemx.service.principal import Caller
from litemx.settings import Settings
from litemx.storage import audit_repo
from litemx.storage.audit_writer import AuditWriter
from litemx.storage.db import Database

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Infra:
    """The outside world as the services see it."""

    settings: Settings
    db: Database
    blobs: BlobStore
    clock: Clock
    # Commits the audit events of read-only operations in groups; built on the db when not given.
    audit_writer: AuditWriter = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.audit_writer is None:
            object.__setattr__(self, "audit_writer", AuditWriter(self.db))


def event_row(*, at: datetime, account_id: str | None, actor_type: str, actor_id: str | None,
              actor_name: str | None, interface: str, action: str, outcome: str = "ok",
              resource_type: str | None = None, resource_id: str | None = None, mailbox: str | None = None,
              ip: str | None = None, user_agent: str | None = None,
              details: dict[str, Any] | None = None) -> dict[str, Any]:
    """One audit row (SPEC §9). The only place its shape is spelled out.

    Client-supplied text is stored printable: a NUL byte would make PostgreSQL refuse the
    row, and the audit of a bad request must never fail because of the bad request.
    """
    return {"at": at, "account_id": account_id, "actor_type": actor_type, "actor_id": actor_id,
            "actor_name": actor_name, "interface": interface, "action": action, "resource_type": resource_type,
            "resource_id": _printable(resource_id, 320), "mailbox": _printable(mailbox, 320), "outcome": outcome,
            "ip": ip, "user_agent": _printable(user_agent, 300) or None, "details": _printable_json(details or {})}


def _printable(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "\\x00")[:limit]


def _printable_json(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_printable_json(k): _printable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_json(v) for v in value]
    return value


def outcome_of(error: LitemxError, caller: Caller) -> str:
    if "outcome" in error.audit:
        return str(error.audit["outcome"])
    if isinstance(error, SendBlocked):
        return "blocked"
    if isinstance(error, NotFound):
        # A scoped token's 404 is `denied` whether the thing is missing or outside its grants:
        # the token can read its own events, so the two must look alike (SPEC §3: never leak).
        return "error" if caller.principal.all_mailboxes else "denied"
    return "denied" if isinstance(error, (Forbidden, Unauthorized)) else "error"


class ServiceBase:
    def __init__(self, infra: Infra):
        self.infra = infra
        self.db = infra.db
        self.clock = infra.clock

    def audit(
        self,
        conn: Connection,
        caller: Caller,
        action: str,
        *,
        outcome: str = "ok",
        resource_type: str | None = None,
        resource_id: str | None = None,
        mailbox: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one event in the caller's transaction (SPEC §9 fields)."""
        audit_repo.append(conn, self._event(caller, action, outcome, resource_type, resource_id, mailbox, details))

    def audit_read(
        self,
        caller: Caller,
        action: str,
        *,
        outcome: str = "ok",
        resource_type: str | None = None,
        resource_id: str | None = None,
        mailbox: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """An event that is its request's only write: a read-only operation's, after its read and
        before its answer, or a failed call's (`_record_failure`).

        Returns once the event is committed (group commit, see storage/audit_writer.py) — or,
        when the call runs inside `AuditWriter.run` (the read routes and MCP read tools on the
        event loop), at once, the event held for `run` to commit before the request answers.
        Raises: AuditWriteError when it could not be committed; the request then fails.
        """
        self.infra.audit_writer.append(
            self._event(caller, action, outcome, resource_type, resource_id, mailbox, details))

    def _event(self, caller: Caller, action: str, outcome: str, resource_type: str | None,
               resource_id: str | None, mailbox: str | None, details: dict[str, Any] | None) -> dict[str, Any]:
        p = caller.principal
        return event_row(
            at=self.clock.now(), account_id=p.account_id, actor_type=p.kind, actor_id=p.token_id,
            actor_name=p.name, interface=caller.interface, action=action, outcome=outcome,
            resource_type=resource_type, resource_id=resource_id, mailbox=mailbox, ip=caller.ip,
            user_agent=caller.user_agent, details=details)

    def require_mailbox(self, caller: Caller, address: str) -> None:
        """A mailbox outside the caller's grants is reported exactly like a missing one (SPEC §3).

        Raises: NotFound (audited as denied).
        """
        if not caller.principal.can_see(address):
            raise not_found("mailbox", address, grant_denied=True)

    def _record_failure(self, caller: Caller, op: Operation, error: LitemxError) -> None:
        details = {"code": error.code, "message": error.message}
        details.update({k: v for k, v in error.details.items() if k in ("missing_scope", "reasons", "field")})
        # The failed call's own transaction (if any) has rolled back; the event stands alone, so it
        # goes through the group-committing writer like a read's (committed before the error is raised).
        self.audit_read(caller, error.audit.get("action") or op.action or op.name, outcome=outcome_of(error, caller),
                        resource_type=error.audit.get("resource_type"), resource_id=error.audit.get("resource_id"),
                        mailbox=error.audit.get("mailbox"), details=details)


def not_found(resource_type: str, resource_id: str, *, grant_denied: bool = False) -> NotFound:
    """The one 404: same words whether the thing is missing or merely not granted."""
    error = NotFound(f"{resource_type} {resource_id} not found", {"resource_type": resource_type})
    # grant_denied documents intent at call sites; the audit outcome deliberately ignores it
    # (see outcome_of) so a hidden thing and a missing one leave identical events.
    error.audit = {"resource_type": resource_type, "resource_id": resource_id}
    if resource_type == "mailbox":
        error.audit["mailbox"] = resource_id
    return error


def check_scope(caller: Caller, op: Operation) -> None:
    """Raises: Forbidden naming the missing scope (SPEC §3)."""
    p = caller.principal
    if op.admin_only and not p.is_admin:
        raise Forbidden(f"{op.name} needs the account's admin token", {"missing_scope": "admin"})
    if op.scope is not None and not p.has_scope(op.scope):
        raise Forbidden(f"this token lacks the {op.scope.value} scope", {"missing_scope": op.scope.value})


def operation(name: str) -> Callable[[Callable[Concatenate[Any, Caller, P], R]],
                                      Callable[Concatenate[Any, Caller, P], R]]:
    """Bind a service method to its row of the operation table (scope gate + failure audit)."""
    op = lookup_operation(name)

    def decorate(fn: Callable[Concatenate[Any, Caller, P], R]) -> Callable[Concatenate[Any, Caller, P], R]:
        @functools.wraps(fn)
        def wrapper(self: ServiceBase, caller: Caller, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                check_scope(caller, op)
                return fn(self, caller, *args, **kwargs)
            except LitemxError as error:
                self._record_failure(caller, op, error)
                raise

        wrapper.operation = op  # type: ignore[attr-defined]
        return wrapper

    return decorate
