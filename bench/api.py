#!/usr/bin/env python3
"""REST (and MCP) under concurrent load against `litemx serve` on the data dir search.py built.

    python bench/api.py [--seconds 10] [--concurrency 16]

For each endpoint: an httpx async client with N concurrent workers for a bounded time (and a
bounded request count) — requests/s, p50/p95/p99, errors — and, when `wrk` is installed, the
same endpoint driven by wrk (C client, so the figure is the server's, not the Python client's).
Server RSS (psutil, else /proc/<pid>/status) is sampled throughout; the peak is reported.

Endpoints: GET /api/messages/{id} (random ids of the corpus), GET /api/messages?limit=20,
GET /api/messages/search?q=<the corpus' common word and from: queries>. When a route still
answers 501, GET /api/mailboxes and GET /api/bootstrap are measured instead (and said so).
MCP: `tools/call read_message` and `search_messages` over POST /mcp when /mcp answers (each with
the server CPU per call); otherwise one line says it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import WORK, LitemxServer, StubDns, env_int, fmt, latency_summary, say  # noqa: E402

MAX_REQUESTS = 200_000  # per endpoint, whatever the duration


class RssSampler:
    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every, self.peak, self.samples = pid, every, 0.0, 0
        self.pss_peak = 0.0  # PSS summed over the server's processes (shared pages counted once)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = common.rss_mb(self.pid)
            if rss:
                self.peak = max(self.peak, rss)
                self.samples += 1
            self.pss_peak = max(self.pss_peak, common.pss_mb(self.pid) or 0.0)
            self._stop.wait(self.every)


async def _load(url: str, headers: dict[str, str], make: Any, concurrency: int, seconds: float,
                method: str = "GET") -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as client:
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline and len(latencies) < MAX_REQUESTS:
                path, body = make(rng)
                t = time.perf_counter()
                try:
                    resp = await client.request(method, path, json=body) if body is not None else \
                        await client.request(method, path)
                    code = resp.status_code
                except httpx.HTTPError:
                    code = -1
                latencies.append(time.perf_counter() - t)
                statuses[code] = statuses.get(code, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {"requests": len(latencies), "ok": ok, "statuses": {str(k): v for k, v in statuses.items()},
            "elapsed_s": round(elapsed, 2), "rps": len(latencies) / elapsed, **latency_summary(latencies)}


_WRK_LINE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")


def _wrk(url: str, token: str, paths: list[str], concurrency: int, seconds: float,
         bodies: list[str] | None = None) -> dict[str, Any] | None:
    """wrk (C client, 2 threads) on random `paths` (GET), or POSTing random JSON `bodies` to the
    first path (MCP tools/call requests)."""
    if shutil.which("wrk") is None:
        return None
    script = WORK / "wrk-paths.lua"
    listed = ",\n".join(json.dumps(p) for p in paths[:5000])
    lines = [f'wrk.headers["Authorization"] = "Bearer {token}"', f"local paths = {{\n{listed}\n}}",
             "math.randomseed(42)"]
    if bodies:
        lines += ['wrk.headers["Content-Type"] = "application/json"',
                  'wrk.headers["Accept"] = "application/json, text/event-stream"',
                  # Lua long brackets: the JSON needs no escaping inside [==[ ]==].
                  "local bodies = {\n" + ",\n".join(f"[==[{b}]==]" for b in bodies[:5000]) + "\n}",
                  "request = function()\n"
                  "  return wrk.format(\"POST\", paths[1], nil, bodies[math.random(#bodies)])\nend"]
    else:
        lines.append("request = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend")
    script.write_text("\n".join(lines) + "\n")
    cmd = ["wrk", "-t", "2", "-c", str(concurrency), "-d", f"{int(max(1, seconds))}s", "--latency", "-s", str(script),
           url]
    proc = common.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, _err = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        common.stop(proc)
        return {"error": "wrk timed out"}
    common.stop(proc)
    result: dict[str, Any] = {}
    for line in out.splitlines():
        m = _WRK_LINE.match(line)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[3]]
            result[f"p{m[1]}_ms"] = float(m[2]) * scale
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif "Non-2xx or 3xx responses" in line:
            result["non_2xx"] = int(line.split(":")[1])
        elif "requests in" in line:
            result["requests"] = int(line.split()[0])
    return result


def _probe(url: str, headers: dict[str, str], path: str, method: str = "GET", body: Any = None) -> int:
    import httpx

    try:
        return httpx.request(method, url + path, headers=headers, json=body, timeout=30).status_code
    except httpx.HTTPError:
        return -1


def _endpoints(server: LitemxServer, ids: list[str], search_qs: list[str]) -> list[dict[str, Any]]:
    from urllib.parse import quote

    url, h = server.url, server.headers()
    chosen: list[dict[str, Any]] = []
    read_ok = bool(ids) and _probe(url, h, f"/api/messages/{ids[0]}") == 200
    if read_ok:
        chosen.append({"name": "GET /api/messages/{id}", "make": lambda r: (f"/api/messages/{r.choice(ids)}", None),
                       "paths": [f"/api/messages/{i}" for i in ids]})
    if _probe(url, h, "/api/messages?limit=20") == 200:
        chosen.append({"name": "GET /api/messages?limit=20", "make": lambda r: ("/api/messages?limit=20", None),
                       "paths": ["/api/messages?limit=20"]})
    search_paths = [f"/api/messages/search?q={quote(q)}&limit=20" for q in search_qs]
    if search_paths and _probe(url, h, search_paths[0]) == 200:
        chosen.append({"name": "GET /api/messages/search", "make": lambda r: (r.choice(search_paths), None),
                       "paths": search_paths})
    if not read_ok:
        chosen.append({"name": "GET /api/mailboxes (fallback: messages routes not live)",
                       "make": lambda r: ("/api/mailboxes", None), "paths": ["/api/mailboxes"]})
        chosen.append({"name": "GET /api/bootstrap (fallback)", "make": lambda r: ("/api/bootstrap", None),
                       "paths": ["/api/bootstrap"]})
    return chosen


def _mcp(server: LitemxServer, ids: list[str], search_qs: list[str]) -> dict[str, Any] | None:
    """read_message and search_messages over MCP (stateless JSON-RPC POST /mcp), if /mcp answers."""
    import httpx

    h = {**server.headers(), "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "litemx-bench", "version": "1"}}}
    status = _probe(server.url, h, "/mcp", "POST", init)
    if status != 200 or not ids:
        return {"skipped": f"POST /mcp answered {status}"}
    counter = iter(range(1, 10**9))

    def call(name: str, arguments: dict[str, Any]) -> tuple[str, Any]:
        return "/mcp", {"jsonrpc": "2.0", "id": next(counter), "method": "tools/call",
                        "params": {"name": name, "arguments": arguments}}

    tools = {"read_message": lambda r: call("read_message", {"message_id": r.choice(ids)}),
             "search_messages": lambda r: call("search_messages", {"query": r.choice(search_qs), "limit": 20})}
    # The same calls for wrk, each checked once to answer a result that is no tool error (wrk
    # counts only HTTP statuses, and a failed tool call is still 200).
    rng = random.Random(42)
    bodies = {"read_message": [json.dumps(tools["read_message"](rng)[1]) for _ in range(min(len(ids), 2000))],
              "search_messages": [json.dumps(call("search_messages", {"query": q, "limit": 20})[1])
                                  for q in search_qs]}
    for tool, listed in bodies.items():
        for body in listed[:20] if tool == "read_message" else listed:
            answer = httpx.post(server.url + "/mcp", headers=h, content=body, timeout=30)
            if answer.status_code != 200 or answer.json().get("result", {}).get("isError") is not False:
                return {"skipped": f"{tool} did not answer a result: {answer.status_code} {answer.text[:200]}"}
    return {"tools": tools, "headers": h, "bodies": bodies}


def _ids(server: LitemxServer, limit: int = 5000) -> list[str]:
    """`limit` ids spread evenly over the whole store, so reads touch all of a large database
    (and its memory shows), not just its oldest pages."""
    if not server.db_path.exists():
        return []
    conn = common.sqlite_ro(server.db_path)
    try:
        top = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        step = max(1, top // limit)
        return [r[0] for r in conn.execute("SELECT id FROM messages WHERE seq % ? = 0 ORDER BY seq LIMIT ?",
                                           (step, limit))]
    finally:
        conn.close()


def _stored(server: LitemxServer) -> int:
    conn = common.sqlite_ro(server.db_path)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(env_int("BENCH_API_SECONDS", 8)))
    parser.add_argument("--concurrency", type=int, default=env_int("BENCH_API_CONCURRENCY", 16))
    parser.add_argument("--profile", action="store_true", default=os.environ.get("BENCH_PROFILE") == "1",
                        help="py-spy the server during each endpoint's httpx load")
    args = parser.parse_args(argv)
    data = WORK / "search-data"
    results: dict[str, Any] = {"params": {"seconds": args.seconds, "concurrency": args.concurrency}, "endpoints": {}}
    with StubDns() as dns:
        fresh = not (data / "bench-token").exists()
        server = LitemxServer(data, dns.address, fresh=fresh)
        if fresh:
            say("  (no search-data from search.py: a fresh data dir with no messages)")
            server.create_account()
        else:
            server.token = (data / "bench-token").read_text().strip()
        server.start()
        try:
            if fresh:
                server.setup_mailboxes()
            ids = _ids(server)
            results["params"]["messages_stored"] = _stored(server) if ids else 0
            qs = ["thanks", f"from:{_some_sender(server)}", '"charged twice"']
            say(f"== API: {results['params']['messages_stored']:,} messages in the store ({len(ids):,} read by id); "
                f"{args.concurrency} concurrent clients, "
                f"{args.seconds:.0f}s per endpoint")
            assert server.pid is not None
            idle_rss = common.rss_mb(server.pid)
            results["rss_idle_mb"] = idle_rss
            with RssSampler(server.pid) as rss:
                for n, ep in enumerate(_endpoints(server, ids, qs)):
                    profiler = common.start_profiler(server.pid, f"api-{n}") if args.profile else None
                    cpu0 = common.cpu_seconds(server.pid)
                    r = asyncio.run(_load(server.url, server.headers(), ep["make"], args.concurrency, args.seconds))
                    cpu1 = common.cpu_seconds(server.pid)
                    if cpu0 is not None and cpu1 is not None and r["requests"]:
                        r["server_cpu_ms_per_req"] = (cpu1 - cpu0) * 1000 / r["requests"]
                    if profiler is not None:
                        r["profile"] = common.stop_profiler(profiler)
                        say(f"  profile of {ep['name']} (py-spy):")
                        for line in r["profile"]["lines"]:
                            say("    " + line)
                    r["wrk"] = _wrk(server.url, server.token or "", ep["paths"], args.concurrency, args.seconds)
                    results["endpoints"][ep["name"]] = r
                    w = r["wrk"] or {}
                    say(f"  {ep['name']:<58} httpx {fmt(r['rps'])} req/s p50 {fmt(r['p50_ms'], 2)} "
                        f"p99 {fmt(r['p99_ms'], 2)} ms ok {r['ok']}/{r['requests']} "
                        f"server CPU {fmt(r.get('server_cpu_ms_per_req'), 2)} ms/req"
                        + (f" | wrk {fmt(w.get('rps'))} req/s p50 {fmt(w.get('p50_ms'), 2)} p99 "
                           f"{fmt(w.get('p99_ms'), 2)} ms non-2xx {w.get('non_2xx', 0)}" if w else ""))
                mcp = _mcp(server, ids, qs)
                if mcp and "tools" in mcp:
                    results["mcp_tools"] = {}
                    for tool, make in mcp["tools"].items():
                        cpu0 = common.cpu_seconds(server.pid)
                        r = asyncio.run(_load(server.url, mcp["headers"], make, args.concurrency, args.seconds,
                                              method="POST"))
                        cpu1 = common.cpu_seconds(server.pid)
                        if cpu0 is not None and cpu1 is not None and r["requests"]:
                            r["server_cpu_ms_per_req"] = (cpu1 - cpu0) * 1000 / r["requests"]
                        since = _audit_mark(server)
                        r["wrk"] = _wrk(server.url, server.token or "", ["/mcp"], args.concurrency, args.seconds,
                                        bodies=mcp["bodies"][tool])
                        if r["wrk"]:  # wrk sees HTTP statuses only: the audit log says how each call ended
                            r["wrk"].update(_audit_outcomes(server, since))
                        results["mcp_tools"][tool] = r
                        w = r["wrk"] or {}
                        say(f"  {'MCP tools/call ' + tool:<58} {fmt(r['rps'])} calls/s p50 {fmt(r['p50_ms'], 2)} "
                            f"p99 {fmt(r['p99_ms'], 2)} ms ok {r['ok']}/{r['requests']} "
                            f"server CPU {fmt(r.get('server_cpu_ms_per_req'), 2)} ms/req"
                            + (f" | wrk {fmt(w.get('rps'))} calls/s p50 {fmt(w.get('p50_ms'), 2)} p99 "
                               f"{fmt(w.get('p99_ms'), 2)} ms non-2xx {w.get('non_2xx', 0)}" if w else ""))
                    results["mcp"] = results["mcp_tools"]["read_message"]  # the shape runall.py reads
                else:
                    results["mcp"] = mcp
                    say(f"  MCP: skipped ({(mcp or {}).get('skipped', 'no messages')})")
            results["rss_peak_mb"] = rss.peak
            results["pss_peak_mb"] = rss.pss_peak
            say(f"  server memory: PSS peak {fmt(rss.pss_peak)} MB; RSS summed over processes idle {fmt(idle_rss)} MB, "
                f"peak {fmt(rss.peak)} MB")
        finally:
            server.stop()
    common.save("api", results)
    return 0


def _audit_mark(server: LitemxServer) -> int:
    conn = common.sqlite_ro(server.db_path)
    try:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()[0])
    finally:
        conn.close()


def _audit_outcomes(server: LitemxServer, since: int) -> dict[str, int]:
    """The tool calls' events since `since`: how many succeeded and how many did not."""
    conn = common.sqlite_ro(server.db_path)
    try:
        ok, failed = conn.execute("SELECT count(*) FILTER (WHERE outcome = 'ok'), "
                                  "count(*) FILTER (WHERE outcome != 'ok') FROM audit_events WHERE id > ?",
                                  (since,)).fetchone()
        return {"ok_events": int(ok), "failed_events": int(failed)}
    finally:
        conn.close()


def _some_sender(server: LitemxServer) -> str:
    conn = common.sqlite_ro(server.db_path)
    try:
        row = conn.execute("SELECT from_addr, count(*) c FROM messages GROUP BY from_addr ORDER BY c DESC "
                           "LIMIT 1").fetchone()
        return row[0] if row else "alice@sender.example"
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
