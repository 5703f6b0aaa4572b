"""Plan limits (SPEC §6): sends counted per message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanLimits:
    mailbox_daily: int
    account_daily: int
    account_monthly: int
    recipients_per_message: int


PLANS: dict[str, PlanLimits] = {
    "free": PlanLimits(100, 100, 500, 10),
    "starter": PlanLimits(300, 300, 3000, 10),
    "scale": PlanLimits(1000, 1000, 15000, 10),
}


def limits_for(plan: str) -> PlanLimits:
    """Raises: KeyError for an unknown plan name."""
    return PLANS[plan]
