"""Content-addressed blob store on the local file system (the embedded default).

Keys are SHA-256 hex digests, so storing the same bytes twice is free and a key can always
be re-verified against its content. Writes go to a temp file, fsync, rename, fsync the
directory: after put() returns, the blob survives a crash (SPEC §5 durability). A fan-out
directory (`ab/`, `ab/cd/`) is itself an entry of its parent, so the parent is fsynced once
(per process) after the directory is made or first seen: POSIX does not promise that a new
directory survives a power cut otherwise, and the acknowledged message would vanish with it.

put_many() stores a batch with the same steps, each done for the whole batch before the next
(write every file, fsync them side by side, rename them, fsync every directory side by side):
concurrent fsyncs share the file system's journal commits, where one put() after another
pays two or three commits per blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from litemx.errors import Unavailable

log = logging.getLogger("litemx.blobs")

TEMP_PREFIX = ".tmp-"  # a blob being written; renamed to its key once fsynced
SYNC_THREADS = 8  # fsyncs of one batch in flight at once (they wait on the disk, not the CPU)
SYNC_GROUP = 64  # blobs written per step of put_many: bounds the files open at once
T = TypeVar("T")


def content_key(data: bytes) -> str:
    """The key every blob store gives `data`: its SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


class Putter(Protocol):
    def put(self, data: bytes) -> str: ...


def put_all(store: Putter, items: Sequence[bytes], workers: Executor | None = None) -> list[str]:
    """Store every item durably; their keys in order. A FileBlobStore syncs them together
    (put_many); another store's put() is durable on its own, so those run on `workers`.

    Raises: whatever the store raises; then none of the items may be counted as stored.
    """
    if isinstance(store, FileBlobStore):
        return store.put_many(items)
    if workers is None or len(items) < 2:
        return [store.put(data) for data in items]
    return list(workers.map(store.put, items))


class FileBlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._root = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        _fsync_dir(self.root.parent)
        self._durable_dirs: set[str] = set()  # fan-out directories whose entry is known fsynced
        self._syncers: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): made after a fork

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The blob's file name. A plain string on the read paths: pathlib interns every component
        it parses (sys.intern), and a long-lived server reading millions of distinct 64-character
        blob names would grow the interpreter's interned-string table for nothing.

        Raises: KeyError for anything but a lowercase hex SHA-256.
        """
        if not is_key(key):
            raise KeyError(key)
        return os.path.join(self._root, key[:2], key[2:4], key)

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        """Store several blobs; their keys in order. When it returns, every one is durable.

        Raises: OSError; blobs already renamed into place stay (each is complete: a file is
            fsynced before its rename), but none may be counted as durable.
        """
        keys = [content_key(data) for data in items]
        distinct = list(dict(zip(keys, items, strict=True)).items())
        for start in range(0, len(distinct), SYNC_GROUP):
            self._put_group(distinct[start:start + SYNC_GROUP])
        return keys

    def _put_group(self, blobs: list[tuple[str, bytes]]) -> None:
        new_dirs = self._make_dirs(key for key, _ in blobs)
        paths = [self._path(key) for key, _ in blobs]
        # A blob already there may have been renamed by a concurrent put() that has not
        # fsynced its directory yet: the directory fsyncs below cover it as well.
        staged = self._write_temps([(path, data) for path, (_, data) in zip(paths, blobs, strict=True)
                                    if not _touched(path)])
        self._sync_temps(staged)
        _rename_all([(tmp, path) for _, tmp, path in staged])
        # Parents of new directories first, then the blobs' own: the order put() always used.
        dirs = [(self.root / name).parent for name in new_dirs] + [path.parent for path in paths]
        self._each(_fsync_dir, list(dict.fromkeys(dirs)))
        self._durable_dirs.update(new_dirs)

    def _make_dirs(self, keys: Iterable[str]) -> list[str]:
        """`ab/` and `ab/cd/` exist for every key; returns those whose entry in their parent is
        not known durable yet (made now, or first seen by this process), parents first."""
        names: list[str] = []
        for key in keys:
            for name in (key[:2], f"{key[:2]}/{key[2:4]}"):
                if name in self._durable_dirs or name in names:
                    continue
                with contextlib.suppress(FileExistsError):
                    (self.root / name).mkdir()
                names.append(name)
        return names

    def _write_temps(self, blobs: list[tuple[Path, bytes]]) -> list[tuple[int, str, Path]]:
        """Each blob in a temp file beside its final path, written but not synced yet:
        (open fd, temp path, final path). On failure nothing is left behind."""
        staged: list[tuple[int, str, Path]] = []
        try:
            for path, data in blobs:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
                staged.append((fd, tmp, path))
                _write_all(fd, data)
        except BaseException:
            _close(staged, remove=True)
            raise
        return staged

    def _sync_temps(self, staged: list[tuple[int, str, Path]]) -> None:
        """fsync every temp file side by side, then close them (and remove them on failure)."""
        try:
            self._each(_fsync_file, [fd for fd, _, _ in staged])
        except BaseException:
            _close(staged, remove=True)
            raise
        _close(staged, remove=False)

    def _each(self, sync: Callable[[T], None], targets: list[T]) -> None:
        """Run `sync` on every target, side by side when there are several; raises the first failure."""
        if len(targets) < 2:
            for target in targets:
                sync(target)
            return
        # Wait for every one before raising: the caller closes the files on failure, and an
        # fsync still running on a closed (or reused) descriptor would hit another file.
        futures = [self._pool().submit(sync, target) for target in targets]
        wait(futures)
        for future in futures:
            future.result()

    def _pool(self) -> ThreadPoolExecutor:
        if self._syncers is None or self._syncers[0] != os.getpid():
            self._syncers = (os.getpid(), ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="litemx-fsync"))
        return self._syncers[1]

    def get(self, key: str) -> bytes:
        try:
            with open(self._file(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self._file(key))
        except (FileNotFoundError, KeyError):
            return False
        return True

    def delete_many(self, keys: Sequence[str]) -> tuple[int, dict[str, str]]:
        """One unlink each (a local unlink is cheap); a file that cannot be removed is reported
        and the rest still go. Raises: Unavailable when none went and some failed (an unlink
        that fails removed nothing, so nothing is gone)."""
        gone, failed = 0, {}
        for key in keys:
            try:
                gone += self.delete(key)
            except OSError as exc:
                failed[key] = f"{type(exc).__name__}: {exc.strerror or exc}"
        if failed and not gone:
            raise Unavailable(f"the blob store deleted none of {len(failed)} blob(s)")
        return gone, failed

    def exists(self, key: str) -> bool:
        try:
            return os.path.exists(self._file(key))
        except KeyError:
            return False

    def keys_written_before(self, moment: datetime, shard: str = "") -> Iterator[str]:
        """Blob files (under the fan-out directories starting with `shard`) whose mtime is
        before `moment`. Temp files, misplaced files and anything else are skipped, and so is
        a file another run deletes while this one walks."""
        limit = moment.timestamp()
        for middle, placed, name in self._walk(shard):
            if is_key(name) and name[:4] == placed and _mtime(os.path.join(middle, name)) < limit:
                yield name

    def remove_temp_files_before(self, moment: datetime, shard: str = "") -> int:
        """Remove the temp files (`.tmp-*`, under the fan-out directories starting with
        `shard`) last written before `moment`; how many went. A put removes its own temp files
        when it fails, so these are what a crash between writing and renaming left behind:
        pass a moment far older than any write takes."""
        limit, removed = moment.timestamp(), 0
        for middle, _, name in self._walk(shard):
            path = os.path.join(middle, name)
            if not name.startswith(TEMP_PREFIX) or _mtime(path) >= limit:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:  # another run got it first
                continue
            except OSError as exc:  # not ours to remove (a directory, a read-only mount): leave it
                log.warning("could not remove the stale temp file %s: %s", path, exc.strerror or exc)
                continue
            removed += 1
        return removed

    def _walk(self, shard: str) -> Iterator[tuple[str, str, str]]:
        """(directory, its two fan-out names joined, a name in it) for every entry of the
        second-level fan-out directories under those starting with `shard`."""
        for top in _subdirectories(self._root, shard):
            for middle in _subdirectories(top, ""):
                placed = os.path.basename(top) + os.path.basename(middle)
                for name in _listing(middle):
                    yield middle, placed, name


def _touched(path: Path) -> bool:
    """Whether the blob at `path` is there; if so its mtime is now, as if written again (the
    orphan sweep's grace counts from a blob's last write, retention.ORPHAN_GRACE)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # there, but not ours to touch (restored from a backup as another user):
        return path.exists()  # the writers' holds still protect it; the mtime is a second guard
    return True


def _subdirectories(path: str, prefix: str) -> list[str]:
    """The fan-out directories (`ab`, `cd`) under path whose names start with `prefix`."""
    return sorted(os.path.join(path, name) for name in _listing(path)
                  if len(name) == 2 and name.startswith(prefix) and os.path.isdir(os.path.join(path, name)))


def _listing(path: str) -> list[str]:
    """The names in a directory; none when it went away meanwhile."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _mtime(path: str) -> float:
    """A file's mtime; infinitely new when it went away meanwhile (never a candidate)."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def is_key(name: str) -> bool:
    """Whether `name` is a blob key: a lowercase hex SHA-256."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close(staged: list[tuple[int, str, Path]], *, remove: bool) -> None:
    for fd, tmp, _ in staged:
        os.close(fd)
        if remove:
            Path(tmp).unlink(missing_ok=True)


def _rename_all(moves: list[tuple[str, Path]]) -> None:
    """Move fsynced temp files into place; on failure the temp files not moved yet are removed."""
    try:
        for tmp, path in moves:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in moves:
            Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_file(fd: int) -> None:
    os.fsync(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
