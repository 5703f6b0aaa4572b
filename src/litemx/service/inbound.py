"""Inbound mail (SPEC §5): durable acceptance, then processing into mailboxes.

accept() is what `250` waits for: a queue row is committed — group-committed with the queue
rows of concurrent sessions (one transaction and one fsync for all of them, each session still
waiting for its own commit; storage/group_commit.py). A message up to INLINE_RAW_BYTES rides in
the row itself and the worker writes its blob (fsynced) before the transaction that marks the
row done; a larger one is fsynced into the blob store before its row is committed. process_due() runs after, in the background worker: parse,
SPF/DKIM/DMARC verdicts, spam signals, threading, attachments, index, audit — all written in
one transaction that also marks the queue row done, so a crash at any point either leaves
the row pending (re-driven later) or fully delivered, never half-stored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from litemx import mailauth
from litemx.core import mime
from litemx.core.delivery import BOUNCE_TARGET
from litemx.core.ids import new_id
from litemx.core.threading import candidate_ids, decide_thread
from litemx.mailauth import AuthResults
from litemx.service import blob_refs, inbound_spool
from litemx.service import simulate as sim
from litemx.service.base import Infra, ServiceBase, operation
from litemx.service.principal import Caller, system_caller
from litemx.service.routing import Route, RoutingService
from litemx.storage import audit_repo, directory_repo, inbound_repo, messages_repo
from litemx.storage.blobs import content_key, put_all
from litemx.storage.group_commit import GroupInserter
from litemx.storage.spool import SpoolError as SpoolError  # re-exported: accept_async raises it (MX: 451)
from litemx.storage.spool import SpoolWriter

log = logging.getLogger("litemx.inbound")

LEASE = timedelta(minutes=5)
STORE_BATCH_BYTES = 8 * 1024 * 1024  # prepared mail (raw size) stored per write transaction
PREPARE_THREADS = 4  # messages of one batch prepared side by side
STORE_HOLD_SECONDS = 0.002  # a storing transaction another writer waits for commits after this long ...
# ... once it has stored this many: each commit is an fsync made under the writer lock, and on a
# busy machine one message alone could take the whole hold (a commit per message).
STORE_MIN_MESSAGES = 4
# A storing transaction no other writer waits for (SQLite: Database.writer_contended) goes on up
# to this long: one commit, and one fsync, for a whole batch instead of one per few messages.
STORE_ALONE_SECONDS = 0.1
MAX_ATTEMPTS = 8
# Queue rows one worker pass claims. With a worker per CPU their storing is serial (one writer)
# and their preparing parallel; a pass this size (~0.1 s of work) lets one worker store while
# another prepares (bench/PROFILE.md, session 5).
PROCESS_BATCH = 50
INLINE_RAW_BYTES = 256 * 1024  # accepted messages up to this size wait in their queue row for the worker
INTERFACE = {"smtp": "smtp", "simulate": "api", "ses": "api"}


class InboundService(ServiceBase):
    spool: SpoolWriter | None = None  # set in front processes on SQLite (see accept_async)

    def __init__(self, infra: Infra, routing: RoutingService, resolver: Any):
        super().__init__(infra)
        self.routing = routing
        self.resolver = resolver
        self.on_accept: Callable[[], None] | None = None  # wakes the worker
        # Mail routed to a MAIL FROM address (service.bounces), applied in the processing transaction.
        self.on_bounce: Callable[[Connection, dict[str, Any], bytes], None] | None = None
        # Looked up at call time so the repository function stays the one seam for the queue insert.
        self._preparers: ThreadPoolExecutor | None = None  # made on first use (after a fork)
        self._pool_lock = threading.Lock()
        self._queue_rows = GroupInserter(infra.db, _enqueue_holding, "inbound")
        self._ahead = _LeasedAhead()

    def route_recipient(self, recipient: str, *, client_ip: str | None = None, audit: bool = False) -> Route:
        """Route one RCPT (SPEC §5). With `audit`, a refusal writes `inbound.rejected` (SPEC §9).

        Raises: what the database raises (the SMTP caller answers 451).
        """
        route = self.routing.resolve(recipient)
        if audit and not route.accepted:
            self._audit_rejection(route, client_ip)
        return route

    def close(self) -> None:
        try:
            rows = self._ahead.take()
            if rows:  # leased for a pass that will not run: due again now, for this or another worker
                with self.db.write() as conn:
                    inbound_repo.unlease(conn, [row["id"] for row in rows], self.clock.now())
        finally:  # a failed give-back leaves them to their lease's end, as a crash would
            if self._preparers is not None:
                self._preparers.shutdown(wait=True)
                self._preparers = None

    def cached_route(self, recipient: str) -> Route | None:
        """An accepted route known without touching the database's pool (RoutingService.cached);
        None: call route_recipient (a refusal is never answered from here: it writes an audit
        event)."""
        route = self.routing.cached(recipient)
        return route if route is not None and route.accepted else None

    def _audit_rejection(self, route: Route, client_ip: str | None) -> None:
        # A relay attempt names no hosted domain, so its event has no account (operator-only,
        # like auth.denied for an unknown token). The SMTP listener bounds how many one
        # connection can cause (smtp_max_rejected_recipients).
        with self.db.write() as conn:
            audit_repo.append(conn, {
                "at": self.clock.now(), "account_id": route.account_id, "actor_type": "system", "actor_id": None,
                "actor_name": "system", "interface": "smtp", "action": "inbound.rejected",
                "resource_type": "recipient", "resource_id": route.recipient[:320], "mailbox": None,
                "outcome": "denied", "ip": client_ip, "user_agent": None,
                "details": {"rcpt": route.recipient[:320], "reason": route.reject, "client_ip": client_ip}})

    def accept(self, raw: bytes, mail_from: str, routes: Sequence[Route], *, client_ip: str | None = None,
               helo: str | None = None, source: str = "smtp") -> int:
        """Store durably and queue; returns the queue id. Only after this returns may SMTP say 250.

        Raises: whatever the blob store raises, GroupCommitError (chained to the database's
            error) when the queue row was not committed; the caller answers 451.
        """
        # A small message rides in its queue row: one (group) commit before `250` instead of a
        # blob write with its file and directory fsyncs; the worker writes the blob later.
        inline = len(raw) <= INLINE_RAW_BYTES
        key = content_key(raw) if inline else self.infra.blobs.put(raw)
        queue_id = int(self._queue_rows.add(self._queue_row(raw, key, inline, mail_from, routes, client_ip, helo,
                                                            source)))
        if not inline:
            # Held in the queue row's transaction (_enqueue_holding), so from its commit on no run
            # deletes it; one that did between the put and the hold (the same bytes seen before:
            # an SES redelivery) is undone here, before the answer.
            blob_refs.put_missing(self.infra.blobs, {key: raw})
        self._wake_worker()
        return queue_id

    def accepts_on_loop(self, raw: bytes) -> bool:
        """Whether accept_async takes this message without a thread: it rides in its queue row."""
        return len(raw) <= INLINE_RAW_BYTES

    async def accept_async(self, raw: bytes, mail_from: str, routes: Sequence[Route], *,
                           client_ip: str | None = None, helo: str | None = None,
                           source: str = "smtp") -> int | str:
        """accept() for a small message (accepts_on_loop) from an event loop; returns the queue
        id, or where the row waits in the spool. With a spool (front processes on SQLite,
        supervisor.py) the row is appended to it and synced with its neighbours', and the
        workers move it into the queue (service/inbound_spool.py): no database lock on the
        `250` path. Otherwise it joins the group commit without a thread hop of its own.

        Raises: SpoolError, GroupCommitError (as accept()).
        """
        row = self._queue_row(raw, content_key(raw), True, mail_from, routes, client_ip, helo, source)
        spooled = self.spool
        queue_ref = (await spooled.append(inbound_spool.encode(row)) if spooled is not None
                     else int(await self._queue_rows.add_async(row)))
        self._wake_worker()
        return queue_ref

    def _queue_row(self, raw: bytes, key: str, inline: bool, mail_from: str, routes: Sequence[Route],
                   client_ip: str | None, helo: str | None, source: str) -> dict[str, Any]:
        now = self.clock.now()
        return {"received_at": now, "raw_key": key, "size": len(raw), "mail_from": mail_from[:320],
                "recipients": _recipients(routes), "client_ip": client_ip, "helo": _helo_column(helo),
                "source": source, "status": "pending", "attempts": 0, "next_attempt_at": now,
                "raw": raw if inline else None}

    def _wake_worker(self) -> None:
        if self.on_accept is None:
            return
        try:
            self.on_accept()
        except Exception:  # noqa: BLE001 - top-level guard: the message is committed; a failed
            # wake-up must not turn the 250 into a 451 (a retry would duplicate it). The
            # worker's poll picks the row up anyway.
            log.exception("could not wake the inbound worker")

    def warm_up(self) -> None:
        """What a worker process loads before its first message (mailauth.warm_up)."""
        mailauth.warm_up()

    def release_leases(self) -> int:
        with self.db.write() as conn:
            return inbound_repo.release_leases(conn, self.clock.now())

    def process_due(self, limit: int = PROCESS_BATCH, *, lease_ahead: bool = False) -> int:
        """Process up to `limit` due queue rows (or the rows the last pass leased ahead);
        returns how many were claimed.

        Parsing and verdicts (DNS) happen outside any transaction, side by side; then every
        blob of the batch is made durable together (_write_blobs); then the prepared messages
        are stored, many per write transaction (_store_batch): a message that fails to store
        is rolled back and deferred alone while the others commit.

        `lease_ahead` (the worker loop, which calls again at once while there is work): the
        last storing transaction also leases the next pass's rows, so the next pass starts
        preparing without waiting for the writer lock, which another worker may be holding
        to store. Without it, two workers fell into step: both preparing, then both waiting
        on each other to store. Rows leased ahead and never processed are released by close().
        """
        rows = self._ahead.take()
        if not rows:
            with self.db.write(background=True) as conn:
                rows = inbound_repo.lease_due(conn, self.clock.now(), LEASE, limit)
        chunks = list(_chunks(rows, STORE_BATCH_BYTES))
        for n, chunk in enumerate(chunks, 1):
            next_pass = limit if lease_ahead and n == len(chunks) else 0
            self._store_batch(self._write_blobs(self._prepare_all(chunk)), next_pass)
        return len(rows)

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:  # simulate() and the worker may both be the first caller
            if self._preparers is None:
                self._preparers = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="litemx-prepare")
            return self._preparers

    def _prepare_all(self, rows: list[dict[str, Any]]) -> list[Prepared]:
        """Prepare side by side: a message's verdicts may wait on DNS, which threads overlap;
        the parsing itself still takes turns on the GIL."""
        if len(rows) == 1:
            return [(rows[0], self._prepare_guarded(rows[0]))]
        return list(zip(rows, self._pool().map(self._prepare_guarded, rows), strict=True))

    def _prepare_guarded(self, row: dict[str, Any]) -> Delivery | str:
        """What storing needs, or the error text to defer the row with."""
        try:
            return self._prepare(row)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the queue
            log.exception("inbound queue row %s failed (attempt %s)", row["id"], row["attempts"] + 1)
            return f"{type(exc).__name__}: {exc}"

    def _prepare(self, row: dict[str, Any]) -> Delivery:
        raw = self._raw(row)
        parsed = mime.parse_message(raw)
        # The From fields as parse_message read them (DMARC and the phishing signals both use them).
        author = (mailauth.from_fields(parsed.from_fields) if parsed.from_fields is not None
                  else mailauth.parse_from(raw))
        auth = mailauth.evaluate(raw, client_ip=row["client_ip"] or "", helo=row["helo"] or "",
                                 mail_from=row["mail_from"], resolver=self.resolver, now=row["received_at"],
                                 author=author)
        return Delivery(row, raw, parsed, auth, author)

    def _raw(self, row: dict[str, Any]) -> bytes:
        """The message's bytes: in its queue row (inline), or in the blob store."""
        if row.get("raw") is None:
            return self.infra.blobs.get(row["raw_key"])
        return bytes(row["raw"])

    def _write_blobs(self, batch: list[Prepared]) -> list[Prepared]:
        """Make the blobs of every prepared message durable, all together (blobs.put_all: one
        round of fsyncs for the batch instead of two or three per blob): its attachments and,
        for a message riding in its queue row, its raw bytes. Only after this may the
        transaction that marks a row done — and drops its inline copy — run. When the write
        fails, every message of the batch is deferred with its bytes still in its row.
        """
        ready = [(row, d) for row, d in batch if isinstance(d, Delivery)]
        items = [data for row, d in ready for data in _blob_items(row, d).values()]
        try:
            put_all(self.infra.blobs, items, self._pool())
        except Exception:  # noqa: BLE001 - a blob store outage must not stop the queue
            log.warning("writing the blobs of %d inbound messages together failed; writing them one message "
                        "at a time", len(ready), exc_info=True)
            # One message's blob (an S3 object refused) must not defer its neighbours with it.
            return [(row, self._write_alone(row, d) if isinstance(d, Delivery) else d) for row, d in batch]
        return batch

    def _write_alone(self, row: dict[str, Any], d: Delivery) -> Delivery | str:
        try:
            put_all(self.infra.blobs, list(_blob_items(row, d).values()))
        except Exception as exc:  # noqa: BLE001 - deferred with its bytes still in its row
            log.exception("writing the blobs of inbound queue row %s failed", row["id"])
            return f"{type(exc).__name__}: {exc}"
        return d

    def _store_batch(self, batch: list[Prepared], next_pass: int = 0) -> None:
        """Store in as few transactions as keep the writer lock short for those who wait: each
        is a background writer (see storage/db.py WriterLock) that ends after STORE_HOLD_SECONDS
        once a foreground writer waits (_store_in), so SMTP accepts (whose `250` waits for a
        commit) never queue behind a batch of inserts on SQLite.

        The transaction that stores the last of the batch also leases up to `next_pass` rows
        for the next pass (process_due's `lease_ahead`).

        Raises: what the database raises for a transaction as a whole (its rows stay leased
        and are re-driven when the lease ends, like after a crash).
        """
        rest = batch
        while rest:
            rest, leased = self._store_some(rest, next_pass)
            self._ahead.put(leased)  # committed: they are this process's to process next

    def _store_some(self, batch: list[Prepared], next_pass: int) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """One storing transaction; returns what is left for the next. Optimistic: without a
        savepoint per message (two more statements each). When a message fails, the whole
        transaction rolls back and runs again with one SAVEPOINT per message, so the failing
        one is rolled back and deferred alone while the others commit."""
        try:
            with self.db.write(background=True) as conn:
                return self._store_in(conn, batch, next_pass, guarded=False)
        except Exception:  # noqa: BLE001 - retried below, where each failure is logged and deferred
            log.warning("inbound store transaction failed; storing again message by message", exc_info=True)
        with self.db.write(background=True) as conn:
            return self._store_in(conn, batch, next_pass, guarded=True)

    def _store_in(self, conn: Connection, batch: list[Prepared], next_pass: int, *,
                  guarded: bool) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """Store from the head of `batch` until the transaction has stored STORE_MIN_MESSAGES
        and held the writer lock for STORE_HOLD_SECONDS while another writer waits (or for
        STORE_ALONE_SECONDS); returns the rest, and the rows leased for the next pass when
        this transaction stored the last of the batch. Which rows are still pending and what
        they delivered already is read once, and their events and `done` written once at the end."""
        started = time.monotonic()
        held_until, alone_until = started + STORE_HOLD_SECONDS, started + STORE_ALONE_SECONDS
        # Blobs were written before this transaction (_write_blobs): hold their keys now, so no
        # retention run deletes a shared attachment before these rows commit (service/blob_refs).
        # A generator: on SQLite nothing is held, and the keys are never even listed.
        blob_refs.hold(conn, (key for row, d in batch if isinstance(d, Delivery) for key in _blob_items(row, d)))
        unfinished = inbound_repo.unfinished(conn, [row["id"] for row, _ in batch])
        outcome, taken = _Outcome(), 0
        for row, prepared in batch:
            taken += 1
            done = unfinished.get(row["id"])
            if done is not None:  # otherwise another worker finished it meanwhile: its outcome stands
                self._store_one(conn, row, prepared, done, outcome, guarded)
            if taken >= STORE_MIN_MESSAGES and self._should_commit(held_until, alone_until):
                break
        outcome.write(conn, self.clock.now())
        rest = batch[taken:]
        if rest or not next_pass:
            return rest, []
        return rest, inbound_repo.lease_due(conn, self.clock.now(), LEASE, next_pass)

    def _should_commit(self, held_until: float, alone_until: float) -> bool:
        now = time.monotonic()
        return now > alone_until or (now > held_until and self.db.writer_contended())

    def _store_one(self, conn: Connection, row: dict[str, Any], prepared: Delivery | str, done: set[str],
                   outcome: _Outcome, guarded: bool) -> None:
        if isinstance(prepared, str):
            self._defer(conn, row, prepared)
            return
        try:
            with conn.begin_nested() if guarded else contextlib.nullcontext():
                blob_refs.put_missing(self.infra.blobs, _blob_items(row, prepared))
                events = self._store(conn, row, prepared, done)
                if guarded:  # its event and `done` inside its savepoint too: a failure there is its own
                    _Outcome(events, [row["id"]]).write(conn, self.clock.now())
                    return
        except Exception as exc:  # noqa: BLE001 - rolled back to its savepoint; the rest go on
            if not guarded:
                raise  # _store_some rolls the whole transaction back and stores again, guarded
            log.exception("inbound queue row %s failed (attempt %s)", row["id"], row["attempts"] + 1)
            self._defer(conn, row, f"{type(exc).__name__}: {exc}")
            return
        outcome.events.extend(events)
        outcome.done.append(row["id"])

    def _defer(self, conn: Connection, row: dict[str, Any], error: str) -> None:
        """Try again later, or give up after MAX_ATTEMPTS. The caller knows the row is pending."""
        now = self.clock.now()
        if row["attempts"] + 1 >= MAX_ATTEMPTS:
            # The raw message stays in its row or the blob store; the operator can re-queue it.
            inbound_repo.finish(conn, row["id"], "failed", now, error[:500])
        else:
            inbound_repo.retry_later(conn, row["id"], now + timedelta(seconds=30 * 2 ** row["attempts"]), error)

    def _store(self, conn: Connection, row: dict[str, Any], d: Delivery, done: set[str]) -> list[dict[str, Any]]:
        """Deliver into every recipient mailbox not delivered yet; returns the audit events."""
        events = []
        for target in row["recipients"]:
            if target["mailbox_id"] not in done:
                event = self._deliver(conn, row, target, d)
                if event is not None:
                    events.append(event)
        return events

    def _deliver(self, conn: Connection, row: dict[str, Any], target: dict[str, Any],
                 d: Delivery) -> dict[str, Any] | None:
        """Store one copy; returns its `inbound.delivered` event, appended with the transaction's others."""
        if target["mailbox_id"].startswith(BOUNCE_TARGET) and self.on_bounce is not None:
            self.on_bounce(conn, target, d.raw)
            return None
        box = self._mailbox(conn, target["mailbox_id"])
        if box is None:
            return None  # deleted between acceptance and processing: nothing to deliver into
        caller = system_caller(box["account_id"], interface=INTERFACE.get(row["source"], "system"))
        report = d.report(box["address"].rpartition("@")[2])
        thread_id = self._thread(conn, box, d.parsed, row["received_at"])
        message_id = new_id("msg")
        messages_repo.add_message(conn, _message_row(message_id, target, box, thread_id, d, report))
        messages_repo.add_attachments(conn, _attachment_rows(message_id, d))
        status = "quarantined" if report.quarantine else "received"
        return self._event(caller, "inbound.delivered", "ok", "message", message_id, box["address"], {
            "status": status, "from": d.parsed.from_.address if d.parsed.from_ else None,
            "rcpt": target["rcpt"], "queue_id": row["id"], "spf": d.auth.spf.result,
            "dmarc": d.auth.dmarc.result, "signals": [s.code for s in report.signals]})

    # (transaction, {mailbox id: row}) of the last storing transaction; see _mailbox.
    _mailboxes: tuple[Any, dict[str, dict[str, Any] | None]] | None = None

    def _mailbox(self, conn: Connection, mailbox_id: str) -> dict[str, Any] | None:
        """The target mailbox's row, read once per storing transaction: a batch mostly goes to a
        few mailboxes, and within one transaction the row is what the first read saw (on
        PostgreSQL a concurrent deletion then shows as a failed insert, deferred and retried)."""
        transaction = conn.get_transaction()
        memo = self._mailboxes
        if memo is None or memo[0] is not transaction:
            memo = self._mailboxes = (transaction, {})
        boxes = memo[1]
        if mailbox_id not in boxes:
            boxes[mailbox_id] = directory_repo.mailbox_by_id(conn, mailbox_id)
        return boxes[mailbox_id]

    def _thread(self, conn: Connection, box: dict[str, Any], parsed: mime.ParsedMessage, at: datetime) -> str:
        known = messages_repo.threads_by_message_ids(conn, box["id"], candidate_ids(parsed))
        decision = decide_thread(parsed, received_at=at, thread_of=known,
                                 thread_by_subject=lambda key, since: messages_repo.thread_by_subject(
                                     conn, box["id"], key, since))
        messages_repo.touch_thread(conn, {
            "id": decision.thread_id, "account_id": box["account_id"], "mailbox_id": box["id"],
            "mailbox": box["address"], "subject": parsed.subject[:1000], "subject_key": decision.subject_key[:255]},
            at)
        return decision.thread_id

    @operation("inbound.simulate")
    def simulate(self, caller: Caller, raw: bytes, recipients: list[str], mail_from: str = "",
                 client_ip: str | None = None, helo: str | None = None) -> dict[str, Any]:
        """The SMTP pipeline without SMTP (admin only): route, accept, process now (service/simulate.py).

        Raises: PayloadTooLarge, InvalidRequest (a field, or `recipients` with each refusal's reason).
        """
        sim.check_request(raw, recipients, mail_from, client_ip, helo, self.infra.settings.max_message_bytes)
        routes = [self.route_recipient(r) for r in recipients]
        sim.refuse_unroutable(caller, routes)
        queue_id = self.accept(raw, mail_from, routes, client_ip=client_ip, helo=helo, source="simulate")

        def state() -> dict[str, Any] | None:
            with self.db.read() as conn:
                return messages_repo.queue_state(conn, queue_id)

        outcome = sim.drain(self.process_due, state)
        with self.db.write() as conn:
            delivered = messages_repo.messages_of_queue(conn, queue_id)
            answer = sim.result(queue_id, outcome, routes, delivered)
            self.audit(conn, caller, "inbound.simulate", resource_type="inbound", resource_id=str(queue_id),
                       mailbox=delivered[0]["mailbox"] if len(delivered) == 1 else None,
                       details={"status": answer["status"], "messages": [m["id"] for m in delivered],
                                "recipients": list(recipients), "size": len(raw)})
        return answer


class Delivery:
    """What processing computed once per queue row, shared by every recipient mailbox. Made
    while preparing (outside the writer lock): every column of the message row that does not
    depend on the mailbox, and the signals as seen from each recipient's domain."""

    def __init__(self, row: dict[str, Any], raw: bytes, parsed: mime.ParsedMessage, auth: AuthResults,
                 author: Any):
        self.raw, self.parsed, self.auth, self.author = raw, parsed, auth, author
        # An attachment's sha256 is its content key in every blob store (blobs.content_key).
        self.blob_keys = [a.sha256 for a in parsed.attachments]
        self.columns = _message_columns(row, self)
        self._reports: dict[str, mailauth.SignalReport] = {}
        for target in row["recipients"]:
            self.report(target["rcpt"].rpartition("@")[2])  # mostly the mailbox's domain too

    def report(self, domain: str) -> mailauth.SignalReport:
        """The spam and phishing signals as seen from a mailbox of `domain` (once per domain)."""
        report = self._reports.get(domain)
        if report is None:
            report = self._reports[domain] = mailauth.assess(self.author, domain, self.parsed.text, self.auth)
        return report


Prepared = tuple[dict[str, Any], Delivery | str]  # a leased queue row, and its Delivery or why it failed


class _LeasedAhead:
    """Queue rows this process leased for its next pass (process_due's `lease_ahead`). Whoever
    calls process_due next in this process takes them (the worker, or a simulate request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []

    def put(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows


@dataclass
class _Outcome:
    """What one storing transaction writes at its end: the audit events, the rows done."""

    events: list[dict[str, Any]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)

    def write(self, conn: Connection, at: datetime) -> None:
        if self.events:
            audit_repo.append_many(conn, self.events)
        if self.done:
            inbound_repo.finish_done(conn, self.done, at)


def _chunks(rows: list[dict[str, Any]], max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows, up to about `max_bytes` of raw mail per chunk (at least one row each)."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += row["size"]
        if size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _enqueue_holding(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """The group commit's insert: holds the raw blobs stored before it (large messages)."""
    blob_refs.hold(conn, (row["raw_key"] for row in rows if row["raw"] is None))
    return inbound_repo.enqueue(conn, rows)


def _blob_items(row: dict[str, Any], d: Delivery) -> dict[str, bytes]:
    """What the blob store must hold before the row is done, by key: the attachments and, for
    a message riding in its queue row, its raw bytes."""
    items = {row["raw_key"]: d.raw} if row.get("raw") is not None else {}
    items.update(zip(d.blob_keys, (a.data for a in d.parsed.attachments), strict=True))
    return items


def _helo_column(helo: str | None) -> str | None:
    """HELO text as the queue row keeps it: at most 255 characters, valid UTF-8."""
    if helo is None:
        return None
    return helo[:255].encode("utf-8", "replace").decode("utf-8")


def _recipients(routes: Sequence[Route]) -> list[dict[str, str]]:
    """One entry per distinct mailbox: two RCPTs reaching one mailbox deliver one copy."""
    seen: dict[str, dict[str, str]] = {}
    for route in routes:
        for box in route.mailboxes:
            seen.setdefault(box["id"], {"rcpt": route.recipient, "mailbox_id": box["id"]})
    return list(seen.values())


def _addr_list(addresses: Sequence[mime.Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def _message_row(message_id: str, target: dict[str, Any], box: dict[str, Any], thread_id: str, d: Delivery,
                 report: mailauth.SignalReport) -> dict[str, Any]:
    return {
        **d.columns, "id": message_id, "account_id": box["account_id"], "mailbox_id": box["id"],
        "mailbox": box["address"], "thread_id": thread_id,
        "status": "quarantined" if report.quarantine else "received", "rcpt": target["rcpt"],
        "signals": report.to_dict(),
    }


def _message_columns(row: dict[str, Any], d: Delivery) -> dict[str, Any]:
    """The message row's columns that every recipient mailbox's copy shares."""
    return {
        **parsed_columns(d.parsed), "direction": "inbound", "queue_id": row["id"], "mail_from": row["mail_from"],
        "received_at": row["received_at"], "size": row["size"], "raw_key": row["raw_key"],
        "auth": {**d.auth.to_dict(), "header": mailauth.render_header(d.auth, "litemx")},
        "deleted_content_at": None,
    }


def parsed_columns(p: mime.ParsedMessage) -> dict[str, Any]:
    """The message row's columns that come from the parsed message alone (bench/search_bulk.py
    loads large stores with them too)."""
    return {
        "message_id_header": p.message_id, "in_reply_to": p.in_reply_to, "references": list(p.references),
        "subject": p.subject, "from_name": p.from_.name if p.from_ else None,
        "from_addr": p.from_.address if p.from_ else None, "to_addrs": _addr_list(p.to),
        "cc_addrs": _addr_list(p.cc), "reply_to": _addr_list(p.reply_to), "sent_at": p.date,
        "text_body": p.text, "html_body": p.html, "snippet": mime.snippet(p.text),
        "headers": [list(h) for h in p.headers], "has_attachments": p.has_attachments,
    }


def _attachment_rows(message_id: str, d: Delivery) -> list[dict[str, Any]]:
    return [{"id": new_id("att"), "message_id": message_id, "position": i, "filename": a.filename[:255],
             "content_type": a.content_type[:255], "size": a.size, "blob_key": key,
             "content_id": a.content_id[:255] if a.content_id else None, "disposition": a.disposition[:16],
             "deleted_at": None}
            for i, (a, key) in enumerate(zip(d.parsed.attachments, d.blob_keys, strict=True))]
