"""Third-party test corpora, fetched at test time into a cache and never committed.

`sdist("pyspf", "2.0.14")` downloads the source archive once with pip (PyPI is the one registry
we may reach), unpacks it under the cache, and returns the unpacked root. Archives that carry
real malware samples (mail-parser) are only read as bytes by the tests, never executed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("LITEMX_TEST_CACHE", Path.home() / ".cache" / "litemx-test-corpora"))


def sdist(name: str, version: str) -> Path:
    """Unpacked root of NAME==VERSION's source distribution (cached across runs)."""
    target = CACHE / f"{name}-{version}"
    marker = target / ".complete"
    if marker.exists():
        return _root(target)
    CACHE.mkdir(parents=True, exist_ok=True)
    # Test workers run in parallel: one downloads and unpacks, the others wait for it.
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            download = CACHE / "downloads"
            download.mkdir(parents=True, exist_ok=True)
            archive = _existing_archive(download, name, version) or _pip_download(download, name, version)
            shutil.rmtree(target, ignore_errors=True)
            _unpack(archive, target)
            marker.touch()
    return _root(target)


def _pip_download(download: Path, name: str, version: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "-d", str(download), f"{name}=={version}"],
        check=True, timeout=300,
    )
    found = _existing_archive(download, name, version)
    if found is None:
        raise FileNotFoundError(f"pip did not produce an sdist for {name}=={version}")
    return found


def _existing_archive(download: Path, name: str, version: str) -> Path | None:
    stems = {name.lower(), name.lower().replace("-", "_"), name.lower().replace("_", "-")}
    for path in download.iterdir():
        low = path.name.lower()
        if any(low.startswith(f"{s}-{version}") for s in stems) and low.endswith((".tar.gz", ".zip")):
            return path
    return None


def _unpack(archive: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
        return
    with tarfile.open(archive) as tf:
        tf.extractall(target, filter="data")


def _root(target: Path) -> Path:
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def cpython_email_data() -> Path:
    """CPython's own test_email/data directory (msg_*.txt), from the running interpreter."""
    import sysconfig

    path = Path(sysconfig.get_path("stdlib")) / "test" / "test_email" / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} missing: this Python was built without its test suite")
    return path
