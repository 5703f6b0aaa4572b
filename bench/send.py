#!/usr/bin/env python3
"""Sending: DKIM-signed messages/s from `POST /api/send` into a loopback Postfix smtp-sink.

    python bench/send.py [--messages 300] [--concurrency 8]

Prints "sending not available yet" (and exits 0) while `POST /api/send` answers 501.
Otherwise: `litemx serve` with LITEMX_OUTBOUND=smtp://127.0.0.1:<smtp-sink>, a scale-plan
account, a domain whose DNS plan is served by a loopback DNS server (so `status` finds every
record and the domain becomes ready), provider approval, then N sends from concurrent clients.
Reported: API acceptance rate (202/200 answers per second), delivery rate (messages landed in
smtp-sink's dump directory from the first request to the last file), and whether the first
delivered message carries a DKIM-Signature.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import WORK, LitemxServer, env_int, fmt, latency_summary, say  # noqa: E402

DOMAIN = "send.bench.example"


class PlanDns:
    """A loopback DNS server (dnslib, UDP and TCP) publishing exactly the records of a DNS plan."""

    def __init__(self) -> None:
        from dnslib import QTYPE, RCODE, RR  # noqa: F401 - import check happens here
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        self.records: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        outer = self

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                from dnslib import MX, QTYPE, RCODE, RR, SOA, TXT

                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                qtype = QTYPE[request.q.qtype]
                for rtype, value in outer.records.get((name, qtype), []):
                    if rtype == "TXT":
                        chunks = [value[i:i + 255].encode() for i in range(0, len(value), 255)] or [b""]
                        reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
                    elif rtype == "MX":
                        pref, host = value
                        reply.add_answer(RR(name, QTYPE.MX, rdata=MX(host, pref), ttl=60))
                if not reply.rr and not any(k[0] == name for k in outer.records):
                    reply.header.rcode = RCODE.NXDOMAIN
                if not reply.rr:  # negative answers carry their zone's SOA (RFC 2308 §3), so resolvers may cache them
                    zone = DOMAIN if name == DOMAIN or name.endswith("." + DOMAIN) else "."
                    reply.add_auth(RR(zone, QTYPE.SOA, ttl=300, rdata=SOA(
                        "ns." + DOMAIN, "hostmaster." + DOMAIN, (1, 1800, 900, 604800, 300))))
                return reply

        self.port = common.free_port()
        self.address = f"127.0.0.1:{self.port}"
        quiet = DNSLogger(logf=lambda _msg: None)
        self.servers = [DNSServer(Resolver(), port=self.port, address="127.0.0.1", tcp=tcp, logger=quiet)
                        for tcp in (False, True)]

    def publish(self, plan: list[dict[str, Any]]) -> None:
        for rec in plan:
            key = (rec["host"].rstrip(".").lower(), rec["type"])
            value = (rec.get("priority") or 10, rec["value"]) if rec["type"] == "MX" else rec["value"]
            self.records.setdefault(key, []).append((rec["type"], value))

    def __enter__(self) -> PlanDns:
        for server in self.servers:
            server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()


def _sink(dump: Path) -> tuple[subprocess.Popen[Any], int]:
    dump.mkdir(parents=True, exist_ok=True)
    os.chmod(dump, 0o777)  # smtp-sink drops to `nobody` when run as root
    port = common.free_port()
    cmd = ["smtp-sink"] + (["-u", "nobody"] if os.geteuid() == 0 else []) + \
        ["-d", f"{dump}/%H%M%S.", "-h", "sink.bench.example", f"127.0.0.1:{port}", "256"]
    proc = common.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    common.wait_port(port, 10, proc)
    return proc, port


async def _send_all(server: LitemxServer, count: int, concurrency: int, timeout: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo = iter(range(count))
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers(), timeout=60) as client:
        async def worker() -> None:
            for n in todo:
                if time.monotonic() > deadline:
                    return
                body = {"mailbox": f"support@{DOMAIN}", "to": [f"customer{n % 50}@dest.example"],
                        "subject": f"Your ticket #{n}", "text": "Thanks for writing. " * random.randint(5, 40)}
                t = time.perf_counter()
                resp = await client.post("/api/send", json=body, headers={"Idempotency-Key": f"bench-{n}"})
                latencies.append(time.perf_counter() - t)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code >= 400 and statuses[resp.status_code] == 1:
                    say(f"  first {resp.status_code}: {resp.text[:300]}")

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"requests": len(latencies), "statuses": {str(k): v for k, v in statuses.items()},
            "elapsed_s": round(elapsed, 2), "rps": len(latencies) / elapsed, **latency_summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=env_int("BENCH_SEND_MESSAGES", 200))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true", default=os.environ.get("BENCH_PROFILE") == "1")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"params": {"messages": args.messages, "concurrency": args.concurrency}}
    try:
        import dnslib  # noqa: F401
    except ImportError:
        dnslib = None
    dump = WORK / "send-sink"
    if dump.exists():
        import shutil

        shutil.rmtree(dump)
    sink, sink_port = _sink(dump)
    dns_ctx = PlanDns() if dnslib else common.StubDns()
    try:
        with dns_ctx as dns:
            server = LitemxServer(WORK / "send-data", dns.address, extra_env={
                "LITEMX_OUTBOUND": f"smtp://127.0.0.1:{sink_port}", "LITEMX_HOSTNAME": "mx.send.bench.example"})
            server.create_account("sender", "scale")
            server.start()
            try:
                results.update(_run(server, dns, args, dump))
            finally:
                server.stop()
    finally:
        common.stop(sink)
    common.save("send", results)
    return 0


def _run(server: LitemxServer, dns: Any, args: argparse.Namespace, dump: Path) -> dict[str, Any]:
    import httpx

    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as client:
        probe = client.post("/api/send", json={"mailbox": f"support@{DOMAIN}", "to": ["x@dest.example"],
                                               "subject": "probe", "text": "probe"})
        if probe.status_code == 501:
            say("== Send: sending not available yet (POST /api/send answers 501)")
            return {"available": False}
        client.post("/api/domains", json={"name": DOMAIN}).raise_for_status()
        client.post("/api/mailboxes", json={"address": f"support@{DOMAIN}"}).raise_for_status()
        if isinstance(dns, PlanDns):
            dns.publish(client.get(f"/api/domains/{DOMAIN}/dns-plan").json()["records"])
        status = client.get(f"/api/domains/{DOMAIN}/status").json()
        ready = client.put(f"/api/domains/{DOMAIN}/readiness", json={"provider_approved": True}).json()
    flags = {k: v for k, v in {**status, **ready}.items() if k.endswith(("_ready", "_approved")) or k == "readiness"}
    say(f"== Send: {args.messages} messages via POST /api/send, {args.concurrency} concurrent clients -> smtp-sink "
        f"(domain {flags})")
    t0 = time.monotonic()
    profiler = common.start_profiler(server.pid, "send") if args.profile else None
    api = asyncio.run(_send_all(server, args.messages, args.concurrency, args.timeout))
    accepted = sum(v for k, v in api["statuses"].items() if k.startswith("2"))
    delivered, t_last = 0, t0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        n = sum(1 for _ in dump.iterdir())
        if n != delivered:
            delivered, t_last = n, time.monotonic()
        if delivered >= accepted:
            break
        if time.monotonic() - t_last > 30:  # nothing new for 30 s: the queue is stuck or done
            break
        time.sleep(0.2)
    if profiler is not None:
        for line in common.stop_profiler(profiler)["lines"]:
            say("    " + line)
    signed = None
    files = sorted(dump.iterdir())
    if files:
        signed = b"DKIM-Signature:" in files[0].read_bytes()[:20000]
    result = {"available": True, "api": api, "accepted": accepted, "delivered": delivered,
              "deliver_s": round(t_last - t0, 2), "delivered_per_s": delivered / max(t_last - t0, 1e-9),
              "dkim_signed": signed, "rss_mb": common.rss_mb(server.pid) if server.pid else None}
    say(f"  API: {fmt(api['rps'])} sends/s accepted ({accepted}/{api['requests']}: {api['statuses']}), "
        f"p50 {fmt(api['p50_ms'], 2)} p99 {fmt(api['p99_ms'], 2)} ms")
    say(f"  delivered into smtp-sink: {delivered} in {result['deliver_s']} s = {fmt(result['delivered_per_s'])} msg/s; "
        f"DKIM-Signature present: {signed}")
    return result


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # dnslib's server threads may complain at shutdown
    sys.exit(main())
