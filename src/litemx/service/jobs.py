"""Leases for periodic jobs, so each runs once per interval across the cluster (ARCHITECTURE:
"periodic jobs take a lock so only one node runs them")."""

from __future__ import annotations

from datetime import timedelta

from litemx.service.base import ServiceBase
from litemx.storage import jobs_repo


class JobService(ServiceBase):
    def claim(self, name: str, holder: str, lease: timedelta, every: timedelta) -> bool:
        """True when `holder` may run job `name` now: it is due and nobody else holds it."""
        with self.db.write() as conn:
            return jobs_repo.claim_job(conn, name, holder, self.clock.now(), lease, every)

    def finish(self, name: str, holder: str, *, ran: bool) -> None:
        """Release the lease; a completed run (`ran`) starts the next interval."""
        with self.db.write() as conn:
            jobs_repo.finish_job(conn, name, holder, self.clock.now(), ran=ran)
