"""Accepted messages through the spool (storage/spool.py): what a record holds, and its import.

Front processes on SQLite append each accepted message's queue row to their spool and answer
`250` once it is synced (InboundService.accept_async); the worker processes, the supervisor at
start and at stop, and a single-process `serve` at start move the records into `inbound_queue`
here, many per transaction. PostgreSQL has no database-wide writer lock to avoid, so there the
queue row is committed directly and no spool exists.
"""

from __future__ import annotations

import json
import logging
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, InternalError, OperationalError, ProgrammingError

from litemx.storage import inbound_repo, spool
from litemx.storage.db import Database
from litemx.storage.schema import inbound_queue

log = logging.getLogger("litemx.spool")

VERSION = 1  # the first byte of every record: a record of another version is never misread
_LENGTH = struct.Struct(">I")
_DATES = ("received_at", "next_attempt_at")
# What one record can cause on decoding and inserting, unlike a failing database.
_DECODE_ERRORS = (ValueError, KeyError, TypeError, struct.error)
_ROW_ERRORS = (IntegrityError, DataError)
# The database failing whatever the rows (down, locked, disk full, a schema it does not have yet).
_DATABASE_ERRORS = (OperationalError, InterfaceError, InternalError, ProgrammingError)


def spool_directory(db: Database) -> Path | None:
    """Where a SQLite database's spool lives (beside its file, like its writer lock); None
    for PostgreSQL and in-memory SQLite."""
    if db.writer is None:
        return None
    path = db.writer.database
    return path.with_name(path.name + "-spool")


def encode(row: dict[str, Any]) -> bytes:
    """A queue row (InboundService._queue_row) as a record: a version byte, JSON fields, then the
    raw message."""
    fields = {k: (v.isoformat() if k in _DATES else v) for k, v in row.items() if k != "raw"}
    header = json.dumps(fields, separators=(",", ":")).encode()
    return bytes([VERSION]) + _LENGTH.pack(len(header)) + header + (row["raw"] or b"")


def decode(payload: bytes) -> dict[str, Any]:
    """Raises: ValueError (an unknown version, or not a record), KeyError, struct.error."""
    if not payload or payload[0] != VERSION:
        version = payload[0] if payload else None
        raise ValueError(f"spool record version {version} is not one this LiteMX reads ({VERSION})")
    (length,) = _LENGTH.unpack_from(payload, 1)
    start = 1 + _LENGTH.size
    row: dict[str, Any] = json.loads(payload[start:start + length])
    for key in _DATES:
        row[key] = datetime.fromisoformat(row[key])
    row["raw"] = payload[start + length:]
    return row


class SpoolImport:
    """Moves a spool's records into inbound_queue (see storage/spool.py for exactly-once)."""

    def __init__(self, db: Database, directory: Path):
        self.db = db
        self.directory = directory

    def run(self) -> int:
        """Import what is there; returns how many queue rows were added.

        Raises: ImportIncomplete (what the database raised is chained: the records stay and are
        imported next time).
        """
        return spool.import_spool(self.directory, self._store)

    def _store(self, payloads: list[bytes], maybe_stored: bool) -> int:
        """The spool's StoreRecords callback (with no payloads: a check that the database takes
        writes).

        Raises: RecordRejected when a record cannot be decoded or breaks a constraint (the spool
        then stores them one by one and keeps the bad one aside); StoreUnavailable when the
        database is failing (everything stays for a later pass).
        """
        try:
            rows = [decode(p) for p in payloads]
        except _DECODE_ERRORS as exc:
            raise spool.RecordRejected(f"cannot decode a spool record: {exc}") from exc
        try:
            return self._insert(rows, maybe_stored)
        except _ROW_ERRORS as exc:
            raise spool.RecordRejected(f"the database refused a spooled row: {exc}") from exc
        except _DATABASE_ERRORS as exc:
            raise spool.StoreUnavailable(f"the database is failing: {exc}") from exc

    def _insert(self, rows: list[dict[str, Any]], maybe_stored: bool) -> int:
        # Background: requests' writes go first; the `250`s these rows stand for are already sent.
        with self.db.write(background=True) as conn:
            if maybe_stored:
                # raw_key hashes the message with its Received line, whose id is unique per
                # transaction: equal keys are the same accepted message. An index lookup
                # (ix_inbound_queue_raw_key), only for a batch whose import was cut off by a crash.
                keys = [r["raw_key"] for r in rows]
                known = set(conn.execute(select(inbound_queue.c.raw_key)
                                         .where(inbound_queue.c.raw_key.in_(keys))).scalars())
                rows = [r for r in rows if r["raw_key"] not in known]
            if rows:
                inbound_repo.enqueue(conn, rows)
        return len(rows)


def import_leftovers(db: Database) -> int:
    """At start-up, before any front appends (and at stop): what an earlier server spooled and did
    not import. Never raises: what cannot be imported now stays, for the workers to import later,
    and must not keep the server from starting."""
    directory = spool_directory(db)
    if directory is None:
        return 0
    try:
        return SpoolImport(db, directory).run()
    except Exception:  # noqa: BLE001 - start-up goes on; the records stay in the spool
        log.exception("could not import the spool %s now; the workers will retry", directory)
        return 0
