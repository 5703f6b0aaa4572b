"""domains, mailboxes, aliases, catchall."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from litemx.adapters.cli.common import CursorOpt, JsonOpt, LimitOpt, run, seg

domains = typer.Typer(help="Domains and their DNS.", no_args_is_help=True)
mailboxes = typer.Typer(help="Role mailboxes.", no_args_is_help=True)
retention = typer.Typer(help="A mailbox's content retention window.", no_args_is_help=True)
aliases = typer.Typer(help="Aliases delivering to mailboxes.", no_args_is_help=True)
catchall = typer.Typer(help="Per-domain catchall.", no_args_is_help=True)
mailboxes.add_typer(retention, name="retention")

DOMAIN_COLS = [("domain", "name"), ("inbound", "readiness.inbound_ready"),
               ("outbound", "readiness.outbound_ready"), ("provider", "readiness.provider_approved"),
               ("disabled", "disabled")]
MAILBOX_COLS = [("address", "address"), ("name", "display_name"), ("retention", "retention_days"),
                ("disabled", "disabled"), ("created", "created_at")]
KEY_COLS = [("selector", "selector"), ("algorithm", "algorithm"), ("status", "status"),
            ("created", "created_at"), ("retired", "retired_at")]
CHECK_COLS = [("purpose", "purpose"), ("type", "type"), ("host", "host"), ("status", "status"),
              ("expected", "expected"), ("found", "found"), ("hint", "hint")]
PLAN_COLS = [("purpose", "purpose"), ("type", "type"), ("host", "host"), ("priority", "priority"),
             ("value", "value")]


@domains.command("add")
def domains_add(name: str, dmarc_report: Annotated[str | None, typer.Option(
        "--dmarc-report", help="Address receiving DMARC aggregate reports (rua=).")] = None,
        json_: JsonOpt = False) -> None:
    """Add a domain (no DNS provider move needed)."""
    body: dict[str, Any] = {"name": name}
    if dmarc_report is not None:
        body["dmarc_report"] = dmarc_report
    run(json_, lambda api: api.call("POST", "/api/domains", body=body))


@domains.command("list")
def domains_list(limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", "/api/domains", params={"limit": limit, "cursor": cursor}), DOMAIN_COLS)


@domains.command("status")
def domains_status(name: str, json_: JsonOpt = False) -> None:
    """Readiness and live record checks (the same check as `domains check`)."""
    _check(name, json_)


@domains.command("check")
def domains_check(name: str, json_: JsonOpt = False) -> None:
    """Verify the DNS records live, record by record."""
    _check(name, json_)


def _check(name: str, json_: bool) -> None:
    seen: dict[str, Any] = {}

    def call(api):  # type: ignore[no-untyped-def]
        seen.update(api.call("GET", f"/api/domains/{seg(name)}/status"))
        return seen if json_ else {"items": [_check_row(r) for r in seen.get("records", [])], "next_cursor": None}

    run(json_, call, CHECK_COLS, title=f"DNS check for {name}")
    if not json_:
        _check_summary(seen)


def _check_row(record: dict[str, Any]) -> dict[str, Any]:
    """A table row: long values (DKIM keys) shortened; --json keeps them whole."""
    return {**record, "expected": short(record.get("expected")), "found": [short(f) for f in record.get("found") or []]}


def _check_summary(summary: dict[str, Any]) -> None:
    """Under the table: readiness in words, then every warning (they do not block readiness)."""
    ready = summary.get("readiness", {})
    words = [f"{label} {'yes' if ready.get(key) else 'no'}" for label, key in
             (("inbound", "inbound_ready"), ("outbound", "outbound_ready"), ("provider approved", "provider_approved"))]
    print(f"readiness: {', '.join(words)} (checked {summary.get('checked_at', '-')})")
    for record in summary.get("records", []):
        for warning in record.get("warnings") or []:
            print(f"warning: {record['host']} {record['type']}: {warning}")


def short(value: Any, limit: int = 60) -> Any:
    """`v=DKIM1; k=rsa; p=MIIBIjAN…IDAQAB`: the start and end of a long value."""
    if not isinstance(value, str) or len(value) <= limit:
        return value
    keep = (limit - 1) // 2
    return value[:keep] + "…" + value[-keep:]


@domains.command("dns-plan")
def domains_dns_plan(name: str, format_: Annotated[str, typer.Option("--format", help="table or zone")] = "table",
                     json_: JsonOpt = False) -> None:
    """The records to publish at your DNS host."""
    params = {"format": "zone"} if format_ == "zone" else None
    seen: dict[str, Any] = {}

    def call(api):  # type: ignore[no-untyped-def]
        data = api.call("GET", f"/api/domains/{seg(name)}/dns-plan", params=params)
        if format_ == "zone" and not json_:
            print(data.get("zone", ""))
            raise typer.Exit(0)
        seen.update(data)
        return data if json_ else {"items": data.get("records", []), "next_cursor": None}

    run(json_, call, PLAN_COLS, title=f"DNS plan for {name}")
    if not json_:
        for warning in seen.get("warnings") or []:
            print(f"warning: {warning}")


@domains.command("dmarc")
def domains_dmarc(name: str, report: Annotated[str | None, typer.Option(
        "--report", help="Address receiving DMARC aggregate reports (rua=mailto:...).")] = None,
        no_report: Annotated[bool, typer.Option("--no-report", help="Stop asking for aggregate reports.")] = False,
        json_: JsonOpt = False) -> None:
    """Set the DMARC report address, then publish the DMARC record shown."""
    if (report is None) == (not no_report):
        raise typer.BadParameter("give exactly one of --report ADDRESS or --no-report")
    seen: dict[str, Any] = {}

    def call(api):  # type: ignore[no-untyped-def]
        seen.update(api.call("PUT", f"/api/domains/{seg(name)}/dmarc", body={"report_address": report}))
        return seen if json_ else {"items": seen.get("records", []), "next_cursor": None}

    run(json_, call, PLAN_COLS, title=f"DMARC record for {name}")
    if not json_:
        for warning in seen.get("warnings") or []:
            print(f"warning: {warning}")


@domains.command("readiness")
def domains_readiness(name: str, provider_approved: Annotated[bool, typer.Option(
        "--provider-approved/--no-provider-approved", help="The outbound provider granted production sending.")],
        json_: JsonOpt = False) -> None:
    """Record the provider's production-sending approval (founder admin token only)."""
    run(json_, lambda api: api.call("PUT", f"/api/domains/{seg(name)}/readiness",
                                    body={"provider_approved": provider_approved}))


@domains.command("rotate-dkim")
def domains_rotate_dkim(name: str, retire: Annotated[str | None, typer.Option(
        "--retire", help="Instead of rotating, stop publishing this retiring selector.")] = None,
        json_: JsonOpt = False) -> None:
    """New DKIM keys; the current ones stay published as `retiring` until the next rotation or
    --retire. Publish the new record, then run `domains check`."""
    params = {"retire": retire} if retire is not None else None
    seen: dict[str, Any] = {}

    def call(api):  # type: ignore[no-untyped-def]
        seen.update(api.call("POST", f"/api/domains/{seg(name)}/dkim/rotate", params=params))
        return seen if json_ else {"items": seen.get("keys", []), "next_cursor": None}

    run(json_, call, KEY_COLS, title=f"DKIM keys of {name}")
    if not json_:
        for record in seen.get("records", []):
            print(f"publish: {record['host']} TXT \"{record['value']}\"")


@mailboxes.command("create")
def mailboxes_create(address: str, display_name: Annotated[str | None, typer.Option("--display-name")] = None,
                     json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("POST", "/api/mailboxes",
                                    body={"address": address, "display_name": display_name}))


@mailboxes.command("list")
def mailboxes_list(limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", "/api/mailboxes", params={"limit": limit, "cursor": cursor}),
        MAILBOX_COLS)


@mailboxes.command("show")
def mailboxes_show(address: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/mailboxes/{seg(address)}"))


@mailboxes.command("delete")
def mailboxes_delete(address: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("DELETE", f"/api/mailboxes/{seg(address)}"))


@retention.command("get")
def retention_get(address: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/mailboxes/{seg(address)}/retention"))


@retention.command("set")
def retention_set(address: str, days: int, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("PUT", f"/api/mailboxes/{seg(address)}/retention", body={"days": days}))


@aliases.command("add")
def aliases_add(address: str, targets: Annotated[list[str], typer.Argument(help="Target mailbox(es).")],
                json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("POST", "/api/aliases", body={"address": address, "targets": targets}))


@aliases.command("list")
def aliases_list(limit: LimitOpt = None, cursor: CursorOpt = None, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", "/api/aliases", params={"limit": limit, "cursor": cursor}),
        [("alias", "address"), ("targets", "targets"), ("created", "created_at")])


@aliases.command("delete")
def aliases_delete(address: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("DELETE", f"/api/aliases/{seg(address)}"))


@catchall.command("get")
def catchall_get(domain: str, json_: JsonOpt = False) -> None:
    run(json_, lambda api: api.call("GET", f"/api/catchalls/{seg(domain)}"))


@catchall.command("set")
def catchall_set(domain: str, mailbox: Annotated[str, typer.Argument(help="Mailbox address, or 'off'.")],
                 json_: JsonOpt = False) -> None:
    target = None if mailbox.lower() == "off" else mailbox
    run(json_, lambda api: api.call("PUT", f"/api/catchalls/{seg(domain)}", body={"mailbox": target}))
