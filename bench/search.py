#!/usr/bin/env python3
"""Index one corpus into LiteMX and into notmuch, then time the same queries on both.

    python bench/search.py [--count 10000] [--rounds 30]

LiteMX indexing runs through the inbound service, as `litemx serve` runs it minus the SMTP
framing (measured by smtp_ingest.py): every message is accepted first — `InboundService.accept`,
one durable queue row each, what `250` waits for — then worker processes (one per CPU, as
supervisor.py starts them) drain the queue with `process_due` (parse, SPF/DKIM/DMARC against a
loopback stub DNS answering NXDOMAIN, threading, attachments, blobs, FTS5 index, audit), on a
fresh SQLite data dir, with the clock set to each message's Date so `after:`/`before:` mean the
same as notmuch's `date:`. "Queue to searchable" is the drain alone: `notmuch new`'s job, whose
maildir is on disk before it starts; "with the accept in series" adds the accepting time.
notmuch: `notmuch new` over the corpus' maildir with a throwaway NOTMUCH_CONFIG.

Queries (picked by corpus.py from the corpus itself): rare word, common word, phrase, from:,
date range, combined. Each system answers "the 20 newest matches":
  - LiteMX service: `services.messages.search(caller, q)` — the code path behind
    `GET /api/messages/search` (parse, scope, FTS5 + snippet, audit event, commit);
    skipped with a note when the service is not there yet;
  - LiteMX FTS5 floor: one hand-written SQL statement over `message_fts` using
    `litemx.core.searchquery.to_fts5` (no audit), in two shapes: ordered by messages.seq (as the
    storage layer does) and ordered by the FTS rowid (lets FTS5 stop after 20 rows);
  - notmuch: Debian's notmuch2 bindings in one long-lived process (20 newest messages, and
    20 newest threads), plus the CLI `notmuch search --output=threads --limit=20` (includes
    process start-up, as a user at a terminal sees it).
The LiteMX data dir is kept ($BENCH_WORK/search-data) for api.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import corpus  # noqa: E402
from common import WORK, StubDns, env_int, fmt, latency_summary, say  # noqa: E402

DEBIAN_PYTHON = "/usr/bin/python3"
PAGE = 20


class SettableClock:
    """The time the code under test sees; a thread that sets `local.at` sees its own (the
    concurrent accepts of --accept-sessions each stamp their message with its own Date)."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)
        self.local = threading.local()

    def now(self) -> datetime:
        return getattr(self.local, "at", None) or self.at


def query_set(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The same six questions in each system's language."""
    q = manifest["queries"]
    day_before = (datetime.fromisoformat(q["date_range"]["before"]).date().toordinal() - 1)
    last_day = datetime.fromordinal(day_before).date().isoformat()
    c = q["combined"]
    return {
        "rare word": {"litemx": q["rare_word"]["word"], "notmuch": q["rare_word"]["word"]},
        "common word": {"litemx": q["common_word"]["word"], "notmuch": q["common_word"]["word"]},
        "phrase": {"litemx": f'"{q["phrase"]["phrase"]}"', "notmuch": f'"{q["phrase"]["phrase"]}"'},
        "from:": {"litemx": f"from:{q['from']['address']}", "notmuch": f"from:{q['from']['address']}"},
        "date range": {"litemx": f"after:{q['date_range']['after']} before:{q['date_range']['before']}",
                       "notmuch": f"date:{q['date_range']['after']}..{last_day}"},
        "combined": {"litemx": f"from:{c['from']} {c['word']} after:{c['after']}",
                     "notmuch": f"from:{c['from']} {c['word']} date:{c['after']}.."},
    }


# --------------------------------------------------------------------------- LiteMX


def build_litemx(data_dir: Path, dns: str, clock: SettableClock) -> tuple[Any, Any]:
    from litemx.app import build_services
    from litemx.settings import Settings

    if data_dir.exists():
        shutil.rmtree(data_dir)
    settings = Settings.load({}, data_dir=data_dir, dns_servers=dns, hostname="mx.bench.example",
                             log_level="WARNING")
    services = build_services(settings, clock=clock)
    _account, token = services.auth.create_account("bench", "scale")
    caller = services.auth.authenticate(token, "api", "127.0.0.1", "bench")
    services.directory.create_domain(caller, common.DOMAIN)
    for local in common.MAILBOXES:
        services.directory.create_mailbox(caller, f"{local}@{common.DOMAIN}")
        # The corpus is dated up to ~11 months back: keep its content through the server's retention.
        services.directory.set_retention(caller, f"{local}@{common.DOMAIN}", 3650)
    (data_dir / "bench-token").write_text(token)
    return services, caller


def build_services_again(settings: Any, clock: SettableClock) -> Any:
    from litemx.app import build_services

    return build_services(settings, clock=clock, migrate=False)


def index_workers(services: Any, clock: SettableClock, corpus_dir: Path, limit_s: float, processes: int,
                  sessions: int = 1) -> dict[str, Any]:
    """The corpus as `litemx serve` indexes it: every message accepted first (durable in the
    queue, as SMTP leaves it), then the queue drained by `processes` forked worker processes
    over one database, each calling `process_due(lease_ahead=True)` with the worker's own batch
    size, as workers.py does (supervisor.py runs one worker per CPU). notmuch new's job is the second
    half: its maildir is already on disk when it starts."""
    from litemx.app import build_services

    inbound = services.inbound
    inbound.on_accept = None
    rows = [line.rstrip("\n").split("\t") for line in (corpus_dir / "index.tsv").open()]
    acceptor = Acceptor(services, clock, corpus_dir, sessions)
    mails = acceptor.load(rows)
    t, c = time.perf_counter(), time.process_time()
    acceptor.accept_all(mails)
    accept_s, accept_cpu = time.perf_counter() - t, time.process_time() - c
    acceptor.close()
    settings = services.infra.settings
    services.close()
    parts = WORK / "results" / "index-parts"
    parts.mkdir(parents=True, exist_ok=True)
    ready, go = os.pipe(), os.pipe()
    pids = []
    for k in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:  # started like a worker (services built) before the clock starts
                worker = build_services(settings, clock=clock, migrate=False)
                worker.inbound.warm_up()  # as workers.py does before its first pass
                os.write(ready[1], b"r")
                os.read(go[0], 1)
                cpu, began = time.process_time(), time.perf_counter()
                while worker.inbound.process_due(lease_ahead=True) and time.perf_counter() - began < limit_s:
                    pass
                (parts / f"{k}.cpu").write_text(str(time.process_time() - cpu))
                worker.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for _ in pids:
        os.read(ready[0], 1)
    settled = common.settle_caches(settings.data_dir.glob("litemx.db*"))  # the queue rows
    started = time.perf_counter()
    os.write(go[1], b"g" * processes)
    for pid in pids:
        os.waitpid(pid, 0)
    process_s = time.perf_counter() - started
    counts = build_services(settings, clock=clock, migrate=False)
    try:
        processed, indexed, db_mb = _counts(counts)
    finally:
        counts.close()
    return {"mode": "workers", "processes": processes, "caches_dropped": settled, "accepted": len(mails), "processed": processed,
            "indexed": indexed, "accept_s": round(accept_s, 2), "process_s": round(process_s, 2),
            "accept_per_s": len(mails) / accept_s, "process_per_s": processed / process_s,
            "index_per_s": processed / (accept_s + process_s),
            "accept_cpu_ms": accept_cpu * 1000 / max(len(mails), 1),
            "process_cpu_ms": sum(float((parts / f"{k}.cpu").read_text()) for k in range(processes)) * 1000
            / max(processed, 1),
            "db_mb": db_mb}


def _counts(services: Any) -> tuple[int, int, float]:
    """Messages stored, messages in the FTS5 index, and the database's size in MB."""
    from sqlalchemy import text

    with services.infra.db.read() as conn:
        processed = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        indexed = conn.execute(text("SELECT count(*) FROM message_fts_docsize")).scalar_one()
    size = sum(p.stat().st_size for p in services.infra.settings.data_dir.glob("litemx.db*")) / 2**20
    return processed, indexed, round(size, 1)


class Acceptor:
    """Accepts one batch of the corpus like `sessions` concurrent SMTP sessions would: each
    message's `accept` waits for its own durable commit, and concurrent ones share a group commit."""

    def __init__(self, services: Any, clock: SettableClock, corpus_dir: Path, sessions: int) -> None:
        self.inbound, self.clock, self.corpus_dir = services.inbound, clock, corpus_dir
        self.routes: dict[str, Any] = {}
        self.pool = ThreadPoolExecutor(sessions, thread_name_prefix="bench-session") if sessions > 1 else None

    def load(self, rows: list[list[str]]) -> list[tuple[bytes, str, Any, datetime]]:
        """The batch's messages as accept() takes them (read before the clock starts)."""
        return [((self.corpus_dir / "eml" / name).read_bytes().replace(b"\n", b"\r\n"), mail_from,
                 self._route(rcpt), datetime.fromisoformat(date)) for name, _md, mail_from, rcpt, date in rows]

    def accept_all(self, mails: list[tuple[bytes, str, Any, datetime]]) -> None:
        if self.pool is None:
            for mail in mails:
                self._accept(*mail)
        else:
            list(self.pool.map(lambda mail: self._accept(*mail), mails))

    def _route(self, rcpt: str) -> Any:
        return self.routes.get(rcpt) or self.routes.setdefault(rcpt, self.inbound.route_recipient(rcpt))

    def _accept(self, raw: bytes, mail_from: str, route: Any, at: datetime) -> None:
        self.clock.local.at = at
        self.inbound.accept(raw, mail_from, [route], client_ip="127.0.0.1", helo="client.sender.example",
                            source="smtp")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


_FLOOR_SQL = {
    # The storage layer's shape: join, ORDER BY messages.seq, snippet in the select list.
    "seq": ("SELECT m.id, m.subject, snippet(message_fts, 1, '**', '**', '…', 24) FROM messages m "
            "JOIN message_fts ON message_fts.rowid = m.seq WHERE message_fts MATCH :match {extra} "
            "ORDER BY m.seq DESC LIMIT :limit"),
    # FTS5 can walk its doclists newest-first and stop after LIMIT rows when the ORDER BY is its rowid.
    "rowid": ("SELECT m.id, m.subject, snippet(message_fts, 1, '**', '**', '…', 24) FROM message_fts "
              "JOIN messages m ON m.seq = message_fts.rowid WHERE message_fts MATCH :match {extra} "
              "ORDER BY message_fts.rowid DESC LIMIT :limit"),
    "plain": "SELECT m.id, m.subject, m.snippet FROM messages m WHERE 1 {extra} ORDER BY m.seq DESC LIMIT :limit",
}


def floor_statement(q: str, shape: str) -> tuple[Any, dict[str, Any]]:
    from sqlalchemy import bindparam, text

    from litemx.core.searchquery import parse_query, to_fts5
    from litemx.storage.types import UTCDateTime

    query = parse_query(q)
    match = to_fts5(query)
    params: dict[str, Any] = {"limit": PAGE + 1}
    extra = " AND m.account_id IS NOT NULL"
    binds = []
    if query.after_datetime:
        extra += " AND m.received_at >= :after"
        params["after"] = query.after_datetime
        binds.append(bindparam("after", type_=UTCDateTime()))
    if query.before_datetime:
        extra += " AND m.received_at < :before"
        params["before"] = query.before_datetime
        binds.append(bindparam("before", type_=UTCDateTime()))
    if match is not None:
        params["match"] = match
    sql = _FLOOR_SQL["plain" if match is None else shape].format(extra=extra)
    return text(sql).bindparams(*binds), params


def time_litemx(services: Any, caller: Any, queries: dict[str, dict[str, str]], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    service = getattr(getattr(services, "messages", None), "search", None)
    for name, q in queries.items():
        row: dict[str, Any] = {"query": q["litemx"]}
        if service is not None:
            hits = service(caller, q["litemx"], limit=PAGE)
            row["service_hits"] = len(hits.get("items", []))
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                service(caller, q["litemx"], limit=PAGE)
                times.append(time.perf_counter() - t)
            row["service"] = latency_summary(times)
        for shape in ("seq", "rowid"):
            stmt, params = floor_statement(q["litemx"], shape)
            times = []
            with services.infra.db.read() as conn:
                row["floor_hits"] = len(conn.execute(stmt, params).all())
                for _ in range(rounds):
                    t = time.perf_counter()
                    conn.execute(stmt, params).all()
                    times.append(time.perf_counter() - t)
            row[f"floor_{shape}"] = latency_summary(times)
        row["count"] = _litemx_count(services, q["litemx"])
        out[name] = row
    if service is None:
        out["note"] = "services.messages.search not available yet: only the FTS5 floor was timed"
    return out


def _litemx_count(services: Any, q: str) -> int:
    """All matches (no page limit), untimed: to check both systems answer the same question."""
    stmt, params = floor_statement(q, "seq")
    params["limit"] = -1
    with services.infra.db.read() as conn:
        return len(conn.execute(stmt, params).all())


# --------------------------------------------------------------------------- notmuch


def notmuch_env(corpus_dir: Path) -> dict[str, str]:
    config = WORK / "notmuch-config"
    config.write_text(f"[database]\npath={corpus_dir / 'maildir'}\n[user]\nname=Bench\n"
                      f"primary_email=support@{common.DOMAIN}\n[new]\ntags=inbox;\nignore=\n"
                      "[search]\nexclude_tags=\n[maildir]\nsynchronize_flags=false\n")
    return {**os.environ, "NOTMUCH_CONFIG": str(config)}


def index_notmuch(corpus_dir: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    shutil.rmtree(corpus_dir / "maildir" / ".notmuch", ignore_errors=True)
    settled = common.settle_caches([corpus_dir / "maildir"])
    started = time.monotonic()
    proc = common.spawn(["notmuch", "new", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        common.stop(proc)
        return {"error": f"notmuch new timed out after {timeout}s"}
    elapsed = time.monotonic() - started
    common.stop(proc)
    count = subprocess.run(["notmuch", "count", "*"], env=env, capture_output=True, text=True, timeout=60)
    n = int(count.stdout.strip() or 0)
    size = sum(p.stat().st_size for p in (corpus_dir / "maildir" / ".notmuch").rglob("*") if p.is_file())
    return {"indexed": n, "elapsed_s": round(elapsed, 2), "index_per_s": n / elapsed, "db_mb": round(size / 2**20, 1),
            "caches_dropped": settled,
            "returncode": proc.returncode, "stderr": err.decode(errors="replace")[-300:]}


def time_notmuch(queries: dict[str, dict[str, str]], env: dict[str, str], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    spec = WORK / "notmuch-queries.json"
    spec.write_text(json.dumps({name: q["notmuch"] for name, q in queries.items()}))
    if Path(DEBIAN_PYTHON).exists():
        run = subprocess.run([DEBIAN_PYTHON, str(common.BENCH_DIR / "notmuch_query.py"), str(spec), str(rounds)],
                             env=env, capture_output=True, text=True, timeout=600)
        if run.returncode == 0:
            for name, data in json.loads(run.stdout).items():
                out[name] = {"query": data["query"], "count": data["count"],
                             "bindings_messages": latency_summary(data["messages"]),
                             "bindings_threads": latency_summary(data["threads"])}
        else:
            out["bindings_error"] = run.stderr.strip()[-400:]
    for name, q in queries.items():
        times = []
        for _ in range(max(3, rounds // 3)):
            t = time.perf_counter()
            subprocess.run(["notmuch", "search", "--output=threads", "--limit=20", q["notmuch"]], env=env,
                           capture_output=True, timeout=60, check=False)
            times.append(time.perf_counter() - t)
        out.setdefault(name, {"query": q["notmuch"]})["cli_threads"] = latency_summary(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=env_int("BENCH_SEARCH_MESSAGES", 4000))
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_SEARCH_ROUNDS", 30))
    parser.add_argument("--time-limit", type=float, default=float(env_int("BENCH_INDEX_TIME_LIMIT", 900)))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accept-sessions", type=int, default=env_int("BENCH_ACCEPT_SESSIONS", 1),
                        help="messages accepted concurrently, like that many SMTP sessions (1: one after "
                             "another, one commit each; smtp_ingest.py uses 10)")
    parser.add_argument("--index-processes", type=int,
                        default=env_int("BENCH_INDEX_PROCESSES", min(os.cpu_count() or 1, 8)),
                        help="worker processes draining the queue (litemx serve runs one per CPU, up to 8)")
    args = parser.parse_args(argv)
    corpus_dir = WORK / f"corpus-{args.count}"
    t = time.monotonic()
    manifest = corpus.ensure(args.count, corpus_dir, args.seed, corpus.recent_start())
    say(f"== Search: corpus of {manifest['count']:,} messages ({manifest['bytes'] / 2**20:,.0f} MiB) ready "
        f"in {time.monotonic() - t:.1f}s at {corpus_dir}")
    queries = query_set(manifest)
    results: dict[str, Any] = {"params": {"count": args.count, "rounds": args.rounds, "seed": args.seed},
                               "queries": queries}
    clock = SettableClock()
    with StubDns() as dns:
        services, caller = build_litemx(WORK / "search-data", dns.address, clock)
        try:
            lx = index_workers(services, clock, corpus_dir, args.time_limit, args.index_processes,
                               args.accept_sessions)
            services = build_services_again(services.infra.settings, clock)
            results["litemx_index"] = lx
            say(f"  LiteMX index ({lx['processes']} worker process(es) draining the queue, after "
                f"{args.accept_sessions} accepting session(s)): {fmt(lx['processed'])} messages, "
                f"queue to searchable {fmt(lx['process_per_s'])} msg/s, with the accept in series "
                f"{fmt(lx['index_per_s'])} msg/s; "
                f"CPU per message: "
                f"accept {fmt(lx['accept_cpu_ms'], 2)} ms, process {fmt(lx['process_cpu_ms'], 2)} ms; "
                f"db {fmt(lx['db_mb'])} MB")
            clock.at = datetime.now(UTC)
            results["litemx_search"] = time_litemx(services, caller, queries, args.rounds)
        finally:
            services.close()
    if shutil.which("notmuch"):
        env = notmuch_env(corpus_dir)
        nm = results["notmuch_index"] = index_notmuch(corpus_dir, env, args.time_limit)
        say(f"  notmuch new: {fmt(nm.get('indexed'))} messages, {fmt(nm.get('index_per_s'))} msg/s, "
            f"db {fmt(nm.get('db_mb'))} MB {nm.get('error', '')}")
        results["notmuch_search"] = time_notmuch(queries, env, args.rounds)
    else:
        say("  notmuch not installed (apt-get install notmuch python3-notmuch2): skipped")
    print_table(results)
    common.save("search", results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    lx, nm = results.get("litemx_search", {}), results.get("notmuch_search", {})
    say(f"  {'query':<12} {'LiteMX service':>17} {'FTS5 seq-order':>15} {'FTS5 rowid':>12} "
        f"{'notmuch msgs':>13} {'nm threads':>11} {'nm CLI':>9}   hits lx/nm   (p50/p95 ms)")
    for name in results["queries"]:
        a, b = lx.get(name, {}), nm.get(name, {})

        def cell(d: dict[str, Any] | None) -> str:
            return f"{fmt(d['p50_ms'], 2)}/{fmt(d['p95_ms'], 2)}" if d else "n/a"

        say(f"  {name:<12} {cell(a.get('service')):>17} {cell(a.get('floor_seq')):>15} {cell(a.get('floor_rowid')):>12} "
            f"{cell(b.get('bindings_messages')):>13} {cell(b.get('bindings_threads')):>11} "
            f"{cell(b.get('cli_threads')):>9}   {fmt(a.get('count'))}/{fmt(b.get('count'))}")
    if lx.get("note"):
        say("  note: " + lx["note"])
    if nm.get("bindings_error"):
        say("  notmuch bindings failed: " + nm["bindings_error"])


if __name__ == "__main__":
    sys.exit(main())
