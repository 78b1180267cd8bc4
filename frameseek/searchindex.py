"""The persistent search structure of an embedded index: an IVF trained once, saved beside the
database, opened memory-mapped, grown video by video (docs/performance.md, "At scale").

Layout, in the index's `search/` folder, named by the manifest committed in the database
(meta key "search_index"; the commit is what makes a generation visible):

- `trained-*.faiss`: the trained, empty IVF (the cells' centroids and the code's parameters);
  a few MB, read into memory.
- `ivf-*.faiss`: the same with the codes of rows [0, covered) of the store's row file, their
  row numbers as ids; opened with IO_FLAG_MMAP | IO_FLAG_READ_ONLY, so opening reads nothing.

A reader searches that file and, for rows appended since (new videos), a small in-memory IVF
cloned from the trained one: a new video is searchable once its commit is seen, without a
rebuild. Candidates are re-ranked exactly on the float16 descriptors read from the mapped row
file. Rows of removed videos are skipped by id at query time, and removed from the file at the
next fold.

Rules, applied by the writer after each change (`maintain`) and by `optimize`:

- Below FLAT_LIMIT live key frames there is no IVF: the in-memory exact search (CoarseToFine
  "Flat") builds in milliseconds there and ranks exactly. The IVF is trained when a collection
  reaches FLAT_LIMIT, and dropped when it shrinks below half of it (so a collection at the limit
  does not train and drop in turn).
- Fold: once the rows since the file was written reach FOLD_ROWS (or 1% of the file, whichever
  is more), or as many rows in it are dead, they are written into a new file (added, or removed
  by id). Folding keeps the in-memory part, which every open encodes, small.
- Retrain: once the live collection is outside [½, 2]× the size it was trained at, the cells
  (√N of them) no longer fit it: a new IVF is trained over every live row. `frameseek optimize`
  does the same on demand.

Every write makes new files under new names (fsynced, renamed) and then commits the manifest;
readers keep the generation they opened until they see the commit, so nothing a reader holds is
ever changed, and a kill at any moment leaves the previous generation in force. Files no
manifest names are deleted by the next writer. At open, a manifest whose files are missing,
truncated or not the ones it names (size and CRCs, frameseek/store/vectorfile.py), or whose
format or row file is not the current one, is rebuilt from the store with a one-line message.
"""

from __future__ import annotations

import fcntl
import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from frameseek.search import (
    DEFAULT_NPROBE,
    FLAT_LIMIT,
    TRAIN_PER_CELL,
    CoarseToFine,
    Hit,
    Searcher,
    hits,
    rerank,
)
from frameseek.store.embedded import DescriptorRows, EmbeddedStore
from frameseek.store.vectorfile import (
    DamagedFile,
    Fingerprint,
    check,
    remove_unlisted,
    unique_name,
    write_atomically,
)

MANIFEST_KEY = "search_index"
FORMAT = 1  # of the manifest and the files it names; another one is rebuilt
FOLDER = "search"
LOCK = "search.lock"
FOLD_ROWS = 20_000
FOLD_FRACTION = 0.01
RETRAIN_GROWTH = 2.0
CHUNK = 65_536  # rows converted to float32 at a time, so memory stays flat
# The IVF's code for each key frame, chosen by collection size. SQ8 (512 B) ranks as well as
# float16 cells before the exact re-rank (docs/performance.md); from PQ_FROM on, 64-byte PQ
# codes keep the vectors of ten million key frames near the 1 KB of their float16 descriptors.
PQ_FROM = 4_000_000
CANDIDATES = 100  # re-ranked exactly on the float16 descriptors


def factory_for(count: int) -> str:
    """The FAISS factory string of the IVF for a collection of `count` live key frames: √N cells
    (the query's two costs, routing and scanning, balance there)."""
    code = "PQ64" if count >= PQ_FROM else "SQ8"
    return f"IVF{max(1, round(math.sqrt(count)))},{code}"


@dataclass(frozen=True)
class Manifest:
    """One committed generation of the search structure."""

    row_file: str  # the store's row file it indexes, by name
    factory: str
    trained_rows: int  # live key frames it was trained for
    covered: int  # rows [0, covered) of the row file are in `index_file`
    removed: int  # dead rows already removed from `index_file`
    trained_file: str
    trained: Fingerprint
    index_file: str
    index: Fingerprint

    def to_json(self) -> dict:
        return {"format": FORMAT, "row_file": self.row_file, "factory": self.factory,
                "trained_rows": self.trained_rows, "covered": self.covered,
                "removed": self.removed, "trained_file": self.trained_file,
                "trained": self.trained.to_json(), "index_file": self.index_file,
                "index": self.index.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        if data.get("format") != FORMAT:
            raise DamagedFile(f"search index format {data.get('format')}, expected {FORMAT}")
        return cls(data["row_file"], data["factory"], data["trained_rows"], data["covered"],
                   data["removed"], data["trained_file"], Fingerprint.from_json(data["trained"]),
                   data["index_file"], Fingerprint.from_json(data["index"]))


class IvfSearcher:
    """One snapshot: the mapped IVF, the in-memory IVF of the rows appended since, the row file.
    Never changed once built, so any number of threads may search it."""

    def __init__(self, rows: DescriptorRows, manifest: Manifest, base: faiss.Index,
                 recent: faiss.Index) -> None:
        self.rows = rows
        self.manifest = manifest
        self.base = base
        self.recent = recent

    def search(self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
               candidates: int | None = None) -> list[Hit]:
        return self.search_batch(index[None], descriptor[None], top, candidates)[0]

    def search_batch(self, indexes: np.ndarray, descriptors: np.ndarray, top: int = 12,
                     candidates: int | None = None) -> list[list[Hit]]:
        """Only the 512-d descriptors are used: the cells are over them (`indexes` is taken for
        the same signature as CoarseToFine)."""
        queries = np.ascontiguousarray(descriptors, dtype=np.float32)
        wanted = max(top, candidates or CANDIDATES)
        found = [part.search(queries, wanted)[1] for part in (self.base, self.recent)
                 if part.ntotal]
        if not found:
            return [[] for _ in range(len(queries))]
        rows = np.concatenate(found, axis=1)
        # Dead rows (removed videos not yet folded out) are no candidates.
        rows[(rows >= 0) & (self.rows.row_ids[np.maximum(rows, 0)] < 0)] = -1
        squared, rows = rerank(self.rows.descriptors, rows, queries, top)
        return hits(np.where(rows >= 0, self.rows.row_ids[rows], -1), squared)

    def extended(self, rows: DescriptorRows) -> IvfSearcher:
        """This snapshot with the rows appended since added to the in-memory part (a copy: the
        one other threads are searching is left alone)."""
        recent = faiss.clone_index(self.recent)
        _add(recent, rows, max(self.manifest.covered, len(self.rows)), len(rows))
        return IvfSearcher(rows, self.manifest, self.base, recent)


class SearchIndex:
    """The search structure of one embedded store, kept current for readers and writers."""

    def __init__(self, store: EmbeddedStore, nprobe: int = DEFAULT_NPROBE) -> None:
        self.store = store
        self.nprobe = nprobe
        self.folder = store.directory / FOLDER
        self._lock = threading.Lock()
        self._current: Searcher | None = None
        self._rows: DescriptorRows | None = None

    # -- reading ---------------------------------------------------------------------------

    def searcher(self) -> Searcher:
        """The structure over the latest commit. Cheap when nothing changed; a new video costs
        encoding its rows; a new generation, mapping its file."""
        with self._lock:
            rows = self.store.descriptor_rows()
            if self._current is not None and self._rows is rows:
                return self._current
            rows, manifest = self._sound_manifest(rows)
            current = self._current
            if manifest is None:
                self._current = CoarseToFine(self.store.vectors(), "Flat")
            elif isinstance(current, IvfSearcher) and current.manifest == manifest:
                self._current = current.extended(rows)
            else:
                self._current = self._open(rows, manifest)
            self._rows = rows
            return self._current

    def _sound_manifest(self, rows: DescriptorRows) -> tuple[DescriptorRows, Manifest | None]:
        """The rows and the committed manifest over them if it is sound, else a rebuilt one
        (None: exact search). Damage is told on one line and never served."""
        for _ in range(2):  # a commit between reading the rows and the manifest: read both again
            try:
                manifest = self._committed(rows)
            except DamagedFile as exc:
                problem = str(exc)
                rows = self.store.descriptor_rows()
                continue
            if manifest is not None or rows.live < FLAT_LIMIT:
                return rows, manifest
            problem = f"{rows.live} key frames and no search index yet"
            break
        with self._writing():
            rows = self.store.descriptor_rows()
            try:  # another process may have rebuilt it while this one waited
                manifest = self._committed(rows)
            except DamagedFile:
                manifest = None
            if manifest is not None or rows.live < FLAT_LIMIT:
                return rows, manifest
            print(f"frameseek: {problem}: rebuilding the search index from the store",
                  file=sys.stderr)
            return rows, self._train(rows)

    def _committed(self, rows: DescriptorRows) -> Manifest | None:
        """The committed manifest, checked against its files (sizes, CRCs) and the row file."""
        data = self.store.get_meta(MANIFEST_KEY)
        if data is None:
            return None
        manifest = Manifest.from_json(data)
        if manifest.row_file != rows.file or manifest.covered > len(rows):
            raise DamagedFile("the search index is of another vector file")
        check(self.folder / manifest.trained_file, manifest.trained)
        check(self.folder / manifest.index_file, manifest.index)
        return manifest

    def _open(self, rows: DescriptorRows, manifest: Manifest) -> IvfSearcher:
        try:
            base = faiss.read_index(str(self.folder / manifest.index_file),
                                    faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            trained = faiss.read_index(str(self.folder / manifest.trained_file))
        except RuntimeError as exc:  # FAISS's word for a file it cannot parse
            raise DamagedFile(f"{self.folder}: unreadable search index ({exc})") from exc
        for part in (base, trained):
            faiss.extract_index_ivf(part).nprobe = self.nprobe
        _add(trained, rows, manifest.covered, len(rows))  # it becomes the in-memory part
        return IvfSearcher(rows, manifest, base, trained)

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One process writes search files at a time: writers, and readers rebuilding damage."""
        self.folder.mkdir(exist_ok=True)
        with (self.folder / LOCK).open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def maintain(self) -> str | None:
        """After a write: train, fold, retrain or drop the IVF as the rules (module doc) say.
        Returns what it did, None for nothing."""
        with self._writing():
            rows = self.store.descriptor_rows()
            try:
                manifest = self._committed(rows)
            except DamagedFile:
                manifest = None
            live = rows.live
            if manifest is None:
                if live >= FLAT_LIMIT:
                    self._train(rows)
                    return "trained"
                return None
            if live < FLAT_LIMIT // 2:
                self._commit(None)
                return "dropped"
            if not manifest.trained_rows / RETRAIN_GROWTH <= live <= (
                    manifest.trained_rows * RETRAIN_GROWTH):
                self._train(rows)
                return "retrained"
            dead = int(np.count_nonzero(rows.row_ids[:manifest.covered] < 0)) - manifest.removed
            fold_at = max(FOLD_ROWS, FOLD_FRACTION * manifest.covered)
            if len(rows) - manifest.covered >= fold_at or dead >= fold_at:
                self._fold(rows, manifest)
                return "folded"
            return None

    def optimize(self) -> str:
        """Retrain over every live key frame now (or drop the IVF of a small collection)."""
        with self._writing():
            rows = self.store.descriptor_rows()
            if rows.live < FLAT_LIMIT:
                self._commit(None)
                return f"{rows.live} key frames: exact search, no index to train"
            manifest = self._train(rows)
        return (f"trained {manifest.factory} over {manifest.trained_rows} key frames "
                f"({(self.folder / manifest.index_file).stat().st_size / 2**20:.0f} MB)")

    def _train(self, rows: DescriptorRows) -> Manifest:
        live = np.flatnonzero(rows.row_ids >= 0)
        factory = factory_for(len(live))
        trained = faiss.index_factory(rows.descriptors.shape[1], factory, faiss.METRIC_L2)
        cells = faiss.extract_index_ivf(trained).nlist
        sample = np.sort(np.random.default_rng(0).choice(
            live, min(len(live), TRAIN_PER_CELL * cells), replace=False))
        trained.train(np.ascontiguousarray(rows.descriptors[sample], dtype=np.float32))
        trained_file, trained_print = self._write(trained, "trained")
        index = faiss.clone_index(trained)
        _add(index, rows, 0, len(rows))
        index_file, index_print = self._write(index, "ivf")
        manifest = Manifest(rows.file, factory, len(live), len(rows), 0, trained_file,
                            trained_print, index_file, index_print)
        self._commit(manifest)
        return manifest

    def _fold(self, rows: DescriptorRows, manifest: Manifest) -> Manifest:
        """The committed file with the rows appended since added and its dead rows removed."""
        index = faiss.read_index(str(self.folder / manifest.index_file))
        dead = np.flatnonzero(rows.row_ids[:manifest.covered] < 0)
        index.remove_ids(dead.astype(np.int64))
        _add(index, rows, manifest.covered, len(rows))
        index_file, index_print = self._write(index, "ivf")
        folded = Manifest(rows.file, manifest.factory, manifest.trained_rows, len(rows),
                          len(dead), manifest.trained_file, manifest.trained, index_file,
                          index_print)
        self._commit(folded)
        return folded

    def _write(self, index: faiss.Index, kind: str) -> tuple[str, Fingerprint]:
        name = unique_name(kind, ".faiss")
        written = write_atomically(self.folder / name,
                                   lambda path: faiss.write_index(index, str(path)))
        return name, written

    def _commit(self, manifest: Manifest | None) -> None:
        """Make a generation visible (the one commit point), then delete the files neither it
        nor the one before name: a reader that checked the one before may be opening it."""
        previous = self.store.get_meta(MANIFEST_KEY) or {}
        self.store.set_meta(MANIFEST_KEY, manifest.to_json() if manifest else None)
        keep = {LOCK, previous.get("trained_file"), previous.get("index_file")}
        if manifest is not None:
            keep |= {manifest.trained_file, manifest.index_file}
        remove_unlisted(self.folder, keep)


def _add(index: faiss.Index, rows: DescriptorRows, start: int, end: int) -> None:
    """Add the live rows of [start, end) to `index`, their row numbers as ids."""
    for first in range(start, end, CHUNK):
        numbers = np.arange(first, min(end, first + CHUNK), dtype=np.int64)
        numbers = numbers[rows.row_ids[numbers] >= 0]
        if len(numbers):
            index.add_with_ids(np.ascontiguousarray(rows.descriptors[numbers], dtype=np.float32),
                               numbers)

