"""The embedded store: one directory, one SQLite database (WAL) holding metadata and vectors.

Each video is written in a single transaction, so a crash leaves the index as it was or with whole
videos added, and readers never see half a video. Vectors are kept as BLOBs beside their key
frame and loaded into contiguous numpy arrays, cached until the database changes.

Schema 2 keeps each descriptor as float16 (1 KB a key frame) and no 64-d index: the index is
derived from the descriptor at load time by the pooling the index's config names, which made it.
Rounding to float16 keeps every best match on the sample index and swaps only key frames whose
distances tie to 0.001% (docs/performance.md, tests/store). Rows written by schema 1
(float32 descriptor and index) are still read, told apart by their descriptor's byte length.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np

from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM, LEGACY_MEAN, pooling_named
from frameseek.keyframes import KeyFrame
from frameseek.store.base import KeyFrameRecord, StoreError, Vectors, VideoRecord

DATABASE = "frameseek.sqlite"
SCHEMA_VERSION = 2
PAGE_SIZE = 16_384
DESCRIPTOR_DTYPE = np.float16
DERIVED = b""  # index_vector of schema-2 rows: computed from the descriptor when loaded

# AUTOINCREMENT: ids are never reused after a removal, so a URL or cache keyed by id (thumbnails,
# video files) can never show another key frame's or video's content.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    content_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    duration REAL NOT NULL,
    frames INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    fps REAL NOT NULL,
    keyframes INTEGER NOT NULL,
    coverage_keyframes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS videos_content ON videos(content_id);
CREATE TABLE IF NOT EXISTS keyframes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    frame INTEGER NOT NULL,
    time REAL NOT NULL,
    segments TEXT NOT NULL,
    index_vector BLOB NOT NULL,
    descriptor BLOB NOT NULL,
    thumbnail BLOB
);
CREATE INDEX IF NOT EXISTS keyframes_video ON keyframes(video_id);
"""

VIDEO_COLUMNS = ("id, path, content_id, size, duration, frames, width, height, fps, keyframes, "
                 "coverage_keyframes")
P = ParamSpec("P")
R = TypeVar("R")


def _damage_is_store_error(
    method: Callable[Concatenate[EmbeddedStore, P], R],
) -> Callable[Concatenate[EmbeddedStore, P], R]:
    """A damaged database file (a bad disk, a crash of the OS) fails whichever query meets the
    damage, with whatever error decoding the bytes gives: callers get one StoreError for all."""

    @functools.wraps(method)
    def guarded(self: EmbeddedStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.directory / DATABASE}: {_first_line(exc)}") from exc
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            raise StoreError(
                f"{self.directory / DATABASE}: damaged record ({_first_line(exc)})"
            ) from exc

    return guarded


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


class EmbeddedStore:
    def __init__(self, directory: Path, *, create: bool = False) -> None:
        self.directory = Path(directory)
        database = self.directory / DATABASE
        if not database.exists():
            if not create:
                raise StoreError(f"{self.directory}: no frameseek index here")
            self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(database, check_same_thread=False, timeout=30)
            # A key-frame row is ~1.07 KB: 4 KB pages would hold 3 (1.37 KB a key frame), 16 KB
            # pages hold 15 (1.09 KB). Takes effect only when the database is created.
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            _add_coverage_column(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{database}: not a frameseek index ({exc})") from exc
        self._lock = threading.Lock()
        self._cached: tuple[int, Vectors] | None = None

    def _version(self) -> int:
        """Changes whenever any connection commits: the cache key for the vector snapshot."""
        total_changes = self._db.total_changes
        data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        return hash((total_changes, data_version))

    @_damage_is_store_error
    def get_config(self) -> dict | None:
        with self._lock:
            return self._config()

    def _config(self) -> dict | None:
        """The stored config; the caller holds the lock."""
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        return json.loads(row[0]) if row else None

    @_damage_is_store_error
    def set_config(self, config: dict) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("config", json.dumps(config)), ("schema", str(SCHEMA_VERSION))],
            )

    @_damage_is_store_error
    def add_video(self, video: VideoRecord, keyframes: list[KeyFrame]) -> VideoRecord:
        with self._lock, self._db:
            self._db.execute("DELETE FROM videos WHERE path = ?", (video.path,))
            cursor = self._db.execute(
                "INSERT INTO videos(path, content_id, size, duration, frames, width, height, fps,"
                " keyframes, coverage_keyframes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (video.path, video.content_id, video.size, video.duration, video.frames,
                 video.width, video.height, video.fps, len(keyframes), video.coverage_keyframes),
            )
            video_id = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO keyframes(video_id, frame, time, segments, index_vector, descriptor,"
                " thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (video_id, k.frame, k.time, json.dumps(k.segments),
                     DERIVED, np.asarray(k.descriptor, dtype=DESCRIPTOR_DTYPE).tobytes(),
                     k.thumbnail)
                    for k in keyframes
                ],
            )
        return self.find_video(video.path)  # type: ignore[return-value]

    @_damage_is_store_error
    def remove_video(self, path: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM videos WHERE path = ?", (path,)).rowcount > 0

    @_damage_is_store_error
    def find_video(self, path: str) -> VideoRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {VIDEO_COLUMNS} FROM videos WHERE path = ?", (path,)
            ).fetchone()
        return _video(row) if row else None

    @_damage_is_store_error
    def videos(self) -> list[VideoRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {VIDEO_COLUMNS} FROM videos ORDER BY path").fetchall()
        return [_video(row) for row in rows]

    @_damage_is_store_error
    def vectors(self) -> Vectors:
        with self._lock:
            version = self._version()
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
            rows = self._db.execute(
                "SELECT id, descriptor FROM keyframes ORDER BY id"
            ).fetchall()
            pooling = (self._config() or {}).get("pooling", LEGACY_MEAN)
            self._cached = (version, _vectors(rows, pooling_named(pooling).coarse))
            return self._cached[1]

    @_damage_is_store_error
    def keyframes(self, ids: list[int]) -> list[KeyFrameRecord]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                "SELECT k.id, v.path, k.frame, k.time, k.segments FROM keyframes k"
                f" JOIN videos v ON v.id = k.video_id WHERE k.id IN ({marks})",
                [int(i) for i in ids],
            ).fetchall()
        by_id = {
            row[0]: KeyFrameRecord(row[0], row[1], row[2], row[3],
                                   [tuple(span) for span in json.loads(row[4])])
            for row in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    @_damage_is_store_error
    def thumbnail(self, keyframe_id: int) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT thumbnail FROM keyframes WHERE id = ?", (keyframe_id,)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()


def _add_coverage_column(db: sqlite3.Connection) -> None:
    """Indexes made before the coverage guarantee lack its column; their videos added none."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(videos)")}
    if "coverage_keyframes" not in columns:
        with db:
            db.execute("ALTER TABLE videos ADD COLUMN coverage_keyframes INTEGER NOT NULL "
                       "DEFAULT 0")


def _video(row: tuple) -> VideoRecord:
    id_, path, content_id, size, duration, frames, width, height, fps, keyframes, added = row
    return VideoRecord(path, content_id, size, duration, frames, width, height, fps, keyframes, id_,
                       added)


CHUNK = 65_536  # descriptors pooled at a time while loading, so no full float32 copy is made


def _vectors(rows: list[tuple], coarse: Callable[[np.ndarray], np.ndarray]) -> Vectors:
    count = len(rows)
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=count)
    compact = DESCRIPTOR_DIM * np.dtype(DESCRIPTOR_DTYPE).itemsize
    if all(len(row[1]) == compact for row in rows):
        blob = b"".join(row[1] for row in rows)
        descriptors = np.frombuffer(blob, dtype=DESCRIPTOR_DTYPE).reshape(count, DESCRIPTOR_DIM)
    else:  # some schema-1 rows: keep their full float32 precision
        descriptors = np.empty((count, DESCRIPTOR_DIM), dtype=np.float32)
        for i, row in enumerate(rows):
            dtype = DESCRIPTOR_DTYPE if len(row[1]) == compact else np.float32
            descriptors[i] = np.frombuffer(row[1], dtype=dtype)
    index = np.empty((count, INDEX_DIM), dtype=np.float32)
    for start in range(0, count, CHUNK):
        part = slice(start, start + CHUNK)
        index[part] = coarse(descriptors[part].astype(np.float32))
    return Vectors(ids, index, descriptors)
