#!/usr/bin/env python3
"""bench/search.py at a scale the inbound path cannot reach within a working session: the same
corpus, queries, timing and notmuch side, but LiteMX's store is loaded in bulk.

Usage: `BENCH_WORK=/tmp/lb1m python bench/search_bulk.py --count 1000000` (~1 hour on 2 cores,
most of it the corpus and `notmuch new`); then `BENCH_WORK=/tmp/lb1m python bench/api.py` runs
the API load and measures memory against the same store.

What the bulk load runs, per message: `litemx.core.mime.parse_message` (in 2 processes),
the product's thread rule (`decide_thread` with the same lookups), `messages_repo.add_message`
(the row, `late`, the FTS5 index) and `touch_thread`, in transactions of 2,000 messages. What
it skips relative to `litemx serve`: the SMTP accept and its queue row, SPF/DKIM/DMARC
verdicts (`auth`/`signals` empty), attachment rows, and blob files (`raw_key` is the content
hash, no file is written). Search, lists and `GET /api/messages/{id}` read none of those, so
the latencies are what a served store of this size answers; the load rate is NOT an indexing
figure (search.py's is: the inbound path, at 100,000 in bench/search_scale.json).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import corpus  # noqa: E402
import search  # noqa: E402
from common import WORK, StubDns, env_int, fmt, say  # noqa: E402

CHUNK = 2_000  # messages per parse round and per storing transaction


def _parse(item: tuple[str, str, str, str, str]) -> dict[str, Any]:
    """In a pool process: the fields add_message stores, from the product's parser."""
    from litemx.core import mime
    from litemx.service.inbound import parsed_columns

    name, corpus_dir, mail_from, rcpt, date = item
    raw = (Path(corpus_dir) / "eml" / name).read_bytes().replace(b"\n", b"\r\n")
    return {**parsed_columns(mime.parse_message(raw)), "rcpt": rcpt, "received_at": datetime.fromisoformat(date),
            "mail_from": mail_from, "size": len(raw), "raw_key": hashlib.sha256(raw).hexdigest()}


def _store(conn: Any, boxes: dict[str, dict[str, Any]], m: dict[str, Any]) -> None:
    from litemx.core.ids import new_id
    from litemx.core.threading import candidate_ids, decide_thread
    from litemx.storage import messages_repo

    box = boxes[m.pop("rcpt")]
    known = messages_repo.threads_by_message_ids(conn, box["id"], candidate_ids(_Headers(m)))
    decision = decide_thread(_Headers(m), received_at=m["received_at"], thread_of=known,
                             thread_by_subject=lambda key, since: messages_repo.thread_by_subject(
                                 conn, box["id"], key, since))
    messages_repo.touch_thread(conn, {
        "id": decision.thread_id, "account_id": box["account_id"], "mailbox_id": box["id"],
        "mailbox": box["address"], "subject": m["subject"][:1000], "subject_key": decision.subject_key[:255]},
        m["received_at"])
    messages_repo.add_message(conn, {
        **m, "id": new_id("msg"), "account_id": box["account_id"], "mailbox_id": box["id"], "mailbox": box["address"],
        "thread_id": decision.thread_id, "direction": "inbound", "status": "received", "queue_id": None,
        "rcpt": box["address"], "auth": {}, "signals": {}, "deleted_content_at": None})


class _Headers:
    """The threading view (core/threading.ThreadingHeaders) of a parsed row."""

    def __init__(self, m: dict[str, Any]) -> None:
        self.message_id, self.in_reply_to = m["message_id_header"], m["in_reply_to"]
        self.references, self.subject = tuple(m["references"]), m["subject"]


def bulk_load(services: Any, corpus_dir: Path) -> dict[str, Any]:
    from litemx.storage import directory_repo

    rows = [line.rstrip("\n").split("\t") for line in (corpus_dir / "index.tsv").open()]
    items = [(name, str(corpus_dir), mail_from, rcpt, date) for name, _md, mail_from, rcpt, date in rows]
    with services.infra.db.read() as conn:
        boxes = {rcpt: directory_repo.mailbox_by_address(conn, rcpt) for rcpt in {i[3] for i in items}}
    started, stored = time.monotonic(), 0
    with Pool(2) as pool:
        # imap: the pool parses ahead while this process stores (in order, so seq follows the corpus).
        parsed = pool.imap(_parse, items, chunksize=50)
        for start in range(0, len(items), CHUNK):
            with services.infra.db.write() as conn:
                for _ in range(min(CHUNK, len(items) - start)):
                    _store(conn, boxes, next(parsed))
                    stored += 1
            if stored % 50_000 < CHUNK:
                say(f"  bulk: {stored:,} stored, {stored / (time.monotonic() - started):,.0f} msg/s")
    wall = time.monotonic() - started
    db_mb = sum(p.stat().st_size for p in services.infra.settings.data_dir.glob("litemx.db*")) / 2**20
    return {"processed": stored, "indexed": stored, "wall_s": round(wall, 1), "load_per_s": stored / wall,
            "db_mb": round(db_mb, 1), "mode": "bulk"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_SEARCH_ROUNDS", 30))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--time-limit", type=float, default=7200, help="bound (s) on `notmuch new`")
    parser.add_argument("--retime", action="store_true",
                        help="only time the queries again on the stores a previous run left (e.g. on a quieter machine)")
    args = parser.parse_args(argv)
    corpus_dir = WORK / f"corpus-{args.count}"
    if args.retime:
        return retime(corpus_dir, args.rounds)
    manifest = corpus.ensure(args.count, corpus_dir, args.seed, corpus.recent_start())
    queries = search.query_set(manifest)
    results: dict[str, Any] = {"params": {"count": args.count, "rounds": args.rounds, "seed": args.seed},
                               "queries": queries}
    # `notmuch new` indexes the same corpus meanwhile (its own process): both finish within a
    # session; its rate here is therefore not comparable with search.py's (see the doc).
    env = search.notmuch_env(corpus_dir)
    notmuch: dict[str, Any] = {}
    indexer = threading.Thread(target=lambda: notmuch.update(search.index_notmuch(corpus_dir, env, args.time_limit)))
    indexer.start()
    clock = search.SettableClock()
    with StubDns() as dns:
        services, caller = search.build_litemx(WORK / "search-data", dns.address, clock)
        try:
            lx = results["litemx_index"] = bulk_load(services, corpus_dir)
            say(f"  LiteMX bulk load: {fmt(lx['processed'])} messages in {fmt(lx['wall_s'])} s "
                f"({fmt(lx['load_per_s'])} msg/s, not an indexing figure); db {fmt(lx['db_mb'])} MB")
            clock.at = datetime.now(UTC)
            results["litemx_search"] = search.time_litemx(services, caller, queries, args.rounds)
        finally:
            services.close()
    indexer.join()
    nm = results["notmuch_index"] = {**notmuch, "concurrent_with_bulk_load": True}
    say(f"  notmuch new (beside the bulk load): {fmt(nm.get('indexed'))} messages, {fmt(nm.get('index_per_s'))} "
        f"msg/s, db {fmt(nm.get('db_mb'))} MB {nm.get('error', '')}")
    results["notmuch_search"] = search.time_notmuch(queries, env, args.rounds)
    search.print_table(results)
    common.save("search", results)
    return 0


def retime(corpus_dir: Path, rounds: int) -> int:
    """The timing half again, on the LiteMX data dir and notmuch database already built."""
    from litemx.app import build_services
    from litemx.settings import Settings

    results = common.load("search")
    if not results:
        say(f"  nothing to retime: no search results under {WORK} (run without --retime first)")
        return 1
    data = WORK / "search-data"
    clock = search.SettableClock()
    with StubDns() as dns:
        settings = Settings.load({}, data_dir=data, dns_servers=dns.address, hostname="mx.bench.example",
                                 log_level="WARNING")
        services = build_services(settings, clock=clock, migrate=False)
        try:
            caller = services.auth.authenticate((data / "bench-token").read_text().strip(), "api", "127.0.0.1",
                                                "bench")
            clock.at = datetime.now(UTC)
            results["litemx_search"] = search.time_litemx(services, caller, results["queries"], rounds)
        finally:
            services.close()
    results["notmuch_search"] = search.time_notmuch(results["queries"], search.notmuch_env(corpus_dir), rounds)
    results["params"]["rounds"] = rounds
    results["retimed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    search.print_table(results)
    common.save("search", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
