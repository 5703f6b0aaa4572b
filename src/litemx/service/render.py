"""Public shapes of stored rows: what every transport shows (never secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def domain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "mail_from": row["mail_from"], "dmarc_report": row.get("dmarc_rua"),
        "readiness": readiness(row), "disabled": row["disabled_at"] is not None, "created_at": iso(row["created_at"]),
    }


def readiness(row: dict[str, Any]) -> dict[str, bool]:
    return {k: bool(row[k]) for k in ("inbound_ready", "outbound_ready", "provider_approved")}


def mailbox(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "address": row["address"], "display_name": row["display_name"],
        "retention_days": row["retention_days"], "legal_hold": bool(row["legal_hold"]),
        "disabled": row["disabled_at"] is not None, "created_at": iso(row["created_at"]),
    }


def alias(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "address": row["address"], "targets": [m["address"] for m in row["targets"]],
            "created_at": iso(row["created_at"])}


def token(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "admin": bool(row["is_admin"]), "scopes": list(row["scopes"]),
        "mailboxes": list(row["grants"]), "created_at": iso(row["created_at"]), "expires_at": iso(row["expires_at"]),
        "revoked_at": iso(row["revoked_at"]), "disabled": row["disabled_at"] is not None,
        "prefix": "lmx_" + row["prefix"][:6] + "…",
    }


def audit_event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "at": iso(row["at"]), "account": row["account_id"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"], "name": row["actor_name"]},
        "interface": row["interface"], "action": row["action"], "resource_type": row["resource_type"],
        "resource_id": row["resource_id"], "mailbox": row["mailbox"], "outcome": row["outcome"], "ip": row["ip"],
        "user_agent": row["user_agent"], "details": row["details"],
    }
