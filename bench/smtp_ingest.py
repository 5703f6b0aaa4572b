#!/usr/bin/env python3
"""SMTP ingest: Postfix `smtp-source` against three receivers, one after the other, in one run.

    python bench/smtp_ingest.py [--messages N] [--sessions 10] [--size 5120] [--reuse] [--profile]

  1. Postfix `smtp-sink`        the protocol ceiling (C, discards)
  2. bare aiosmtpd              the Python ceiling (bench/aiosmtpd_sink.py, discards)
  3. `litemx serve`             durable: the message fsynced (the front's spool, or a committed queue row) before `250`
                                (fresh data dir, SQLite default, inbound worker on — as shipped)
  4. `litemx serve` accept-only the same with LITEMX_INBOUND_WORKER=0 (no competing processing;
                                the workers still import the fronts' spools into the queue),
                                then restarted with the worker on to time the pure drain

Each receiver first gets a short warm-up, then N messages from `smtp-source -s SESSIONS -l SIZE`;
messages/s = N / wall time of smtp-source. For LiteMX the database is then polled (read-only)
until every message is a `messages` row and FTS-indexed: processed/s. `--reuse` keeps each
session's connection across messages (smtp-source -d); the default is one connection per message,
as most MTAs deliver. `--profile` records the LiteMX run with py-spy (collapsed stacks in
$BENCH_WORK/profile/) and prints the hottest frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import WORK, LitemxServer, StubDns, env_int, fmt, say, spawn, stop  # noqa: E402

SENDER = "bench@sender.example"
RCPT = f"support@{common.DOMAIN}"


def smtp_source(port: int, count: int, sessions: int, size: int, reuse: bool, timeout: float) -> dict[str, Any]:
    cmd = ["smtp-source", "-s", str(sessions), "-l", str(size), "-m", str(count), "-f", SENDER, "-t", RCPT,
           "-M", "client.sender.example", "-S", "bench message"]
    if reuse:
        cmd.append("-d")
    cmd.append(f"127.0.0.1:{port}")
    started = time.monotonic()
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"error": f"smtp-source timed out after {timeout}s", "elapsed_s": timeout}
    elapsed = time.monotonic() - started
    stop(proc)
    result: dict[str, Any] = {"messages": count, "elapsed_s": round(elapsed, 3), "msgs_per_s": count / elapsed,
                              "returncode": proc.returncode}
    if proc.returncode != 0:
        result["error"] = (err or out).decode(errors="replace").strip()[-500:]
    return result


def _smtp_sink_cmd(port: int) -> list[str]:
    cmd = ["smtp-sink"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
    return [*cmd, "-h", "sink.bench.example", f"127.0.0.1:{port}", "1024"]


def run_sink(args: argparse.Namespace) -> dict[str, Any]:
    port = common.free_port()
    proc = spawn(_smtp_sink_cmd(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        common.wait_port(port, 10, proc)
        smtp_source(port, args.warmup, args.sessions, args.size, args.reuse, args.timeout)
        return smtp_source(port, args.messages, args.sessions, args.size, args.reuse, args.timeout)
    finally:
        stop(proc)


def run_aiosmtpd(args: argparse.Namespace) -> dict[str, Any]:
    port = common.free_port()
    proc = spawn([sys.executable, str(common.BENCH_DIR / "aiosmtpd_sink.py"), str(port)])
    try:
        common.wait_port(port, 20, proc)
        smtp_source(port, args.warmup, args.sessions, args.size, args.reuse, args.timeout)
        cpu0 = common.cpu_seconds(proc.pid)
        result = smtp_source(port, args.messages, args.sessions, args.size, args.reuse, args.timeout)
        cpu1 = common.cpu_seconds(proc.pid)
        if cpu0 is not None and cpu1 is not None:
            result["server_cpu_ms_per_msg"] = (cpu1 - cpu0) * 1000 / args.messages
        return result
    finally:
        stop(proc)


def _wait_processed(server: LitemxServer, expected: int, timeout: float) -> dict[str, Any]:
    """Poll the live database until `expected` messages are stored and indexed (bounded)."""
    conn = common.sqlite_ro(server.db_path)
    started = time.monotonic()
    try:
        while True:
            messages, indexed, pending = common.count_processed(conn)
            now = time.monotonic()
            if (messages >= expected and pending == 0) or now - started > timeout:
                return {"messages": messages, "indexed": indexed, "pending": pending, "at": now,
                        "timed_out": messages < expected}
            time.sleep(0.1)
    finally:
        conn.close()


def cpu_by_role(pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the server's front and worker processes apart (the workers are the
    ones at a positive nice level, supervisor.py), so a change on the `250` path shows in the
    fronts' figure whatever the workers did meanwhile."""
    seconds = {"front": 0.0, "worker": 0.0}
    for p in common.process_tree(pid) if pid is not None else []:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if p != pid:  # the supervisor itself only sleeps and reaps
            role = "worker" if int(fields[16]) > 0 else "front"
            seconds[role] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _per_message_by_role(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    return {f"{role}_cpu_ms_per_msg": (after[role] - before[role]) * 1000 / count for role in after}


def _blob_count(data_dir: Path) -> int:
    root = data_dir / "blobs"
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")) if root.exists() else 0


def run_litemx(args: argparse.Namespace, dns: str, *, worker: bool) -> dict[str, Any]:
    data = WORK / ("ingest-data" if worker else "ingest-data-acceptonly")
    server = LitemxServer(data, dns, extra_env={"LITEMX_INBOUND_WORKER": "1" if worker else "0"})
    server.create_account()
    server.start()
    profiler = None
    try:
        server.setup_mailboxes()
        smtp_source(server.smtp_port, args.warmup, args.sessions, args.size, args.reuse, args.timeout)
        base = _wait_processed(server, args.warmup, args.timeout) if worker else None
        baseline = base["messages"] if base else 0
        if args.profile:
            profiler = common.start_profiler(server.pid, "ingest" if worker else "acceptonly")
        cpu0, roles0 = common.cpu_seconds(server.pid), cpu_by_role(server.pid)
        t0 = time.monotonic()
        result = smtp_source(server.smtp_port, args.messages, args.sessions, args.size, args.reuse, args.timeout)
        t_end = time.monotonic()
        cpu1, roles1 = common.cpu_seconds(server.pid), cpu_by_role(server.pid)
        result.update(_per_message_by_role(roles0, roles1, args.messages))
        result["rss_mb"] = common.rss_mb(server.pid)
        result["pss_mb"] = common.pss_mb(server.pid)
        if cpu0 is not None and cpu1 is not None:
            result["server_cpu_ms_per_msg"] = (cpu1 - cpu0) * 1000 / args.messages
        if worker:
            conn = common.sqlite_ro(server.db_path)
            at_end = common.count_processed(conn)[0] - baseline
            conn.close()
            done = _wait_processed(server, baseline + args.messages, args.process_timeout)
            processed = done["messages"] - baseline
            result.update({
                "processed_at_ingest_end": at_end, "processed": processed, "indexed": done["indexed"] - baseline,
                "process_timed_out": done["timed_out"], "all_processed_s": round(done["at"] - t0, 3),
                "processed_per_s": processed / (done["at"] - t0),
                "drain_per_s": (processed - at_end) / max(done["at"] - t_end, 1e-9),
            })
        if profiler is not None:
            result["profile"] = common.stop_profiler(profiler)
        result["distinct_blobs"] = _blob_count(data)
        return result
    finally:
        if profiler is not None and profiler[0].poll() is None:
            stop(profiler[0])
        server.stop()


def run_drain(args: argparse.Namespace, dns: str) -> dict[str, Any]:
    """Restart the accept-only data dir with the worker on: processing alone, nothing competing."""
    data = WORK / "ingest-data-acceptonly"
    server = LitemxServer(data, dns, fresh=False, extra_env={"LITEMX_INBOUND_WORKER": "1"})
    conn = common.sqlite_ro(server.db_path)
    queued = conn.execute("SELECT count(*) FROM inbound_queue WHERE status = 'pending'").fetchone()[0]
    before = common.count_processed(conn)[0]
    conn.close()
    t0 = time.monotonic()
    server.start()
    profiler = common.start_profiler(server.pid, "drain") if args.profile else None
    try:
        done = _wait_processed(server, before + queued, args.process_timeout)
        processed = done["messages"] - before
        result = {"queued": queued, "processed": processed, "elapsed_s": round(done["at"] - t0, 3),
                  "processed_per_s": processed / (done["at"] - t0), "timed_out": done["timed_out"],
                  "note": "includes server start-up (~1 s)"}
        if profiler is not None:
            result["profile"] = common.stop_profiler(profiler)
        return result
    finally:
        if profiler is not None and profiler[0].poll() is None:
            stop(profiler[0])
        server.stop()


def _roles(result: dict[str, Any]) -> str:
    return (f"fronts {fmt(result.get('front_cpu_ms_per_msg'), 2)}, "
            f"workers {fmt(result.get('worker_cpu_ms_per_msg'), 2)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=env_int("BENCH_SMTP_MESSAGES", 2000))
    parser.add_argument("--sessions", type=int, default=env_int("BENCH_SMTP_SESSIONS", 10))
    parser.add_argument("--size", type=int, default=env_int("BENCH_SMTP_SIZE", 5120))
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", default=os.environ.get("BENCH_SMTP_REUSE") == "1",
                        help="keep connections across messages (smtp-source -d)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on each smtp-source run (s)")
    parser.add_argument("--process-timeout", type=float, default=float(env_int("BENCH_PROCESS_TIMEOUT", 600)))
    parser.add_argument("--profile", action="store_true", default=os.environ.get("BENCH_PROFILE") == "1")
    parser.add_argument("--skip-acceptonly", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("smtp-source") is None:
        say("smtp_ingest: Postfix smtp-source not installed (apt-get install postfix); skipping")
        return 0
    mode = "one connection per message" if not args.reuse else "connections reused (-d)"
    say(f"== SMTP ingest: smtp-source -s {args.sessions} -l {args.size} -m {args.messages} ({mode})")
    results: dict[str, Any] = {"params": {"messages": args.messages, "sessions": args.sessions, "size": args.size,
                                          "reuse": args.reuse, "warmup": args.warmup}}
    results["smtp_sink"] = run_sink(args)
    say(f"  smtp-sink (Postfix, C)     {fmt(results['smtp_sink'].get('msgs_per_s'))} msg/s")
    results["aiosmtpd"] = run_aiosmtpd(args)
    say(f"  bare aiosmtpd (discard)    {fmt(results['aiosmtpd'].get('msgs_per_s'))} msg/s  "
        f"server CPU {fmt(results['aiosmtpd'].get('server_cpu_ms_per_msg'), 2)} ms/msg")
    with StubDns() as dns:
        lx = results["litemx"] = run_litemx(args, dns.address, worker=True)
        say(f"  litemx serve (durable)     {fmt(lx.get('msgs_per_s'))} msg/s  server CPU "
            f"{fmt(lx.get('server_cpu_ms_per_msg'), 2)} ms/msg ({_roles(lx)})  RSS {fmt(lx.get('rss_mb'))} MB  "
            f"distinct raw blobs {fmt(lx.get('distinct_blobs'))}")
        say(f"    processed (stored+indexed) {fmt(lx.get('processed'))}/{args.messages}: "
            f"{fmt(lx.get('processed_per_s'))} msg/s from first byte to last indexed "
            f"({fmt(lx.get('processed_at_ingest_end'))} done when ingest ended; drain {fmt(lx.get('drain_per_s'))}/s)")
        if not args.skip_acceptonly:
            ao = results["litemx_accept_only"] = run_litemx(args, dns.address, worker=False)
            say(f"  litemx serve, worker off   {fmt(ao.get('msgs_per_s'))} msg/s  server CPU "
                f"{fmt(ao.get('server_cpu_ms_per_msg'), 2)} ms/msg ({_roles(ao)})")
            dr = results["litemx_drain"] = run_drain(args, dns.address)
            say(f"    then worker alone: {fmt(dr.get('processed'))} processed at {fmt(dr.get('processed_per_s'))} msg/s")
        results["dns_queries"] = dns.queries
        say(f"  stub DNS answered {dns.queries:,} queries (NXDOMAIN) during the LiteMX runs")
    sink, aio = results["smtp_sink"].get("msgs_per_s"), results["aiosmtpd"].get("msgs_per_s")
    lxr = lx.get("msgs_per_s")
    if sink and aio and lxr:
        results["ratios"] = {"litemx_over_aiosmtpd": lxr / aio, "litemx_over_smtp_sink": lxr / sink,
                             "aiosmtpd_over_smtp_sink": aio / sink}
        say(f"  ratios: litemx/aiosmtpd {results['ratios']['litemx_over_aiosmtpd']:.2f}  "
            f"litemx/smtp-sink {results['ratios']['litemx_over_smtp_sink']:.3f}  "
            f"aiosmtpd/smtp-sink {results['ratios']['aiosmtpd_over_smtp_sink']:.2f}")
    for name in ("smtp_sink", "aiosmtpd", "litemx", "litemx_accept_only"):
        if results.get(name, {}).get("error"):
            say(f"  ! {name}: {results[name]['error']}")
    for key, what in (("litemx", "litemx serve during ingest + processing"),
                      ("litemx_accept_only", "litemx serve, worker off: accept path only"),
                      ("litemx_drain", "litemx serve, worker alone draining the queue")):
        if results.get(key, {}).get("profile"):
            say(f"  profile (py-spy, {what}):")
            for line in results[key]["profile"]["lines"]:
                say("    " + line)
    common.save("smtp_ingest", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
