"""The persistent search structure of an embedded index: an IVF trained once, saved beside the
database, opened memory-mapped, grown video by video (docs/performance.md, "At scale").

Layout, in the index's `search/` folder, named by the manifest committed in the database
(meta key "search_index"; the commit is what makes a generation visible):

- `trained-*.faiss`: the trained, empty IVF (the cells' centroids and the code's parameters);
  a few MB.
- `base-*.faiss`: the same with the codes of rows [0, covered) of the store's row file, their
  row numbers as ids; opened memory-mapped (IO_FLAG_MMAP_IFC), so opening reads nothing.
- `recent-*.faiss`: the codes of rows [covered, recent) (the videos added since the base was
  written), rewritten after each video; at most a fold's worth, read into memory.

A reader searches the two, and takes in the rows committed after the recent file it read (a
video another process has just written) itself: re-ranked exactly by every query while they are
few, encoded into an in-memory IVF of its own beyond that. A new video is searchable as soon as
its commit is seen, without a rebuild or a re-read (the writer's rewrite of the recent file
holds the same rows, so the reader keeps its own until a fold). Candidates are re-ranked
exactly on the float16 descriptors read from the mapped row file. Rows of removed videos are
skipped by id at query time, and removed from the base at the next fold.

Rules, applied by the writer after each change (`maintain`) and by `optimize`:

- Below `flat_limit` (FLAT_LIMIT, 50,000) live key frames there is no IVF: the in-memory
  exhaustive search (CoarseToFine "Flat": 64-d, re-ranked on the 512-d) builds in tens of
  milliseconds from the mapped file there, and training cells for so few rows buys nothing. The
  IVF is trained when a collection reaches the limit, and dropped when it shrinks below half
  of it (so that a collection at the limit does not train and drop in turn).
- Recent: after each video the recent file is rewritten with its rows added (milliseconds: it
  is small), so that an open never encodes more than what was committed since.
- Fold: once the recent rows reach `fold_rows` (or `fold_fraction` of the base, if more),
  or as many rows in the base are dead, a new base is written with them added (or removed by
  id). Folding keeps the recent part, held in memory by every reader, small, and is what costs
  a rewrite of the base: rarely.
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
from dataclasses import dataclass, replace

import faiss
import numpy as np

from frameseek.files import write_atomically
from frameseek.search import (
    CHUNK,
    DEFAULT_NPROBE,
    FLAT_LIMIT,
    TRAIN_PER_CELL,
    CoarseToFine,
    Hit,
    Searcher,
    hits,
    rerank,
)
from frameseek.store.base import StoreError
from frameseek.store.embedded import DescriptorRows, EmbeddedStore
from frameseek.store.vectorfile import (
    DamagedFile,
    Fingerprint,
    check,
    fingerprint,
    remove_unlisted,
    unique_name,
)

MANIFEST_KEY = "search_index"
FORMAT = 1  # of the manifest and the files it names; another one is rebuilt
FOLDER = "search"
LOCK = "search.lock"
OPTIMIZE_LOCK = "optimize.lock"


# The IVF's code for each key frame, chosen by collection size. Measured at 1M key frames
# (docs/performance.md), each with the exact re-rank of its candidates: SQ4 (266 B a key frame)
# reaches recall@12 1.000 at ~1 ms with 100 candidates. Its 266 B on top of the 1 KB float16
# descriptor pass 1.2 KB a key frame, the budget at ten million, so from COMPACT_FROM on the
# descriptor is first projected on its 256 principal axes (PCA256, 130 B): recall@12 0.984 with
# 100 candidates, 0.9996 with 200, at the same encoding speed. PQ128 (139 B) takes 20× longer to
# encode (587 s a million against 28 s); 4-bit fast-scan PQ falls to recall 0.09-0.25.
COMPACT_FROM = 4_000_000
COMPACT_CODE = "PCA256,IVF{cells},SQ4"
CODE = "IVF{cells},SQ4"
CANDIDATES = 100  # re-ranked exactly on the float16 descriptors, unless the caller asks otherwise
# The compact code's candidates are that many times more (FAISS's IndexRefine k_factor): what
# the projection loses, the wider re-rank wins back.
COMPACT_K_FACTOR = 2
# Rows a reader re-ranks exactly on every query rather than encode (two videos' worth: ~1 ms a
# query more, and a new video is searchable without any preparation).
LOOSE_ROWS = 2_000


@dataclass(frozen=True)
class Rules:
    """When the IVF is trained, folded and retrained (module doc); tests use smaller ones."""

    flat_limit: int = FLAT_LIMIT
    fold_rows: int = 50_000
    fold_fraction: float = 0.05
    retrain_growth: float = 2.0
    compact_from: int = COMPACT_FROM

    def factory(self, count: int) -> str:
        """The FAISS factory string of the IVF for a collection of `count` live key frames: √N
        cells (the query's two costs, routing and scanning, balance there)."""
        code = COMPACT_CODE if count >= self.compact_from else CODE
        return code.format(cells=max(1, round(math.sqrt(count))))

    def fold_at(self, covered: int) -> float:
        return max(self.fold_rows, self.fold_fraction * covered)


def k_factor(factory: str) -> int:
    """How many times the asked-for candidates an IVF built by `factory` re-ranks exactly."""
    return COMPACT_K_FACTOR if factory.startswith("PCA") else 1


@dataclass(frozen=True)
class Manifest:
    """One committed generation of the search structure."""

    row_file: str  # the store's row file it indexes, by name
    factory: str
    trained_rows: int  # live key frames it was trained for
    covered: int  # rows [0, covered) of the row file are in the base file
    recent: int  # rows [covered, recent) are in the recent file
    removed: int  # dead rows already removed from the base file
    files: dict[str, str]  # "trained", "base", "recent" → file name in the folder
    prints: dict[str, Fingerprint]  # the same → its fingerprint

    def to_json(self) -> dict:
        return {"format": FORMAT, "row_file": self.row_file, "factory": self.factory,
                "trained_rows": self.trained_rows, "covered": self.covered,
                "recent": self.recent, "removed": self.removed, "files": self.files,
                "prints": {role: f.to_json() for role, f in self.prints.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        if data.get("format") != FORMAT:
            raise DamagedFile(f"search index format {data.get('format')}, expected {FORMAT}")
        return cls(data["row_file"], data["factory"], data["trained_rows"], data["covered"],
                   data["recent"], data["removed"], data["files"],
                   {role: Fingerprint.from_json(f) for role, f in data["prints"].items()})

    def with_files(self, written: dict[str, tuple[str, Fingerprint]], **fields: int
                   ) -> Manifest:
        """This generation with some files replaced (`written`: role → name, fingerprint) and
        some counts changed."""
        files = {**self.files, **{role: name for role, (name, _) in written.items()}}
        prints = {**self.prints, **{role: found for role, (_, found) in written.items()}}
        return replace(self, files=files, prints=prints, **fields)


class IvfSearcher:
    """One snapshot: the mapped base, the recent part read from its file, and the rows committed
    after it, over the mapped row file. Never changed once built, so any number of threads may
    search it.

    The rows committed after the recent file this reader read (a video another process has just
    written) are `loose`: every query re-ranks them all exactly, which costs nothing to prepare,
    so no query stalls while the reader takes them in. Past LOOSE_ROWS (a writer that died
    before rewriting the recent file, or that is slow to) they are encoded into `encoded`, an
    in-memory IVF of this reader's own."""

    def __init__(self, rows: DescriptorRows, manifest: Manifest, base: faiss.Index,
                 recent: faiss.Index, encoded: faiss.Index, loose: np.ndarray) -> None:
        self.rows = rows
        self.manifest = manifest  # the generation whose files it opened
        self.base = base
        self.recent = recent
        self.encoded = encoded
        self.loose = loose  # row numbers

    def search(self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
               candidates: int | None = None) -> list[Hit]:
        return self.search_batch(index[None], descriptor[None], top, candidates)[0]

    def search_batch(self, indexes: np.ndarray, descriptors: np.ndarray, top: int = 12,
                     candidates: int | None = None) -> list[list[Hit]]:
        """Only the 512-d descriptors are used: the cells are over them (`indexes` is taken for
        the same signature as CoarseToFine)."""
        queries = np.ascontiguousarray(descriptors, dtype=np.float32)
        wanted = max(top, candidates or CANDIDATES) * k_factor(self.manifest.factory)
        found = [part.search(queries, wanted)
                 for part in (self.base, self.recent, self.encoded) if part.ntotal]
        rows = np.full((len(queries), 0), -1, dtype=np.int64)
        if found:
            approximate = np.concatenate([d for d, _ in found], axis=1)
            coded = np.concatenate([i for _, i in found], axis=1)
            approximate[coded < 0] = np.inf
            # The best `wanted` of all parts by their codes' distances, to be re-ranked exactly.
            order = np.argsort(approximate, axis=1)[:, :wanted]
            rows = np.where(np.isfinite(np.take_along_axis(approximate, order, axis=1)),
                            np.take_along_axis(coded, order, axis=1), -1)
        rows = np.concatenate([rows, np.broadcast_to(self.loose, (len(queries), len(self.loose)))],
                              axis=1)
        if not rows.shape[1]:
            return [[] for _ in range(len(queries))]
        # Dead rows (removed videos not yet folded out) are no candidates.
        rows = np.where(self.rows.ids(rows) >= 0, rows, -1)
        squared, rows = rerank(self.rows.descriptors, rows, queries, top)
        return hits(self.rows.ids(rows), squared)

    def shares_files(self, manifest: Manifest) -> bool:
        """Whether `manifest` differs from the opened one only by rows this reader already
        encodes itself (a recent file rewritten after a video): then nothing needs reading."""
        return all(manifest.files[role] == self.manifest.files[role]
                   for role in ("trained", "base")) and manifest.row_file == self.rows.file

    def extended(self, rows: DescriptorRows) -> IvfSearcher:
        """This snapshot with the rows committed since taken in (loose, or encoded into a copy
        of `encoded`: the one other threads are searching is left alone)."""
        loose = np.concatenate([self.loose, np.arange(len(self.rows), len(rows))])
        return _taken_in(rows, self.manifest, self.base, self.recent, self.encoded, loose)


class SearchIndex:
    """The search structure of one embedded store, kept current for readers and writers."""

    def __init__(self, store: EmbeddedStore, nprobe: int = DEFAULT_NPROBE,
                 rules: Rules = Rules()) -> None:
        self.store = store
        self.nprobe = nprobe
        self.rules = rules
        self.folder = store.directory / FOLDER
        self._lock = threading.Lock()
        self._current: Searcher | None = None
        self._rows: DescriptorRows | None = None

    # -- reading ---------------------------------------------------------------------------

    def searcher(self) -> Searcher:
        """The structure over the latest commit. Cheap when nothing changed or a video was
        added (its rows are taken in as they are); a new generation costs mapping its files."""
        with self._lock:
            rows = self.store.descriptor_rows()
            if self._current is not None and self._rows is rows:
                return self._current
            rows, manifest = self._sound_manifest(rows)
            current = self._current
            if manifest is None:
                self._current = CoarseToFine(self.store.vectors(), "Flat")
            elif isinstance(current, IvfSearcher) and current.shares_files(manifest):
                self._current = current.extended(rows)
            else:
                try:
                    self._current = self._open(rows, manifest)
                except DamagedFile as exc:  # sound by its fingerprints, yet FAISS cannot read it
                    rows, manifest = self._rebuilt(str(exc), unreadable=manifest)
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
            if manifest is not None or rows.live < self.rules.flat_limit:
                return rows, manifest
            problem = f"{rows.live} key frames and no search index yet"
            break
        return self._rebuilt(problem)

    def _rebuilt(self, problem: str, unreadable: Manifest | None = None
                 ) -> tuple[DescriptorRows, Manifest | None]:
        """Train a new generation, telling why on one line, unless another process committed a
        sound one (other than `unreadable`) while this one waited for the lock."""
        with self._writing():
            rows = self.store.descriptor_rows()
            try:
                manifest = self._committed(rows)
            except DamagedFile:
                manifest = None
            if manifest != unreadable and (manifest is not None
                                           or rows.live < self.rules.flat_limit):
                return rows, manifest
            _tell(f"{problem}: rebuilding the search index from the store")
            return rows, self._train(rows)

    def _committed(self, rows: DescriptorRows) -> Manifest | None:
        """The committed manifest, checked against its files (sizes, CRCs) and the row file."""
        data = self.store.get_meta(MANIFEST_KEY)
        if data is None:
            return None
        manifest = Manifest.from_json(data)
        if manifest.row_file != rows.file or manifest.recent > len(rows):
            raise DamagedFile("the search index is of another vector file")
        for role, name in manifest.files.items():
            check(self.folder / name, manifest.prints[role])
        return manifest

    def _open(self, rows: DescriptorRows, manifest: Manifest) -> IvfSearcher:
        # IO_FLAG_MMAP_IFC maps the codes into plain array lists (nothing is read); the older
        # IO_FLAG_MMAP goes through OnDiskInvertedLists, whose scan takes 1.7x as long.
        base = self._read(manifest, "base", faiss.IO_FLAG_MMAP_IFC)
        recent = self._read(manifest, "recent")
        empty = self._read(manifest, "trained")
        for part in (base, recent, empty):
            faiss.extract_index_ivf(part).nprobe = self.nprobe
        return _taken_in(rows, manifest, base, recent, empty,
                         np.arange(manifest.recent, len(rows)))

    def _read(self, manifest: Manifest, role: str, flags: int = 0) -> faiss.Index:
        try:
            return faiss.read_index(str(self.folder / manifest.files[role]), flags)
        except RuntimeError as exc:  # FAISS's word for a file it cannot parse
            raise DamagedFile(f"{self.folder}: unreadable {role} file ({exc})") from exc

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
            except DamagedFile as exc:
                if rows.live >= self.rules.flat_limit:
                    _tell(f"{exc}: rebuilding the search index from the store")
                else:  # exact search from now on: the damaged generation is forgotten
                    self._commit(None)
                manifest = None
            live = rows.live
            if manifest is None:
                if live >= self.rules.flat_limit:
                    self._train(rows)
                    return "trained"
                return None
            if live < self.rules.flat_limit // 2:
                self._commit(None)
                return "dropped"
            growth = self.rules.retrain_growth
            if not manifest.trained_rows / growth <= live <= manifest.trained_rows * growth:
                self._train(rows)
                return "retrained"
            dead = manifest.covered - rows.live_before(manifest.covered) - manifest.removed
            fold_at = self.rules.fold_at(manifest.covered)
            if len(rows) - manifest.covered >= fold_at or dead >= fold_at:
                self._fold(rows, manifest)
                return "folded"
            if len(rows) > manifest.recent:
                self._grow_recent(rows, manifest)
            return None

    def optimize(self) -> str:
        """Retrain over every live key frame now (or drop the IVF of a small collection).

        The long part, training the cells and encoding the rows, runs outside the writers' lock
        on the rows as they were when it began: videos added meanwhile are committed and
        searchable as usual, and only the last step (adding what they committed, removing what
        was removed meanwhile, writing and committing the files) holds the lock. A second
        optimize of the same index is refused while one runs."""
        self.folder.mkdir(exist_ok=True)
        with (self.folder / OPTIMIZE_LOCK).open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.store.directory}: another optimize is running") from None
            rows = self.store.descriptor_rows()
            if rows.live < self.rules.flat_limit:
                with self._writing():
                    self._commit(None)
                return f"{rows.live} key frames: exact search, no index to train"
            encoded = self._encoded(rows)
            with self._writing():
                manifest = self._installed(*encoded, rows, self.store.descriptor_rows())
        return (f"trained {manifest.factory} over {manifest.trained_rows} key frames "
                f"({manifest.prints['base'].size / 2**20:.0f} MB)")

    def _train(self, rows: DescriptorRows) -> Manifest:
        return self._installed(*self._encoded(rows), rows, rows)

    def _encoded(self, rows: DescriptorRows) -> tuple[str, faiss.Index, faiss.Index]:
        """A new IVF trained on `rows`' live key frames: its factory string, the trained empty
        index, and a copy with those rows added."""
        live = np.flatnonzero(rows.row_ids >= 0)
        factory = self.rules.factory(len(live))
        trained = faiss.index_factory(rows.descriptors.shape[1], factory, faiss.METRIC_L2)
        cells = faiss.extract_index_ivf(trained).nlist
        sample = np.sort(np.random.default_rng(0).choice(
            live, min(len(live), TRAIN_PER_CELL * cells), replace=False))
        trained.train(np.ascontiguousarray(rows.descriptors[sample], dtype=np.float32))
        base = faiss.clone_index(trained)
        _add(base, rows, 0, len(rows))
        return factory, trained, base

    def _installed(self, factory: str, trained: faiss.Index, base: faiss.Index,
                   encoded: DescriptorRows, latest: DescriptorRows) -> Manifest:
        """Write and commit a generation whose base holds `encoded`'s live rows, brought up to
        `latest` (the rows committed since added, those removed since taken out by id)."""
        if latest.file != encoded.file:  # the row file was replaced: nothing encoded applies
            return self._train(latest)
        gone = np.flatnonzero((encoded.row_ids >= 0) & (latest.ids(np.arange(len(encoded))) < 0))
        base.remove_ids(gone.astype(np.int64))
        _add(base, latest, len(encoded), len(latest))
        written = {"trained": self._write(trained, "trained"),
                   "recent": self._write(trained, "recent"),
                   "base": self._write(base, "base")}
        # Every dead row of the row file is outside the base: none is left for a fold to remove.
        empty = Manifest(latest.file, factory, latest.live, 0, 0,
                         len(latest) - latest.live, {}, {})
        manifest = empty.with_files(written, covered=len(latest), recent=len(latest))
        self._commit(manifest)
        return manifest

    def _fold(self, rows: DescriptorRows, manifest: Manifest) -> None:
        """A new base: the committed one with the rows since added and its dead rows removed;
        the recent part empty again."""
        base = self._read(manifest, "base")
        dead = np.flatnonzero(rows.row_ids[:manifest.covered] < 0)
        base.remove_ids(dead.astype(np.int64))
        _add(base, rows, manifest.covered, len(rows))
        written = {"base": self._write(base, "base"),
                   "recent": self._write(self._read(manifest, "trained"), "recent")}
        self._commit(manifest.with_files(written, covered=len(rows), recent=len(rows),
                                         removed=len(dead)))

    def _grow_recent(self, rows: DescriptorRows, manifest: Manifest) -> None:
        recent = self._read(manifest, "recent")
        _add(recent, rows, manifest.recent, len(rows))
        self._commit(manifest.with_files({"recent": self._write(recent, "recent")},
                                         recent=len(rows)))

    def _write(self, index: faiss.Index, role: str) -> tuple[str, Fingerprint]:
        name = unique_name(role, ".faiss")
        write_atomically(self.folder / name, lambda path: faiss.write_index(index, str(path)))
        return name, fingerprint(self.folder / name)

    def _commit(self, manifest: Manifest | None) -> None:
        """Make a generation visible (the one commit point), then delete the files neither it
        nor the one before name: a reader that checked the one before may be opening it."""
        previous = self.store.get_meta(MANIFEST_KEY) or {}
        self.store.set_meta(MANIFEST_KEY, manifest.to_json() if manifest else None)
        keep = {LOCK, OPTIMIZE_LOCK, *previous.get("files", {}).values()}
        if manifest is not None:
            keep |= set(manifest.files.values())
        remove_unlisted(self.folder, keep)


def _tell(message: str) -> None:
    """Damage and its repair, on one line."""
    print(f"frameseek: {message}", file=sys.stderr)


def _taken_in(rows: DescriptorRows, manifest: Manifest, base: faiss.Index,
              recent: faiss.Index, encoded: faiss.Index, loose: np.ndarray) -> IvfSearcher:
    """A snapshot whose loose rows (live ones) are encoded once there are too many of them."""
    loose = loose[rows.ids(loose) >= 0]
    if len(loose) > LOOSE_ROWS:
        encoded = faiss.clone_index(encoded)
        for first in range(0, len(loose), CHUNK):
            part = loose[first:first + CHUNK]
            encoded.add_with_ids(np.ascontiguousarray(rows.descriptors[part], np.float32), part)
        loose = loose[:0]
    return IvfSearcher(rows, manifest, base, recent, encoded, loose)


def _add(index: faiss.Index, rows: DescriptorRows, start: int, end: int) -> None:
    """Add the live rows of [start, end) to `index`, their row numbers as ids."""
    for first in range(start, end, CHUNK):
        numbers = np.arange(first, min(end, first + CHUNK), dtype=np.int64)
        numbers = numbers[rows.ids(numbers) >= 0]
        if len(numbers):
            index.add_with_ids(np.ascontiguousarray(rows.descriptors[numbers], dtype=np.float32),
                               numbers)

