"""Protocols for the outside world; the service layer depends on these, never on concrete I/O."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class BlobStore(Protocol):
    """Content-addressed storage for raw messages and attachments."""

    def put(self, data: bytes) -> str:
        """Store durably and return the key (the SHA-256 hex of the content)."""
        ...

    def get(self, key: str) -> bytes:
        """Raises: KeyError when the blob does not exist."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the blob; True when something was removed."""
        ...

    def delete_many(self, keys: Sequence[str]) -> tuple[int, dict[str, str]]:
        """Remove the blobs, carrying on past a blob that fails: (how many were removed, the
        reason for each key that could not be). Raises: Unavailable only when it is certain
        that nothing was removed, so the caller may roll back the rows that referenced them."""
        ...

    def exists(self, key: str) -> bool: ...

    def keys_written_before(self, moment: datetime, shard: str = "") -> Iterator[str]:
        """Every stored key starting with `shard` whose blob was last written (or put again)
        before `moment`: the orphan sweep's candidates (service/retention.py). Raises:
        Unavailable when the store fails."""
        ...

    def remove_temp_files_before(self, moment: datetime, shard: str = "") -> int:
        """Remove what half-finished writes (a crash before the rename) left, if this store can
        leave any, last written before `moment` under `shard`; how many went."""
        ...


class Resolver(Protocol):
    """The one DNS resolver every lookup goes through (LITEMX_DNS_SERVERS)."""

    def txt(self, name: str) -> list[str]:
        """TXT strings at name, each record's strings joined; [] when none."""
        ...

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; [] when none."""
        ...

    def a(self, name: str) -> list[str]: ...

    def aaaa(self, name: str) -> list[str]: ...
