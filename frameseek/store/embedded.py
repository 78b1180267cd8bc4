"""The embedded store: one directory, one SQLite database (WAL) holding metadata and vectors.

Each video is written in a single transaction, so a crash leaves the index as it was or with whole
videos added, and readers never see half a video.

The descriptors are kept twice. Each key frame's row holds its own (the record everything can be
rebuilt from), and `vectors/` holds them all in one append-only, memory-mapped row file (schema 3,
frameseek/store/vectorfile.py), which is what searches read: opening maps it without reading it,
where loading the rows meant reading every thumbnail with them (22 s at a million key frames).
Each video's descriptors are appended and fsynced inside its transaction, before the commit that
records the file's new length and the video's rows in it (`vector_rows`); a removed video's rows
stay in the file, dead, until the file is rebuilt. A row file that is missing, truncated or not
the one recorded is rebuilt from the database, with a one-line message on stderr.

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
import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np

from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM, LEGACY_MEAN, pooling_named
from frameseek.keyframes import KeyFrame
from frameseek.store.base import KeyFrameRecord, StoreError, Vectors, VideoRecord
from frameseek.store.vectorfile import (
    DamagedFile,
    Fingerprint,
    RowFile,
    remove_unlisted,
    unique_name,
)

DATABASE = "frameseek.sqlite"
VECTOR_FOLDER = "vectors"
ROW_FILE_KEY = "row_file"  # meta: the row file's name, committed rows, dtype and fingerprint
SCHEMA_VERSION = 3
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
CREATE TABLE IF NOT EXISTS vector_rows (
    video_id INTEGER PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    first_row INTEGER NOT NULL,
    first_keyframe INTEGER NOT NULL,
    count INTEGER NOT NULL
);
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


@dataclass(frozen=True)
class DescriptorRows:
    """The row file as of one commit: `descriptors` in file order (memory-mapped), and which
    rows are whose: each live video's run of rows (`starts`, `counts`) and its first key-frame
    id. Rows in no run belong to videos removed or replaced since. Held as runs, not as an id
    per row, so that taking in a commit costs microseconds at any size."""

    file: str
    descriptors: np.ndarray  # (R, 512) float16, float32 if rebuilt from schema-1 rows
    starts: np.ndarray  # (V,) int64, sorted
    counts: np.ndarray  # (V,) int64
    first_ids: np.ndarray  # (V,) int64
    version: Hashable

    @property
    def live(self) -> int:
        return int(self.counts.sum())

    def live_before(self, end: int) -> int:
        """Live rows among [0, end)."""
        return int(np.clip(end - self.starts, 0, self.counts).sum())

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """The key-frame id of each row number; -1 for a dead row, or where -1 is given."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.starts):
            return np.full(rows.shape, -1, dtype=np.int64)
        run = np.maximum(np.searchsorted(self.starts, rows, side="right") - 1, 0)
        offset = rows - self.starts[run]
        inside = (rows >= 0) & (offset >= 0) & (offset < self.counts[run])
        return np.where(inside, self.first_ids[run] + offset, -1)

    @functools.cached_property
    def row_ids(self) -> np.ndarray:
        """`ids` of every row (for the writers and the small-collection path)."""
        return self.ids(np.arange(len(self)))

    def __len__(self) -> int:
        return len(self.descriptors)


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
        # A damaged schema can also surface as text SQLite hands back undecodable.
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{database}: not a frameseek index ({_first_line(exc)})") from exc
        self._lock = threading.Lock()
        self._rows: DescriptorRows | None = None
        self._cached: tuple[Hashable, Vectors] | None = None

    def version(self) -> Hashable:
        """Changes whenever any connection commits: the cache key of every snapshot."""
        with self._lock:
            return self._version()

    def _version(self) -> Hashable:
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
        with self._lock:
            self._ensure_row_file()  # repaired first, in a transaction of its own
        with self._lock, self._db:
            self._db.execute("DELETE FROM videos WHERE path = ?", (video.path,))
            cursor = self._db.execute(
                "INSERT INTO videos(path, content_id, size, duration, frames, width, height, fps,"
                " keyframes, coverage_keyframes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (video.path, video.content_id, video.size, video.duration, video.frames,
                 video.width, video.height, video.fps, len(keyframes), video.coverage_keyframes),
            )
            video_id = cursor.lastrowid
            descriptors = np.asarray([k.descriptor for k in keyframes],
                                     dtype=DESCRIPTOR_DTYPE).reshape(-1, DESCRIPTOR_DIM)
            self._db.executemany(
                "INSERT INTO keyframes(video_id, frame, time, segments, index_vector, descriptor,"
                " thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (video_id, k.frame, k.time, json.dumps(k.segments), DERIVED, d.tobytes(),
                     k.thumbnail)
                    for k, d in zip(keyframes, descriptors, strict=True)
                ],
            )
            if keyframes:
                self._append_rows(video_id, descriptors)
        return self.find_video(video.path)  # type: ignore[return-value]

    def _append_rows(self, video_id: int, descriptors: np.ndarray) -> None:
        """Append a video's descriptors to the row file and record them, inside the video's
        transaction: SQLite's write lock, taken by its first INSERT, keeps other writers out
        until the commit, so appends never interleave."""
        first, last, count = self._db.execute(
            "SELECT min(id), max(id), count(*) FROM keyframes WHERE video_id = ?", (video_id,)
        ).fetchone()
        if last - first + 1 != count:  # one transaction's AUTOINCREMENT ids are consecutive
            raise StoreError(f"{self.directory}: key-frame ids of one video are not consecutive")
        manifest = self._meta(ROW_FILE_KEY)
        if manifest is None:
            raise DamagedFile(f"{self.directory}: the vector file's manifest vanished")
        rows = self._open_row_file(manifest)
        committed = manifest["rows"]
        grown = rows.append(committed, descriptors)
        self._db.execute("INSERT INTO vector_rows(video_id, first_row, first_keyframe, count)"
                         " VALUES (?, ?, ?, ?)", (video_id, committed, first, count))
        self._set_meta(ROW_FILE_KEY, {**manifest, "rows": committed + count,
                                      "fingerprint": grown.to_json()})

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
        """Every live key frame's vectors in id order, read from the mapped row file."""
        rows = self.descriptor_rows()
        with self._lock:
            if self._cached is not None and self._cached[0] == rows.version:
                return self._cached[1]
            pooling = (self._config() or {}).get("pooling", LEGACY_MEAN)
            self._cached = (rows.version, _vectors(rows, pooling_named(pooling).coarse))
            return self._cached[1]

    @_damage_is_store_error
    def descriptor_rows(self) -> DescriptorRows:
        """The mapped row file as of the latest commit: cheap when nothing changed (one PRAGMA),
        a few milliseconds when something did (the row table is one row per video)."""
        with self._lock:
            if self._rows is not None and self._rows.version == self._version():
                return self._rows
            self._ensure_row_file()  # it may write, so before the read transaction below
            self._rows = self._map_rows()
            return self._rows

    def _map_rows(self) -> DescriptorRows:
        version = self._version()  # taken first: a commit after it only causes a re-read
        # One read transaction: the manifest and the row table as of the same commit (WAL).
        self._db.execute("BEGIN")
        try:
            manifest = self._meta(ROW_FILE_KEY)
            ranges = self._db.execute(
                "SELECT first_row, first_keyframe, count FROM vector_rows").fetchall()
        finally:
            self._db.rollback()
        rows = self._open_row_file(manifest)
        runs = np.array(sorted(ranges), dtype=np.int64).reshape(-1, 3)
        return DescriptorRows(manifest["file"], rows.map(manifest["rows"]), runs[:, 0],
                              runs[:, 2], runs[:, 1], version)

    def _open_row_file(self, manifest: dict) -> RowFile:
        return RowFile.open(self._vector_folder() / manifest["file"],
                            Fingerprint.from_json(manifest["fingerprint"]))

    def _vector_folder(self) -> Path:
        return self.directory / VECTOR_FOLDER

    def _ensure_row_file(self) -> None:
        """A sound row file is committed: created from the rows already in the database where
        there is none (an index written before schema 3), rebuilt where it is damaged."""
        damage = self._row_file_damage()
        if damage is not None:
            self._rebuild_row_file(damage or None)

    def _row_file_damage(self) -> str | None:
        """None for a sound row file, "" where there is none, else what is wrong with it."""
        manifest = self._meta(ROW_FILE_KEY)
        if manifest is None:
            return ""
        try:
            self._open_row_file(manifest)
        except DamagedFile as exc:
            return str(exc)
        return None

    def _rebuild_row_file(self, damage: str | None) -> None:
        """Write a new row file from the descriptors in the database and commit it. `damage`
        says why (printed on one line); None for a database that has never had one. The caller
        holds the lock and no transaction; BEGIN IMMEDIATE waits for any other writer, which
        may have rebuilt it meanwhile: then there is nothing left to do."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._row_file_damage() is not None:
                self._write_row_file(damage)
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def _write_row_file(self, damage: str | None) -> None:
        """All live descriptors, video by video in key-frame order, into a fresh row file."""
        folder = self._vector_folder()
        folder.mkdir(exist_ok=True)
        count = self._db.execute("SELECT count(*) FROM keyframes").fetchone()[0]
        if damage is not None or count:
            print(f"frameseek: {damage or 'no vector file yet'}: rebuilding {folder} from the "
                  f"database ({count} key frames)", file=sys.stderr)
        legacy = self._db.execute(
            "SELECT 1 FROM keyframes WHERE length(descriptor) != ? LIMIT 1",
            (DESCRIPTOR_DIM * np.dtype(DESCRIPTOR_DTYPE).itemsize,),
        ).fetchone()
        dtype = np.dtype(np.float32 if legacy else DESCRIPTOR_DTYPE)  # keep schema 1's precision
        name = unique_name("descriptors", ".rows")
        rows = RowFile.create(folder / name, dtype, DESCRIPTOR_DIM)
        self._db.execute("DELETE FROM vector_rows")
        committed = 0
        grown = rows.append(0, np.zeros((0, DESCRIPTOR_DIM), dtype))
        videos = self._db.execute("SELECT id FROM videos ORDER BY id").fetchall()
        for (video_id,) in videos:
            found = self._db.execute(
                "SELECT id, descriptor FROM keyframes WHERE video_id = ? ORDER BY id", (video_id,)
            ).fetchall()
            if not found:
                continue
            grown = rows.append(committed, _descriptor_array(found, dtype))
            self._db.execute("INSERT INTO vector_rows(video_id, first_row, first_keyframe, count)"
                             " VALUES (?, ?, ?, ?)", (video_id, committed, found[0][0], len(found)))
            committed += len(found)
        self._set_meta(ROW_FILE_KEY, {"file": name, "rows": committed,
                                      "fingerprint": grown.to_json()})
        remove_unlisted(folder, {name})

    def get_meta(self, key: str) -> dict | None:
        """A JSON value other layers keep in the database (the search index's manifest)."""
        with self._lock:
            return self._meta(key)

    def set_meta(self, key: str, value: dict | None) -> None:
        """Commit a JSON value (None deletes it): the commit point of a layer's files."""
        with self._lock, self._db:
            self._set_meta(key, value)

    def _meta(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _set_meta(self, key: str, value: dict | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             (key, json.dumps(value)))

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
        try:
            with db:
                db.execute("ALTER TABLE videos ADD COLUMN coverage_keyframes INTEGER NOT NULL "
                           "DEFAULT 0")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it first
                raise


def _video(row: tuple) -> VideoRecord:
    id_, path, content_id, size, duration, frames, width, height, fps, keyframes, added = row
    return VideoRecord(path, content_id, size, duration, frames, width, height, fps, keyframes, id_,
                       added)


CHUNK = 65_536  # descriptors pooled at a time while loading, so no full float32 copy is made


def _descriptor_array(rows: list[tuple], dtype: np.dtype) -> np.ndarray:
    """(id, descriptor BLOB) rows as one array; a schema-1 BLOB is float32, told by its length."""
    compact = DESCRIPTOR_DIM * np.dtype(DESCRIPTOR_DTYPE).itemsize
    return np.stack([np.frombuffer(blob, DESCRIPTOR_DTYPE if len(blob) == compact else np.float32)
                     for _, blob in rows]).astype(dtype, copy=False)


def _vectors(rows: DescriptorRows, coarse: Callable[[np.ndarray], np.ndarray]) -> Vectors:
    """The live rows, sorted by id (the row file is in id order, except after a video is
    replaced by a rebuilt file); the mapped array itself where every row is live."""
    live = np.flatnonzero(rows.row_ids >= 0)
    live = live[np.argsort(rows.row_ids[live], kind="stable")]
    whole = len(live) == len(rows) and bool(np.all(live == np.arange(len(live))))
    descriptors = rows.descriptors if whole else rows.descriptors[live]
    ids = rows.row_ids[live]
    count = len(ids)
    index = np.empty((count, INDEX_DIM), dtype=np.float32)
    for start in range(0, count, CHUNK):
        part = slice(start, start + CHUNK)
        index[part] = coarse(descriptors[part].astype(np.float32))
    return Vectors(ids, index, descriptors)
