"""Files beside the SQLite database that hold vectors, and the rules that keep them honest.

Two kinds of file live in an index's `vectors/` folder:

- an append-only row file (`RowFile`): a 64-byte header, then fixed-size rows (the float16
  descriptors). Rows are appended past the committed end, fsynced, and only then made visible by
  the SQLite transaction that records the new row count. A crash before that commit leaves bytes
  past the committed end, which the next writer cuts off; committed rows are never rewritten.
- whole files written once (`frameseek.files.write_atomically`): to a temporary name, fsynced,
  renamed into place, the folder fsynced; made visible by the SQLite row that names them.

Either way SQLite is the one commit point, and each file's `Fingerprint` is recorded in that row.
`check` compares a file with its fingerprint at open: its size and CRCs of its first and last
64 KiB. That catches a missing, truncated or replaced file (another index's, another version's)
in microseconds; it does not read the gigabytes in between, so it cannot see a flipped bit there.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from frameseek.files import fsync_folder
from frameseek.store.base import StoreError

MAGIC = b"FSROWS\x00\x01"  # the last byte is the format version
HEADER = struct.Struct("<8s16sII32x")  # magic, dtype name, columns, row bytes; 64 bytes
PROBE = 65_536  # bytes at each end whose CRC the fingerprint keeps


class DamagedFile(StoreError):
    """A vector file is missing, truncated or not the one its manifest names."""


@dataclass(frozen=True)
class Fingerprint:
    """What a file must look like to be the one a manifest row names, checked without reading
    it all."""

    size: int
    head_crc: int
    tail_crc: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Fingerprint:
        return cls(int(data["size"]), int(data["head_crc"]), int(data["tail_crc"]))


def fingerprint(path: Path, size: int | None = None) -> Fingerprint:
    """The fingerprint of `path`'s first `size` bytes (all of it by default)."""
    with path.open("rb") as handle:
        end = os.fstat(handle.fileno()).st_size if size is None else size
        head = handle.read(min(PROBE, end))
        handle.seek(max(0, end - PROBE))
        tail = handle.read(min(PROBE, end))
    return Fingerprint(end, zlib.crc32(head), zlib.crc32(tail))


def check(path: Path, expected: Fingerprint, *, exact_size: bool = True) -> None:
    """Raise DamagedFile unless `path` matches `expected` (an append-only file may be longer:
    uncommitted rows past the end)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DamagedFile(f"{path} is missing") from None
    if size < expected.size or (exact_size and size != expected.size):
        raise DamagedFile(f"{path} is {size} bytes, its manifest says {expected.size}")
    if fingerprint(path, expected.size) != expected:
        raise DamagedFile(f"{path} is not the file its manifest names (checksum differs)")


def unique_name(prefix: str, suffix: str) -> str:
    """A name no other writer, crash or earlier generation has used: files are never reused, so
    a reader holding an old one open keeps a consistent view."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}{suffix}"


def remove_unlisted(folder: Path, keep: set[str]) -> None:
    """Delete the files of `folder` that no committed manifest names (left by crashes, or
    replaced by a newer generation). Readers that still map one keep their view: unlinking only
    drops the name."""
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


class RowFile:
    """Fixed-size rows of one dtype, appended, memory-mapped for reading."""

    def __init__(self, path: Path, dtype: np.dtype, columns: int) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.columns = columns
        self.row_bytes = self.dtype.itemsize * columns

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, columns: int) -> RowFile:
        """A new empty file (its header written and fsynced, its name made durable)."""
        rows = cls(path, dtype, columns)
        with path.open("xb") as handle:
            handle.write(HEADER.pack(MAGIC, rows.dtype.str.encode(), columns, rows.row_bytes))
            handle.flush()
            os.fsync(handle.fileno())
        fsync_folder(path.parent)
        return rows

    @classmethod
    def open(cls, path: Path, expected: Fingerprint) -> RowFile:
        """The file a manifest names, checked against its fingerprint and its header."""
        check(path, expected, exact_size=False)
        with path.open("rb") as handle:
            header = handle.read(HEADER.size)
        try:
            magic, dtype, columns, row_bytes = HEADER.unpack(header)
            rows = cls(path, np.dtype(dtype.rstrip(b"\x00").decode()), columns)
        except (struct.error, TypeError, UnicodeDecodeError) as exc:
            raise DamagedFile(f"{path} has no readable header") from exc
        if magic != MAGIC or rows.row_bytes != row_bytes:
            raise DamagedFile(f"{path} is not a frameseek row file of this version")
        return rows

    def size(self, count: int) -> int:
        return HEADER.size + count * self.row_bytes

    def append(self, committed: int, data: np.ndarray) -> Fingerprint:
        """Write `data` after the first `committed` rows, cutting off anything a crashed writer
        left past them, and fsync. The rows are not visible until the caller commits the
        returned fingerprint (of the file as it will be once they count)."""
        data = np.ascontiguousarray(data, dtype=self.dtype).reshape(-1, self.columns)
        with self.path.open("r+b") as handle:
            handle.truncate(self.size(committed))
            handle.seek(self.size(committed))
            handle.write(data.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        return fingerprint(self.path, self.size(committed + len(data)))

    def map(self, count: int) -> np.ndarray:
        """The first `count` rows, read-only and memory-mapped: opening reads nothing."""
        if count == 0:
            return np.zeros((0, self.columns), dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=HEADER.size,
                         shape=(count, self.columns))
