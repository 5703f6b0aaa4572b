"""REST routes of SPEC §3/§4 for a domain's DNS: plan, live status, readiness, DKIM rotation, DMARC.

Each handler parses and makes one service call (service/domains_dns.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from litemx.adapters.http.deps import CallerDep, ServicesDep
from litemx.adapters.http.models import (
    DkimRotateOut,
    DmarcOut,
    DmarcUpdate,
    DnsPlanOut,
    DomainStatusOut,
    ReadinessUpdate,
)

router = APIRouter(tags=["Domains"])
Json = dict[str, Any]

PlanFormat = Query("json", description="json (records only) or zone (records plus a BIND zone snippet).")
Retire = Query(None, description="Instead of rotating, stop publishing this retiring selector.")


@router.get("/api/domains/{domain}/dns-plan", response_model=DnsPlanOut, response_model_exclude_unset=True)
def dns_plan(svc: ServicesDep, caller: CallerDep, domain: str, format: str = PlanFormat) -> Json:  # noqa: A002
    """The records to publish at the domain's DNS host (MX, SPF, DKIM, DMARC, MAIL FROM)."""
    return svc.domains_dns.dns_plan(caller, domain, format)


@router.get("/api/domains/{domain}/status", response_model=DomainStatusOut)
def domain_status(svc: ServicesDep, caller: CallerDep, domain: str) -> Json:
    """Check every planned record live, record by record, and derive readiness."""
    return svc.domains_dns.status(caller, domain)


@router.put("/api/domains/{domain}/readiness")
def set_readiness(svc: ServicesDep, caller: CallerDep, domain: str, body: ReadinessUpdate) -> Json:
    """Record that the outbound provider granted production sending (founder admin token only)."""
    return svc.domains_dns.set_readiness(caller, domain, body.provider_approved)


@router.post("/api/domains/{domain}/dkim/rotate", response_model=DkimRotateOut)
def rotate_dkim(svc: ServicesDep, caller: CallerDep, domain: str, retire: str | None = Retire) -> Json:
    """New DKIM keys (the current ones keep being published as retiring), or end a retiring key."""
    return svc.domains_dns.rotate_dkim(caller, domain, retire)


@router.put("/api/domains/{domain}/dmarc", response_model=DmarcOut)
def set_dmarc(svc: ServicesDep, caller: CallerDep, domain: str, body: DmarcUpdate) -> Json:
    """Set or remove the DMARC aggregate-report address (rua=); republish the DMARC record shown."""
    return svc.domains_dns.set_dmarc(caller, domain, body.report_address)
