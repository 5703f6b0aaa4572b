"""Content-addressed blob store on the local file system (the embedded default).

Keys are SHA-256 hex digests, so storing the same bytes twice is free and a key can always
be re-verified against its content. Writes go to a temp file, fsync, rename, fsync the
directory: after put() returns, the blob survives a crash (SPEC §5 durability). A fan-out
directory (`ab/`, `ab/cd/`) is itself an entry of its parent, so the parent is fsynced once
(per process) after the directory is made or first seen: POSIX does not promise that a new
directory survives a power cut otherwise, and the acknowledged message would vanish with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def content_key(data: bytes) -> str:
    """The key every blob store gives `data`: its SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


class FileBlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        _fsync_dir(self.root.parent)
        self._durable_dirs: set[str] = set()  # fan-out directories whose entry is known fsynced

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise KeyError(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = content_key(data)
        path = self._path(key)
        self._make_dirs(key)
        if path.exists():
            # Perhaps renamed by a concurrent put() that has not fsynced the directory yet.
            _fsync_dir(path.parent)
            return key
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return key

    def _make_dirs(self, key: str) -> None:
        """`ab/` and `ab/cd/` exist and their entries are durable in their parents."""
        for name in (key[:2], f"{key[:2]}/{key[2:4]}"):
            if name in self._durable_dirs:
                continue
            directory = self.root / name
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            _fsync_dir(directory.parent)  # whoever made it: after this, its entry is on disk
            self._durable_dirs.add(name)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, KeyError):
            return False
        return True

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).exists()
        except KeyError:
            return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
