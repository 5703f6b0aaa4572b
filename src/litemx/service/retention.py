"""Retention (SPEC §10): the content window, legal hold, and the cleanup run.

A run, per account, for every mailbox not on legal hold:

1. content past the mailbox's window (received_at < as_of - retention_days) is removed:
   un-indexed from search first (then re-indexed without a body, see retention_repo), raw
   MIME, text/HTML bodies, snippet and headers are dropped, attachments are tombstoned
   (`deleted_at`, hidden from normal reads), and every blob no other row still references is
   deleted from the blob store. Metadata stays: sender, recipients, subject, thread, mailbox,
   timestamps, verdicts, `deleted_content_at`. An outbound message still `queued` keeps its
   content until it leaves (its retries need the raw MIME);
2. message metadata older than 365 days whose content is gone is pruned (so metadata lives
   max(365, retention_days) days), and threads left empty go with it;
3. audit rows older than 365 days are pruned, except those of held mailboxes.

Each step works in batches of `BATCH` messages, one short transaction each, so a million
expired messages never hold one long lock; a blob is deleted inside the transaction that
drops its last reference, before commit, so an interrupted run leaves at worst rows that
still look expired (the next run finishes them) and never an orphaned blob. Re-running is
harmless: every step selects only what is still due.

Each run writes exactly one `retention.cleanup` event per account (actor `system`,
interface `system`) with the counts. The scheduled run (RetentionWorker) sweeps every account
under a cluster-wide job lock; `POST /api/retention/run` sweeps the caller's account only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from litemx.errors import invalid_field
from litemx.service.base import Infra, ServiceBase, operation
from litemx.service.blob_refs import delete_unreferenced
from litemx.service.directory import DirectoryService
from litemx.service.principal import Caller, system_caller
from litemx.service.render import iso
from litemx.storage import directory_repo
from litemx.storage import retention_repo as repo

log = logging.getLogger("litemx.retention")

BATCH = 500
METADATA_DAYS = 365
AS_OF_MIN_YEAR, AS_OF_MAX_YEAR = 2000, 9000
JOB = "retention"
JOB_LEASE = timedelta(minutes=15)
ORPHAN_GRACE = timedelta(days=1)  # an unreferenced blob younger than this may be a write in progress

Heartbeat = Callable[[], None]


class RunInterrupted(Exception):
    """Raised by a heartbeat to end a run between batches (the server is stopping)."""


@dataclass
class CleanupCounts:
    """What one run changed in one account (the `retention.cleanup` event's details)."""

    messages_cleaned: int = 0
    attachments_tombstoned: int = 0
    blobs_deleted: int = 0
    messages_pruned: int = 0
    audit_pruned: int = 0
    mailboxes_skipped_on_hold: int = 0


class RetentionService(ServiceBase):
    def __init__(self, infra: Infra, directory: DirectoryService):
        super().__init__(infra)
        self.directory = directory

    # -- legal hold ------------------------------------------------------------------------
    @operation("mailboxes.legal_hold")
    def set_legal_hold(self, caller: Caller, address: str, hold: bool) -> dict[str, Any]:
        """Put a mailbox on legal hold (retention and purge skip it) or release it.

        Raises: Forbidden (not the admin token), NotFound, InvalidRequest (hold not a boolean).
        """
        if not isinstance(hold, bool):
            raise invalid_field("hold", "hold must be true or false")
        with self.db.write() as conn:
            row = self.directory.visible_mailbox(conn, caller, address)
            directory_repo.update_mailbox(conn, row["id"], {"legal_hold": hold})
            self.audit(conn, caller, "mailbox.legal_hold", resource_type="mailbox", resource_id=row["id"],
                       mailbox=row["address"], details={"from": bool(row["legal_hold"]), "to": hold})
        return {"mailbox": row["address"], "days": row["retention_days"], "legal_hold": hold}

    # -- runs ------------------------------------------------------------------------------
    @operation("retention.run")
    def run(self, caller: Caller, as_of: datetime | None = None) -> dict[str, Any]:
        """Sweep the caller's account as if it were `as_of` (default now).

        Raises: Forbidden (not the admin token), InvalidRequest (as_of without a timezone).
        """
        when = self._as_of(as_of)
        p = caller.principal
        requested = {"by": "token", "token_id": p.token_id, "name": p.name, "interface": caller.interface}
        counts = self._sweep_account(p.account_id, when, requested, None)
        return {"as_of": iso(when), "account": p.account_id, "counts": asdict(counts)}

    def run_all(self, as_of: datetime | None = None, heartbeat: Heartbeat | None = None) -> dict[str, Any]:
        """The scheduled run: every account, then instance-level rows (unowned audit, queue).

        Raises: InvalidRequest (naive as_of), Unavailable (blob store down; the next run resumes).
        """
        when = self._as_of(as_of)
        with self.db.read() as conn:
            accounts = repo.account_ids(conn)
        results = {a: asdict(self._sweep_account(a, when, {"by": "schedule"}, heartbeat)) for a in accounts}
        instance = self._sweep_instance(when, heartbeat)
        return {"as_of": iso(when), "accounts": results, "instance": instance}

    def _as_of(self, as_of: datetime | None) -> datetime:
        if as_of is None:
            return self.clock.now()
        if as_of.tzinfo is None:
            raise invalid_field("as_of", "as_of needs a timezone (e.g. 2027-01-01T00:00:00Z)")
        if not AS_OF_MIN_YEAR <= as_of.year <= AS_OF_MAX_YEAR:
            # Far-off dates would overflow once a window is subtracted (a 500, not an answer).
            raise invalid_field("as_of", f"as_of must fall between the years {AS_OF_MIN_YEAR} and {AS_OF_MAX_YEAR}")
        return as_of

    def _audit_cutoff(self, as_of: datetime) -> datetime:
        """Audit rows are pruned by the real clock, never by a claimed future: `as_of` lets an
        admin rehearse content retention, but must not let one call erase the record of what
        every token did (SPEC §9: the audit log is append-only until its 365 days are up)."""
        return min(as_of, self.clock.now()) - timedelta(days=METADATA_DAYS)

    def _sweep_account(self, account_id: str, as_of: datetime, requested: dict[str, Any],
                       heartbeat: Heartbeat | None) -> CleanupCounts:
        counts = CleanupCounts()
        beat = heartbeat or (lambda: None)
        with self.db.read() as conn:
            boxes = repo.account_mailboxes(conn, account_id)
        held = [b["address"] for b in boxes if b["legal_hold"]]
        counts.mailboxes_skipped_on_hold = len(held)
        metadata_cutoff = as_of - timedelta(days=METADATA_DAYS)
        for box in boxes:
            if not box["legal_hold"]:
                self._clean_mailbox(box["id"], as_of - timedelta(days=box["retention_days"]), counts, beat)
                self._prune_mailbox(box["id"], metadata_cutoff, counts, beat)
        counts.audit_pruned = self._prune_audit(account_id, self._audit_cutoff(as_of), held, beat)
        self._record(account_id, as_of, counts, requested)
        return counts

    def _clean_mailbox(self, mailbox_id: str, cutoff: datetime, counts: CleanupCounts, beat: Heartbeat) -> None:
        while True:
            with self.db.write() as conn:
                batch = repo.expired_batch(conn, mailbox_id, cutoff, BATCH)
                if not batch:
                    return
                tombstoned, keys = repo.remove_content(conn, batch, self.clock.now())
                counts.blobs_deleted += delete_unreferenced(conn, self.infra.blobs, keys)
            counts.messages_cleaned += len(batch)
            counts.attachments_tombstoned += tombstoned
            beat()
            if len(batch) < BATCH:
                return

    def _prune_mailbox(self, mailbox_id: str, cutoff: datetime, counts: CleanupCounts, beat: Heartbeat) -> None:
        while True:
            with self.db.write() as conn:
                batch = repo.prunable_batch(conn, mailbox_id, cutoff, BATCH)
                counts.messages_pruned += repo.delete_messages(conn, batch)[0]
            beat()
            if len(batch) < BATCH:
                return

    def _prune_audit(self, account_id: str | None, cutoff: datetime, held: list[str], beat: Heartbeat) -> int:
        total = 0
        while True:
            with self.db.write() as conn:
                n = repo.prune_audit(conn, account_id, cutoff, held, BATCH)
            total += n
            beat()
            if n < BATCH:
                return total

    def _sweep_instance(self, as_of: datetime, heartbeat: Heartbeat | None) -> dict[str, int]:
        """What no account owns: audit of unknown tokens, finished inbound queue rows, and blobs
        nothing references any more."""
        beat = heartbeat or (lambda: None)
        cutoff = as_of - timedelta(days=METADATA_DAYS)
        result = {"audit_pruned": self._prune_audit(None, self._audit_cutoff(as_of), [], beat), "queue_pruned": 0,
                  "blobs_deleted": 0}
        while True:
            with self.db.write() as conn:
                rows = repo.prunable_queue_rows(conn, cutoff, BATCH)
                result["queue_pruned"] += repo.delete_queue_rows(conn, [r["id"] for r in rows])
                result["blobs_deleted"] += delete_unreferenced(conn, self.infra.blobs, {r["raw_key"] for r in rows})
            beat()
            if len(rows) < BATCH:
                break
        result.update(self._sweep_orphans(beat))
        return result

    def _sweep_orphans(self, beat: Heartbeat) -> dict[str, int]:
        """Blobs no row references, last written more than ORPHAN_GRACE ago: left by a writer that
        rolled back, a key a run could not claim in time, a delete that failed (blob_refs). Through
        delete_unreferenced, so a writer about to reference one keeps it; the grace (on the real
        clock, never a run's `as_of`) is a second guard. One sixteenth of the store per day (keys
        starting with one hex digit, by the day's number): every blob is looked at every 16 days
        without statting the whole store daily. A second walk of that sixteenth removes the temp
        files a crash between a blob's write and its rename left there (`temp_files_removed`)."""
        now = self.clock.now()
        before, shard = now - ORPHAN_GRACE, f"{now.toordinal() % 16:x}"
        blobs, total, chunk = self.infra.blobs, 0, []
        for key in blobs.keys_written_before(before, shard=shard):
            chunk.append(key)
            if len(chunk) == BATCH:
                total += self._delete_orphans(chunk)
                chunk = []
                beat()
        total += self._delete_orphans(chunk) if chunk else 0
        return {"orphans_deleted": total, "temp_files_removed": blobs.remove_temp_files_before(before, shard=shard)}

    def _delete_orphans(self, keys: list[str]) -> int:
        # Most blobs are referenced: find the candidates without the writer lock, then delete
        # them (checked again) as a background writer, behind any SMTP accept waiting for it.
        with self.db.read() as conn:
            candidates = set(keys) - repo.referenced_keys(conn, keys)
        if not candidates:
            return 0
        with self.db.write(background=True) as conn:
            return delete_unreferenced(conn, self.infra.blobs, candidates)

    def _record(self, account_id: str, as_of: datetime, counts: CleanupCounts, requested: dict[str, Any]) -> None:
        details = {"as_of": iso(as_of), **asdict(counts), "requested": requested}
        with self.db.write() as conn:
            self.audit(conn, system_caller(account_id), "retention.cleanup", resource_type="retention",
                       details=details)
        log.info("retention for %s as of %s: %s", account_id, iso(as_of), asdict(counts))

    # -- the cluster-wide job lock ---------------------------------------------------------
    def claim_job(self, holder: str, every: timedelta) -> bool:
        """True when this node may run the scheduled job now (it is due and nobody holds it)."""
        with self.db.write() as conn:
            return repo.claim_job(conn, JOB, holder, self.clock.now(), JOB_LEASE, every)

    def renew_job(self, holder: str) -> bool:
        with self.db.write() as conn:
            return repo.renew_job(conn, JOB, holder, self.clock.now() + JOB_LEASE)

    def finish_job(self, holder: str, *, ran: bool) -> None:
        with self.db.write() as conn:
            repo.finish_job(conn, JOB, holder, self.clock.now(), ran=ran)
