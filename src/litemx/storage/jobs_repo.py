"""Cluster-wide periodic jobs: one lease row per job name (see claim_job)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from litemx.storage.schema import job_locks


def claim_job(conn: Connection, name: str, holder: str, now: datetime, lease: timedelta,
              every: timedelta) -> bool:
    """Take the job's lease when it is free and due; True when this holder got it.

    The same lease pattern as the inbound queue, on one row per job: the conditional UPDATE
    is atomic on both databases (PostgreSQL re-checks the WHERE after a concurrent writer
    commits), so across any number of nodes exactly one wins, and `last_run_at` makes the
    cadence cluster-wide rather than per node.
    """
    _ensure_job_row(conn, name)
    free = or_(job_locks.c.leased_until.is_(None), job_locks.c.leased_until <= now, job_locks.c.holder == holder)
    due = or_(job_locks.c.last_run_at.is_(None), job_locks.c.last_run_at <= now - every)
    result = conn.execute(update(job_locks).where(job_locks.c.name == name, free, due)
                          .values(holder=holder, leased_until=now + lease))
    return int(result.rowcount or 0) == 1


def renew_job(conn: Connection, name: str, holder: str, until: datetime) -> bool:
    result = conn.execute(update(job_locks).where(job_locks.c.name == name, job_locks.c.holder == holder)
                          .values(leased_until=until))
    return int(result.rowcount or 0) == 1


def finish_job(conn: Connection, name: str, holder: str, at: datetime, *, ran: bool) -> None:
    values: dict[str, Any] = {"leased_until": None}
    if ran:
        values["last_run_at"] = at
    conn.execute(update(job_locks).where(job_locks.c.name == name, job_locks.c.holder == holder).values(**values))


def _ensure_job_row(conn: Connection, name: str) -> None:
    build = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(build(job_locks).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
