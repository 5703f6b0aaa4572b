"""Helpers for REST behaviour tests: drive the API as a user, then read the database and the
audit log directly so a test can assert response + state + event together."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from litemx.app import Services
from litemx.storage.schema import accounts, alias_targets, aliases, audit_events, catchalls, domains, mailboxes, tokens

# Every table but the append-only audit log: "nothing changed" means these rows are identical.
STATE_TABLES = (accounts, tokens, domains, mailboxes, aliases, alias_targets, catchalls)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_error(response: Response, status: int, code: str) -> dict[str, Any]:
    """The SPEC §3 envelope with this status and code; returns the `error` object."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    return error


def assert_envelope(response: Response) -> None:
    """Any non-2xx answer is the one error shape, never a stack trace."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert "Traceback" not in response.text


def snapshot(services: Services) -> dict[str, list[dict[str, Any]]]:
    """Every directory row, sorted, for before/after comparisons."""
    with services.infra.db.read() as conn:
        return {t.name: sorted((dict(r._mapping) for r in conn.execute(select(t))), key=_row_key)
                for t in STATE_TABLES}


def _row_key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def count(services: Services, table: Any) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def last_audit_id(services: Services) -> int:
    with services.infra.db.read() as conn:
        return int(conn.execute(select(func.coalesce(func.max(audit_events.c.id), 0))).scalar_one())


def audit_since(services: Services, after_id: int) -> list[dict[str, Any]]:
    """Audit rows written after `after_id`, oldest first."""
    with services.infra.db.read() as conn:
        stmt = select(audit_events).where(audit_events.c.id > after_id).order_by(audit_events.c.id)
        return [dict(r._mapping) for r in conn.execute(stmt)]


def all_audit_rows(services: Services) -> list[dict[str, Any]]:
    return audit_since(services, 0)


def all_rows_text(services: Services) -> str:
    """Every stored row of every table (audit included) as one JSON text, for secret greps."""
    with services.infra.db.read() as conn:
        rows = {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in (*STATE_TABLES, audit_events)}
    return json.dumps(rows, default=str, ensure_ascii=False)


@dataclass
class Api:
    """One account's founder driving the REST API, with shortcuts for fixtures."""

    client: TestClient
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.secret)

    def call(self, method: str, path: str, body: Any = None, secret: str | None = None,
             **kwargs: Any) -> Response:
        headers = bearer(secret) if secret is not None else self.headers
        if body is not None:
            kwargs["json"] = body
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, path, body, **kwargs)
        assert response.status_code in (200, 201), (method, path, response.status_code, response.text)
        return response.json()  # type: ignore[no-any-return]

    def domain(self, name: str) -> dict[str, Any]:
        return self.ok("POST", "/api/domains", {"name": name})

    def mailbox(self, address: str) -> dict[str, Any]:
        return self.ok("POST", "/api/mailboxes", {"address": address})

    def alias(self, address: str, *targets: str) -> dict[str, Any]:
        return self.ok("POST", "/api/aliases", {"address": address, "targets": list(targets)})

    def catchall(self, domain: str, mailbox: str | None) -> dict[str, Any]:
        return self.ok("PUT", f"/api/catchalls/{domain}", {"mailbox": mailbox})

    def token(self, scopes: list[str], mailboxes: list[str] | None = None, name: str = "bot",
              expires_at: datetime | None = None) -> tuple[str, str]:
        """A scoped token: returns (id, secret)."""
        body: dict[str, Any] = {"name": name, "scopes": scopes, "mailboxes": mailboxes or ["*"]}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        created = self.ok("POST", "/api/tokens", body)
        return created["id"], created["token"]

    def me(self) -> dict[str, Any]:
        return self.ok("GET", "/api/bootstrap")

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        return self.ok("GET", "/api/audit", params=params)["items"]  # type: ignore[no-any-return]


def each_case(cases: Iterable[Any], check: Callable[[Any], None]) -> None:
    """Run `check` for every case and report every failing one at once (one fixture setup for
    many inputs keeps the suite fast on both backends)."""
    cases = list(cases)
    assert cases, "nothing to check"
    failures = []
    for case in cases:
        try:
            check(case)
        except AssertionError as exc:
            failures.append(f"{case!r:.80}: {exc}")
    assert not failures, "\n".join(failures)
