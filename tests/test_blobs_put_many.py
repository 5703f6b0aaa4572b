"""FileBlobStore.put_many, which the inbound worker uses to make a batch's blobs durable together
before the transaction that drops their inline copies: every file is fsynced before it is
renamed into place, every directory entry is fsynced before it returns, and a failed write
leaves nothing half-made (tests/test_inbound_batch.py covers the worker's side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from litemx.storage import blobs
from litemx.storage.blobs import FileBlobStore, content_key


def _record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every fsync (of a temp file, by its path, or of a directory) and every rename, in order."""
    events: list[tuple[str, Any]] = []
    real_file, real_dir, real_replace = blobs._fsync_file, blobs._fsync_dir, os.replace

    def sync_file(fd: int) -> None:
        events.append(("file", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_file(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("rename", Path(src).name))
        real_replace(src, dst)

    monkeypatch.setattr(blobs, "_fsync_file", sync_file)
    monkeypatch.setattr(blobs, "_fsync_dir", lambda path: (events.append(("dir", Path(path))), real_dir(path))[1])
    monkeypatch.setattr(blobs.os, "replace", replace)
    return events


def test_put_many_returns_every_key_in_order_and_stores_repeated_content_once(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    items = [b"one", b"two", b"one", b"three"]
    assert store.put_many(items) == [content_key(i) for i in items]
    assert [store.get(content_key(i)) for i in items] == items
    assert len([p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]) == 3


def test_put_many_fsyncs_each_file_before_its_rename_and_every_directory_before_returning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    events = _record_syncs(monkeypatch)
    keys = store.put_many([f"message {i}".encode() for i in range(20)])
    renames = [name for kind, name in events if kind == "rename"]
    assert len(renames) == 20
    for name in renames:
        assert events.index(("file", name)) < events.index(("rename", name))
    synced_dirs = {path for kind, path in events if kind == "dir"}
    root = tmp_path / "blobs"
    for key in keys:
        # the blob's entry, its ab/cd/ entry in ab/, and ab/'s entry in the root
        assert {root / key[:2] / key[2:4], root / key[:2], root} <= synced_dirs
    last_rename = max(i for i, (kind, _) in enumerate(events) if kind == "rename")
    assert all(i > last_rename for i, (kind, _) in enumerate(events) if kind == "dir")


def test_a_failed_fsync_leaves_no_temporary_file_and_nothing_renamed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path / "blobs")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs, "_fsync_file", disk_full)
    with pytest.raises(OSError):
        store.put_many([b"a", b"b", b"c"])
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


def test_storing_existing_bytes_refreshes_the_blob_and_copes_when_it_cannot(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The orphan sweep's grace counts from a blob's last write: storing bytes that are already
    there refreshes the file's mtime. A file that cannot be touched (restored from a backup as
    another user: EPERM) still counts as stored."""
    store = FileBlobStore(tmp_path / "blobs")
    key = store.put(b"logo")
    path = store._path(key)
    os.utime(path, (1_000_000, 1_000_000))
    assert store.put(b"logo") == key and path.stat().st_mtime > 1_000_000

    def refused(target: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr(blobs.os, "utime", refused)
    assert store.put_many([b"logo", b"new"]) == [key, content_key(b"new")]
    assert store.get(key) == b"logo" and store.get(content_key(b"new")) == b"new"
