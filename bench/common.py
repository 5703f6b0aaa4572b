"""Shared helpers for the LiteMX benchmarks: child processes, loopback ports, a stub DNS server,
a `litemx serve` fixture, percentiles, machine description and result files.

Rules every benchmark follows: loopback addresses only; every loop bounded in count and time;
every child process started here is killed (by its own process group id) at the end.
Nothing here asserts on timing: benchmarks print figures.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/litemx-bench"))
RESULTS = WORK / "results"
LITEMX = [sys.executable, "-m", "litemx.adapters.cli"]
DOMAIN = "bench.example"
MAILBOXES = ("support", "hello", "billing")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


# --------------------------------------------------------------------------- child processes

_children: list[subprocess.Popen[Any]] = []


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child in its own process group (so it and its children are killed together)."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any], grace: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Signal the child's process group (its pid is the group id), wait, then SIGKILL it."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace=5.0)


atexit.register(stop_all)


def _on_term(signum: int, _frame: Any) -> None:
    stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: `litemx serve` forks front and worker processes (supervisor.py)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def _status_kb(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mb(pid: int) -> float | None:
    """Resident set size of the server in MB: the sum over its processes (an upper bound: pages
    the forked processes share copy-on-write count once per process)."""
    total = sum(_status_kb(p, "status", "VmRSS:") for p in process_tree(pid))
    return total / 1024 if total else None


def pss_mb(pid: int) -> float | None:
    """Proportional set size of the server in MB: shared pages divided among the processes
    that share them, so the sum is what the server costs the machine."""
    total = sum(_status_kb(p, "smaps_rollup", "Pss:") for p in process_tree(pid))
    return total / 1024 if total else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the server's processes so far (from /proc/<pid>/stat)."""
    total, seen = 0.0, False
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total if seen else None


# --------------------------------------------------------------------------- py-spy


def start_profiler(pid: int | None, name: str = "ingest") -> tuple[subprocess.Popen[Any], Path] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if pid is None or not Path(py_spy).exists():
        say("profile: py-spy not found (pip install py-spy); skipping")
        return None
    out = WORK / "profile" / f"{name}.collapsed"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = spawn([py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads", "--subprocesses",
                  "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let py-spy attach before the load starts
    return proc, out


def stop_profiler(profiler: tuple[subprocess.Popen[Any], Path], focus: str | None = None) -> dict[str, Any]:
    proc, out = profiler
    stop(proc, grace=30.0, sig=signal.SIGINT)  # SIGINT: py-spy writes its output and exits
    import profile_report

    return profile_report.summarise(out, focus=focus)


# --------------------------------------------------------------------------- stub DNS


class StubDns:
    """A loopback UDP DNS server that answers NXDOMAIN to everything, instantly, with the SOA of
    the root zone in the authority section, as a real root server answers for a name under the
    reserved `.example` TLD (RFC 2308 §2.1): resolvers may cache the answer for its negative TTL.

    `litemx serve` evaluates SPF/DKIM/DMARC for every message; pointing LITEMX_DNS_SERVERS here
    keeps every lookup on the machine (and out of the measurement's noise) while still running
    the whole verdict code path. Real DNS latency is not part of these figures.
    """

    def __init__(self, delay_ms: float | None = None) -> None:
        # BENCH_DNS_DELAY_MS simulates resolver latency (each answer is sent that much later).
        self.delay = (env_float("BENCH_DNS_DELAY_MS", 0.0) if delay_ms is None else delay_ms) / 1000
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub-dns", daemon=True)

    def __enter__(self) -> StubDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            reply = _nxdomain(data)
            if reply:
                self.queries += 1
                if self.delay > 0:
                    threading.Timer(self.delay, self._send, (reply, peer)).start()
                else:
                    self._send(reply, peer)

    def _send(self, reply: bytes, peer: Any) -> None:
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass


def _wire_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\x00"


# `. 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 86400`: the negative
# TTL is min(SOA TTL, MINIMUM) (RFC 2308 §5); LiteMX's inbound cache caps it at 300 s.
_SOA_RDATA = (_wire_name("a.root-servers.net") + _wire_name("nstld.verisign-grs.com")
              + struct.pack("!IIIII", 1, 1800, 900, 604800, 86400))
_ROOT_SOA = b"\x00" + struct.pack("!HHIH", 6, 1, 86400, len(_SOA_RDATA)) + _SOA_RDATA


def _nxdomain(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    end = 12
    for _ in range(qdcount):  # walk the question names (uncompressed in queries)
        while end < len(query) and query[end] != 0:
            end += query[end] + 1
        end += 5
    rd = flags & 0x0100
    # QR, AA, RA, NXDOMAIN; one authority record (the SOA), no EDNS echoed (the query's OPT is dropped)
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | 3, qdcount, 0, 1, 0)
    return header + query[12:end] + _ROOT_SOA


# --------------------------------------------------------------------------- litemx serve


class LitemxServer:
    """`litemx serve` as a user runs it: its own process, a data dir, loopback ports."""

    def __init__(self, data_dir: Path, dns: str, *, fresh: bool = True, extra_env: dict[str, str] | None = None,
                 log_level: str = "warning"):
        self.data_dir = data_dir
        if fresh and data_dir.exists():
            shutil.rmtree(data_dir)
        self.http_port = free_port()
        self.smtp_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = {**os.environ, "LITEMX_DATA_DIR": str(data_dir), "LITEMX_HTTP": f"127.0.0.1:{self.http_port}",
                    "LITEMX_SMTP": f"127.0.0.1:{self.smtp_port}", "LITEMX_DNS_SERVERS": dns,
                    "LITEMX_HOSTNAME": "mx.bench.example", "LITEMX_LOG_LEVEL": log_level, **(extra_env or {})}
        self.env.pop("LITEMX_DATABASE_URL", None)
        self.proc: subprocess.Popen[Any] | None = None
        self.token: str | None = None
        self.log_path = WORK / "logs" / f"litemx-{self.http_port}.log"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "litemx.db"

    def create_account(self, name: str = "bench", plan: str = "scale") -> str:
        made = subprocess.run([*LITEMX, "accounts", "create", name, "--plan", plan, "--json"], env=self.env,
                              capture_output=True, check=True, timeout=120)
        self.token = str(json.loads(made.stdout)["token"])
        return self.token

    def start(self, timeout: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = spawn([*LITEMX, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        import httpx

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"litemx serve exited early ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    wait_port(self.smtp_port, 10, self.proc)
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("litemx serve did not answer /api/health in time")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def setup_mailboxes(self, domain: str = DOMAIN, locals_: Iterable[str] = MAILBOXES) -> None:
        """Through the REST API, as a founder would: one domain, the role mailboxes."""
        import httpx

        with httpx.Client(base_url=self.url, headers=self.headers(), timeout=30) as client:
            client.post("/api/domains", json={"name": domain}).raise_for_status()
            for local in locals_:
                client.post("/api/mailboxes", json={"address": f"{local}@{domain}"}).raise_for_status()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc, grace=20.0)
        self.proc = None
        return code

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def settle_caches(inputs: Iterable[Path] = ()) -> bool:
    """Before a timed indexing phase: write out what earlier phases left dirty and, where this
    user may (root), drop the kernel's page, dentry and inode caches, so each indexer starts
    from the same state. Without it, one LiteMX indexing run after another on this machine ran
    up to a third slower each time (the blob store's thousands of files and directories, made
    and removed run after run, with the same content-addressed names); dropping the caches
    before each run made them agree within 10 %. The indexer's `inputs` (files, or directories
    read recursively) are read back afterwards: each starts with its input in memory, as mail
    that has just arrived is. Returns whether the caches were dropped."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    for path in inputs:
        for file in (path.rglob("*") if path.is_dir() else [path]):
            if file.is_file():
                file.read_bytes()
    return True


def sqlite_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection for polling a live server's database (WAL: never blocks it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def count_processed(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(messages rows, FTS-indexed docs, queue rows not yet done) in a live LiteMX database."""
    messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    try:
        indexed = conn.execute("SELECT count(*) FROM message_fts_docsize").fetchone()[0]
    except sqlite3.OperationalError:
        indexed = -1
    pending = conn.execute("SELECT count(*) FROM inbound_queue WHERE status = 'pending'").fetchone()[0]
    return int(messages), int(indexed), int(pending)


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(p / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else float("nan")}


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    disk = "unknown"
    try:
        out = subprocess.run(["df", "-hT", str(WORK.parent if not WORK.exists() else WORK)], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()
        if len(out) > 1:
            parts = out[1].split()
            disk = f"{parts[1]} on {parts[6]} ({parts[0]})"
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gb": mem_gb, "kernel": platform.release(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "work_fs": disk}


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def load(name: str) -> dict[str, Any]:
    """What `save(name, ...)` wrote last under this BENCH_WORK; {} when nothing was."""
    path = RESULTS / f"{name}.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return result


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def say(*parts: Any) -> None:
    print(*parts, flush=True)
