#!/usr/bin/env python3
"""Index one corpus into LiteMX and into notmuch, then time the same queries on both.

    python bench/search.py [--count 10000] [--rounds 30]

LiteMX indexing runs IN-PROCESS through the inbound service — `InboundService.accept` (blob
fsync + queue row, what `250` waits for) then `process_due` (parse, SPF/DKIM/DMARC against a
loopback stub DNS answering NXDOMAIN, threading, attachments, FTS5 index, audit) — on a fresh
SQLite data dir, with the clock set to each message's Date so `after:`/`before:` mean the same
as notmuch's `date:`. (SMTP framing is measured separately by smtp_ingest.py.)
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


def index_parallel(settings: Any, corpus_dir: Path, batch: int, limit_s: float, processes: int,
                   sessions: int = 1) -> dict[str, Any]:
    """index_litemx in `processes` forked processes over one database, each with its share of
    the corpus: how `litemx serve` indexes with one worker process per CPU (supervisor.py)."""
    from litemx.app import build_services

    rows = [line.rstrip("\n").split("\t") for line in (corpus_dir / "index.tsv").open()]
    out = WORK / "results" / "index-parts"
    out.mkdir(parents=True, exist_ok=True)
    started, pids = time.monotonic(), []
    for k in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                clock = SettableClock()
                services = build_services(settings, clock=clock, migrate=False)
                part = index_litemx(services, clock, corpus_dir, batch, limit_s, rows[k::processes], sessions)
                (out / f"{k}.json").write_text(json.dumps(part))
                services.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    wall = time.monotonic() - started
    parts = [json.loads((out / f"{k}.json").read_text()) for k in range(processes)]
    total = parts[-1]  # counts of the database as a whole (each part reads them at its end)
    accepted = sum(p["accepted"] for p in parts)
    return {**total, "processes": processes, "accepted": accepted, "wall_s": round(wall, 2),
            "index_per_s": total["processed"] / wall,
            "accept_cpu_ms": sum(p["accept_cpu_ms"] * p["accepted"] for p in parts) / max(accepted, 1),
            "process_cpu_ms": sum(p["process_cpu_ms"] * p["processed_here"] for p in parts)
            / max(sum(p["processed_here"] for p in parts), 1)}


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


def index_litemx(services: Any, clock: SettableClock, corpus_dir: Path, batch: int,
                 limit_s: float, rows: list[list[str]] | None = None, sessions: int = 1) -> dict[str, Any]:
    inbound = services.inbound
    inbound.on_accept = None
    accept_s = process_s = accept_cpu = process_cpu = 0.0
    accepted = processed = processed_here = 0
    acceptor = Acceptor(services, clock, corpus_dir, sessions)
    started = time.monotonic()
    if rows is None:
        rows = [line.rstrip("\n").split("\t") for line in (corpus_dir / "index.tsv").open()]
    for i in range(0, len(rows), batch):
        mails = acceptor.load(rows[i:i + batch])
        t, c = time.perf_counter(), time.process_time()
        acceptor.accept_all(mails)
        accept_s += time.perf_counter() - t
        accept_cpu += time.process_time() - c
        accepted += len(mails)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(10 * batch):  # bounded: each call claims up to 50 rows
            claimed = inbound.process_due(limit=50)
            processed_here += claimed
            if not claimed:
                break
        process_s += time.perf_counter() - t
        process_cpu += time.process_time() - c
        if time.monotonic() - started > limit_s:
            say(f"  ! LiteMX indexing stopped at {accepted:,} messages (time bound {limit_s:.0f}s)")
            break
    acceptor.close()
    with services.infra.db.read() as conn:
        from sqlalchemy import text

        processed = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        indexed = conn.execute(text("SELECT count(*) FROM message_fts_docsize")).scalar_one()
    total = accept_s + process_s
    return {"accepted": accepted, "processed": processed, "indexed": indexed, "accept_s": round(accept_s, 2),
            "process_s": round(process_s, 2), "accept_per_s": accepted / accept_s if accept_s else None,
            "process_per_s": processed / process_s if process_s else None,
            "index_per_s": processed / total if total else None,
            "processed_here": processed_here,
            "accept_cpu_ms": accept_cpu * 1000 / max(accepted, 1),
            "process_cpu_ms": process_cpu * 1000 / max(processed_here, 1),
            "db_mb": round(sum(p.stat().st_size for p in services.infra.settings.data_dir.glob("litemx.db*")) / 2**20, 1)}


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
    parser.add_argument("--batch", type=int, default=200, help="messages accepted between processing passes")
    parser.add_argument("--time-limit", type=float, default=float(env_int("BENCH_INDEX_TIME_LIMIT", 900)))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accept-sessions", type=int, default=env_int("BENCH_ACCEPT_SESSIONS", 1),
                        help="messages accepted concurrently, like that many SMTP sessions (1: one after "
                             "another, one commit each; smtp_ingest.py uses 10)")
    parser.add_argument("--index-processes", type=int, default=env_int("BENCH_INDEX_PROCESSES", 1),
                        help="processes indexing side by side (litemx serve runs one worker per CPU); 2 measured slower than 1 here (writer-lock ping-pong between accept and process)")
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
            if args.index_processes > 1:
                settings = services.infra.settings
                services.close()
                lx = index_parallel(settings, corpus_dir, args.batch, args.time_limit, args.index_processes,
                                    args.accept_sessions)
                services = build_services_again(settings, clock)
            else:
                lx = index_litemx(services, clock, corpus_dir, args.batch, args.time_limit,
                                  sessions=args.accept_sessions)
            results["litemx_index"] = lx
            say(f"  LiteMX index (in-process accept + process, {lx.get('processes', 1)} process(es), "
                f"{args.accept_sessions} accepting session(s)): {fmt(lx['processed'])} messages, "
                f"{fmt(lx['index_per_s'])} msg/s overall, processing alone {fmt(lx.get('process_per_s'))} msg/s; "
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
