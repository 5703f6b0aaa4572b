#!/usr/bin/env python3
"""What-if experiments on the inbound path, in-process, to size the fixes PROFILE.md proposes.

    python bench/whatif.py [--messages 1000] [--batch 50]

Not a product benchmark: it monkeypatches LiteMX *in this process only* (nothing in src/ changes)
to estimate what a fix would buy before anyone writes it. Same corpus, same stub DNS, fresh data
dir per variant; accept and processing are timed separately, single-threaded.

  baseline          the code as it is: one transaction (and fsync) per accept and per message
  batched-commit    N accepts share one write transaction; process_due's lease and its N messages
                    share one transaction (what group commit / per-batch delivery would do)
  batched+no-blob-fsync   the same, and FileBlobStore skips its two fsyncs (what storing the raw
                    message in the queue row, or fsyncing a batch of blobs once, would approach)
  no-fsync-at-all   synchronous=OFF and no blob fsyncs: the CPU-only ceiling (NOT durable)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import corpus  # noqa: E402
import search  # noqa: E402
from common import WORK, StubDns, fmt, say  # noqa: E402


@contextlib.contextmanager
def patched(batched: bool, blob_fsync: bool, sync_off: bool) -> Iterator[dict[str, Any]]:
    from litemx.storage import blobs, db

    state: dict[str, Any] = {"conn": None}
    orig_write, orig_fsync, orig_hooks = db.Database.write, os.fsync, db._install_sqlite_hooks

    @contextlib.contextmanager
    def write(self: Any) -> Iterator[Any]:
        if state["conn"] is not None:
            yield state["conn"]
            return
        with orig_write(self) as conn:
            state["conn"] = conn
            try:
                yield conn
            finally:
                state["conn"] = None

    def hooks(engine: Any) -> None:
        orig_hooks(engine)
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _off(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA synchronous=OFF")

    class _Os:
        def __getattr__(self, name: str) -> Any:
            return (lambda fd: None) if name == "fsync" else getattr(os, name)

    if batched:
        db.Database.write = write  # type: ignore[method-assign]
    if not blob_fsync:
        blobs.os = _Os()  # type: ignore[attr-defined]
    if sync_off:
        db._install_sqlite_hooks = hooks  # type: ignore[assignment]
    try:
        yield state
    finally:
        db.Database.write = orig_write  # type: ignore[method-assign]
        blobs.os = os  # type: ignore[attr-defined]
        db._install_sqlite_hooks = orig_hooks  # type: ignore[assignment]
        assert os.fsync is orig_fsync


def run_variant(name: str, corpus_dir: Path, dns: str, n: int, batch: int, *, batched: bool, blob_fsync: bool,
                sync_off: bool) -> dict[str, Any]:
    from datetime import datetime

    clock = search.SettableClock()
    with patched(batched, blob_fsync, sync_off):
        services, _caller = search.build_litemx(WORK / f"whatif-{name}", dns, clock)
        inbound, db = services.inbound, services.infra.db
        rows = [line.rstrip("\n").split("\t") for line in (corpus_dir / "index.tsv").open()][:n]
        raws = [(corpus_dir / "eml" / r[0]).read_bytes().replace(b"\n", b"\r\n") for r in rows]
        routes = {r[3]: inbound.route_recipient(r[3]) for r in rows}
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), batch):
            ctx = db.write() if batched else contextlib.nullcontext()
            with ctx:
                for row, raw in zip(rows[i:i + batch], raws[i:i + batch], strict=True):
                    clock.at = datetime.fromisoformat(row[4])
                    inbound.accept(raw, row[2], [routes[row[3]]], client_ip="127.0.0.1", helo="client.example")
        accept_s, accept_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        for _ in range(10 * n):
            ctx = db.write() if batched else contextlib.nullcontext()
            with ctx:
                claimed = inbound.process_due(limit=batch)
            if not claimed:
                break
        process_s, process_cpu = time.perf_counter() - t, time.process_time() - c
        from sqlalchemy import text

        with db.read() as conn:
            stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        services.close()
    return {"accept_per_s": n / accept_s, "process_per_s": stored / process_s, "stored": stored,
            "accept_cpu_ms": accept_cpu * 1000 / n, "process_cpu_ms": process_cpu * 1000 / max(stored, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args(argv)
    corpus_dir = WORK / f"corpus-{args.messages}"
    corpus.ensure(args.messages, corpus_dir, 42, corpus.recent_start())
    variants = [("baseline", False, True, False), ("batched-commit", True, True, False),
                ("batched+no-blob-fsync", True, False, False), ("no-fsync-at-all", True, False, True)]
    say(f"== what-if, in-process, {args.messages} corpus messages, batch {args.batch}; "
        f"load average {os.getloadavg()[0]:.2f}")
    out = {}
    with StubDns() as dns:
        for name, batched, blob_fsync, sync_off in variants:
            r = out[name] = run_variant(name, corpus_dir, dns.address, args.messages, args.batch, batched=batched,
                                        blob_fsync=blob_fsync, sync_off=sync_off)
            say(f"  {name:<24} accept {fmt(r['accept_per_s'])}/s ({fmt(r['accept_cpu_ms'], 2)} ms CPU/msg)   "
                f"process {fmt(r['process_per_s'])}/s ({fmt(r['process_cpu_ms'], 2)} ms CPU/msg)   "
                f"(stored {r['stored']})")
    common.save("whatif", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
