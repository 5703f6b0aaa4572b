"""`litemx serve` and `litemx accounts create` as a user runs them: real processes, real ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from litemx.storage.schema import metadata
from litemx.storage.search_objects import include_object
from tests.support.live import free_port

LITEMX = [sys.executable, "-m", "litemx.adapters.cli"]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("server did not answer in time")


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path, database_url: str, dns) -> None:
    port = free_port()
    # Free ports and the loopback DNS server: never the defaults a developer's `make run` holds.
    env = {**os.environ, "LITEMX_DATA_DIR": str(tmp_path / "data"), "LITEMX_HTTP": f"127.0.0.1:{port}",
           "LITEMX_SMTP": f"127.0.0.1:{free_port()}", "LITEMX_DATABASE_URL": database_url,
           "LITEMX_DNS_SERVERS": dns.address, "LITEMX_DNS_RECHECK_SECONDS": "0"}
    made = subprocess.run([*LITEMX, "accounts", "create", "Acme", "--plan", "starter", "--json"], env=env,
                          capture_output=True, check=True, timeout=60)
    created = json.loads(made.stdout)
    assert created["account"]["plan"] == "starter" and created["token"].startswith("lmx_")
    proc = subprocess.Popen([*LITEMX, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc)
        me = httpx.get(url + "/api/bootstrap", headers={"Authorization": f"Bearer {created['token']}"}).json()
        assert me["account"]["name"] == "Acme" and me["token"]["admin"] is True
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    log = output.decode()
    assert "litemx stopped" in log
    assert created["token"] not in log  # secrets never reach logs


def test_accounts_create_refuses_an_unknown_plan(tmp_path: Path) -> None:
    env = {**os.environ, "LITEMX_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([*LITEMX, "accounts", "create", "Acme", "--plan", "gold"], env=env, capture_output=True,
                         timeout=60)
    assert out.returncode != 0
    assert out.stderr.decode().strip() == "error: invalid_request: plan must be one of free, starter, scale"


def test_migrations_build_exactly_the_schema_the_code_queries(services) -> None:
    with services.infra.db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(ctx, metadata)
    assert diff == []
