"""A ZIP writer that streams: bytes out as entries go in, in memory bounded by one entry.

stdlib `zipfile` can write to an unseekable stream, but it keeps a ZipInfo per entry for the
central directory, so memory grows with the entry count (a million-message export would
hold a million of them). This writer spools its central-directory records to a temporary
file instead (in memory up to 1 MiB, on disk beyond), so a mailbox export runs in constant
memory whatever its size. Format: PKWARE APPNOTE 6.3.x — deflate, UTF-8 names (bit 11),
data descriptors for entries of unknown size (bit 3), ZIP64 where sizes, offsets or the
entry count need it. Any unzip, and Python's zipfile, read the result.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime

_LOCAL = 0x04034B50
_CENTRAL = 0x02014B50
_DESCRIPTOR = 0x08074B50
_END = 0x06054B50
_END64 = 0x06064B50
_LOCATOR64 = 0x07064B50
_FLAG_UTF8 = 0x0800
_FLAG_DESCRIPTOR = 0x0008
_DEFLATE = 8
_MADE_BY = (3 << 8) | 45  # Unix, spec 4.5
_FILE_MODE = (0o100644 << 16)
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
_SPOOL_BYTES = 1 << 20
_CHUNK = 64 * 1024


def dos_time(when: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS format; years before 1980 clamp to 1980."""
    year = max(when.year, 1980)
    return ((when.hour << 11) | (when.minute << 5) | (when.second // 2),
            ((year - 1980) << 9) | (when.month << 5) | when.day)


class ZipStream:
    """Feed entries, iterate the bytes each call yields, then iterate finish()."""

    def __init__(self, level: int = 6):
        self.level = level
        self.offset = 0
        self.count = 0
        self.central = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - closed in finish()

    def add(self, name: str, data: bytes, when: datetime) -> Iterator[bytes]:
        """One entry whose bytes are at hand (sizes and CRC go in the local header)."""
        crc = zlib.crc32(data)
        packed = self._compressor()
        body = packed.compress(data) + packed.flush()
        wide = len(data) >= _MAX32 or len(body) >= _MAX32
        start = self.offset
        yield self._advance(self._local_header(name, when, 0, crc, len(body), len(data), wide))
        if body:
            yield self._advance(body)
        self._remember(name, when, 0, crc, len(body), len(data), start, wide)

    def add_stream(self, name: str, chunks: Iterable[bytes], when: datetime) -> Iterator[bytes]:
        """One entry of unknown size: sizes and CRC follow the data (a ZIP64 data descriptor)."""
        header = self._local_header(name, when, _FLAG_DESCRIPTOR, 0, 0, 0, True)
        start = self.offset
        yield self._advance(header)
        crc, raw, packed, out = 0, 0, 0, self._compressor()
        for chunk in chunks:
            crc, raw = zlib.crc32(chunk, crc), raw + len(chunk)
            piece = out.compress(chunk)
            packed += len(piece)
            if piece:
                yield self._advance(piece)
        tail = out.flush()
        packed += len(tail)
        yield self._advance(tail + struct.pack("<IIQQ", _DESCRIPTOR, crc, packed, raw))
        self._remember(name, when, _FLAG_DESCRIPTOR, crc, packed, raw, start, True)

    def finish(self) -> Iterator[bytes]:
        """The central directory and the end records; the writer is spent afterwards."""
        start, size = self.offset, self.central.tell()
        self.central.seek(0)
        while chunk := self.central.read(_CHUNK):
            yield self._advance(chunk)
        self.central.close()
        if self.count >= _MAX16 or start >= _MAX32 or size >= _MAX32:
            yield self._advance(self._zip64_end(start, size))
        yield self._advance(struct.pack("<IHHHHIIH", _END, 0, 0, min(self.count, _MAX16), min(self.count, _MAX16),
                                        min(size, _MAX32), min(start, _MAX32), 0))

    def close(self) -> None:
        """Drop the spooled central directory (a stream abandoned before finish())."""
        self.central.close()

    # -- records ---------------------------------------------------------------------------
    def _compressor(self) -> zlib._Compress:
        return zlib.compressobj(self.level, zlib.DEFLATED, -15)  # raw deflate, as ZIP wants

    def _local_header(self, name: str, when: datetime, flags: int, crc: int, packed: int, raw: int,
                      wide: bool) -> bytes:
        encoded = name.encode()
        t, d = dos_time(when)
        extra = struct.pack("<HHQQ", 1, 16, raw, packed) if wide else b""
        sizes = (_MAX32, _MAX32) if wide else (packed, raw)
        return struct.pack("<IHHHHHIIIHH", _LOCAL, 45 if wide else 20, flags | _FLAG_UTF8, _DEFLATE, t, d, crc,
                           *sizes, len(encoded), len(extra)) + encoded + extra

    def _remember(self, name: str, when: datetime, flags: int, crc: int, packed: int, raw: int, offset: int,
                  wide: bool) -> None:
        encoded = name.encode()
        fields, sizes = [], [packed, raw]
        if wide:
            fields += [raw, packed]
            sizes = [_MAX32, _MAX32]
        if offset >= _MAX32:
            fields.append(offset)
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        t, d = dos_time(when)
        self.central.write(struct.pack(
            "<IHHHHHHIIIHHHHHII", _CENTRAL, _MADE_BY, 45 if extra else 20, flags | _FLAG_UTF8, _DEFLATE, t, d,
            crc, sizes[0], sizes[1], len(encoded), len(extra), 0, 0, 0, _FILE_MODE, min(offset, _MAX32),
        ) + encoded + extra)
        self.count += 1

    def _zip64_end(self, start: int, size: int) -> bytes:
        record_at = self.offset
        record = struct.pack("<IQHHIIQQQQ", _END64, 44, _MADE_BY, 45, 0, 0, self.count, self.count, size, start)
        return record + struct.pack("<IIQI", _LOCATOR64, 0, record_at, 1)

    # -- bookkeeping -----------------------------------------------------------------------
    def _advance(self, data: bytes) -> bytes:
        self.offset += len(data)
        return data
