"""Search at scale on a synthetic collection that follows the real descriptor distribution.

Real 512-d descriptors (from an index, from .npz files such as the eval harness's cached analyses,
or from indexing the sample videos) are split: a held-out part becomes the queries, the rest the
bases. Each synthetic key frame is a point on the segment
between a base and one of its 5 nearest bases (as the frames between two key frames of a shot
are), plus Gaussian noise of `noise` × the per-dimension spread of the real descriptors, clipped
at 0 as pool5 activations are. Queries are held-out real descriptors with the same noise. The
64-d index is derived from the float16 descriptor by the same channel pooling as the product.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from frameseek.backends import cpu_model
from frameseek.features import DESCRIPTOR_DIM, mean_pool_channels
from frameseek.search import DEFAULT_NPROBE, CoarseToFine, auto_coarse
from frameseek.store.base import Vectors

TOP = 12
NEIGHBOURS = 5
CHUNK = 65_536
SAMPLE_VIDEOS = Path(__file__).resolve().parents[2] / "samples" / "videos"


@dataclass(frozen=True)
class Collection:
    vectors: Vectors  # descriptors float16, as the store keeps them
    queries: np.ndarray  # (Q, 512) float32
    query_index: np.ndarray  # (Q, 64) float32
    real: int  # real descriptors it was drawn from


@dataclass
class MethodResult:
    ms_per_query: float  # median, one query at a time
    p95_ms: float
    batch_ms_per_query: float  # all queries in one call
    recall_at_12: float
    bytes_per_keyframe: float  # what the method holds in memory per key frame
    build_s: float
    rss_growth_mb: float  # resident memory the process grew by while building it


def real_descriptors(index_dir: Path | None = None, videos: list[Path] | None = None
                     ) -> tuple[np.ndarray, list[str]]:
    """Descriptors of an existing index, or of a fresh index of `videos` (the samples), and the
    inference back ends that computed them."""
    from frameseek.index import INFERENCE_KEY, Index

    if index_dir is not None:
        with Index.open(index_dir) as index:
            return (np.asarray(index.store.vectors().descriptors, dtype=np.float32),
                    index.info()[INFERENCE_KEY])
    with tempfile.TemporaryDirectory() as scratch, Index.create(Path(scratch) / "i") as index:
        index.add(videos or [SAMPLE_VIDEOS])
        return (np.asarray(index.store.vectors().descriptors, dtype=np.float32),
                index.info()[INFERENCE_KEY])


def descriptors_from_files(files: list[Path]) -> np.ndarray:
    """The "descriptors" arrays of .npz files, stacked (e.g. the eval cache's analyses: every
    sampled frame of a real corpus, far more varied than one index's key frames)."""
    arrays = []
    for file in files:
        with np.load(file) as data:
            if "descriptors" not in data:
                raise ValueError(f"{file} has no 'descriptors' array")
            arrays.append(np.asarray(data["descriptors"], dtype=np.float32))
    return np.concatenate(arrays) if arrays else np.zeros((0, DESCRIPTOR_DIM), np.float32)


class Synthesizer:
    """Draws synthetic key frames and queries from real descriptors (the module doc says how),
    any number at a time, so that a collection of any size can be written in parts."""

    def __init__(self, real: np.ndarray, noise: float = 0.1, seed: int = 0) -> None:
        if len(real) < 4:
            raise ValueError(f"{len(real)} real descriptors are too few to synthesise from")
        self.real = len(real)
        self.rng = np.random.default_rng(seed)
        order = self.rng.permutation(len(real))
        held = max(1, len(real) // 5)
        self.held_out, self.bases = real[order[:held]], real[order[held:]]
        self.spread = (noise * real.std(axis=0)).astype(np.float32)
        # Expanded form in float64: the direct (B, B, 512) difference takes gigabytes for a
        # thousand bases. A base is never its own neighbour, even among duplicates (identical
        # black frames).
        wide = self.bases.astype(np.float64)
        norms = (wide * wide).sum(axis=1)
        squared = norms[:, None] + norms[None, :] - 2 * wide @ wide.T
        np.fill_diagonal(squared, np.inf)
        self.neighbours = np.argsort(squared, axis=1)[:, :NEIGHBOURS]

    def keyframes(self, count: int) -> np.ndarray:
        """(count, 512) float16 descriptors, as the store keeps them."""
        descriptors = np.empty((count, DESCRIPTOR_DIM), dtype=np.float16)
        for start in range(0, count, CHUNK):
            n = min(CHUNK, count - start)
            first = self.rng.integers(0, len(self.bases), n)
            second = self.neighbours[first, self.rng.integers(0, self.neighbours.shape[1], n)]
            t = self.rng.random((n, 1), dtype=np.float32)
            points = self.bases[first] + t * (self.bases[second] - self.bases[first])
            points += self.spread * self.rng.standard_normal((n, DESCRIPTOR_DIM),
                                                             dtype=np.float32)
            descriptors[start : start + n] = np.maximum(points, 0)
        return descriptors

    def queries(self, count: int) -> np.ndarray:
        """(count, 512) float32: held-out real descriptors with the same noise."""
        picks = self.held_out[self.rng.integers(0, len(self.held_out), count)]
        query = picks + self.spread * self.rng.standard_normal(picks.shape, dtype=np.float32)
        return np.maximum(query, 0).astype(np.float32)


def synthesize(real: np.ndarray, count: int, queries: int, noise: float = 0.1,
               seed: int = 0) -> Collection:
    synthesizer = Synthesizer(real, noise, seed)
    descriptors = synthesizer.keyframes(count)
    index = np.empty((count, DESCRIPTOR_DIM // 8), dtype=np.float32)
    for start in range(0, count, CHUNK):
        index[start : start + CHUNK] = mean_pool_channels(
            descriptors[start : start + CHUNK].astype(np.float32))
    query = synthesizer.queries(queries)
    vectors = Vectors(np.arange(count, dtype=np.int64), index, descriptors)
    return Collection(vectors, query, mean_pool_channels(query), len(real))


# A method: built from the collection, it answers (queries (Q,64), queries (Q,512)) → rows
# (Q, 12), and says how many bytes it holds.
Searcher = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _faiss_flat(source: np.ndarray) -> tuple[faiss.Index, int]:
    flat = faiss.IndexFlatL2(source.shape[1])
    for start in range(0, len(source), CHUNK):
        flat.add(np.ascontiguousarray(source[start : start + CHUNK], dtype=np.float32))
    return flat, 4 * source.shape[1]


def _flat512(c: Collection) -> tuple[Searcher, float]:
    flat, size = _faiss_flat(c.vectors.descriptors)
    return (lambda _index, descriptors: flat.search(descriptors, TOP)[1]), size


def _flat64(c: Collection) -> tuple[Searcher, float]:
    flat, size = _faiss_flat(c.vectors.index)
    return (lambda index, _descriptors: flat.search(index, TOP)[1]), size


def _ours(coarse: str, **options) -> Callable[[Collection], tuple[Searcher, float]]:
    def build(c: Collection) -> tuple[Searcher, float]:
        searcher = CoarseToFine(c.vectors, coarse, **options)
        size = faiss.serialize_index(searcher.coarse).nbytes / len(c.vectors)
        if not searcher.exact:  # the re-rank reads the stored float16 descriptors
            size += c.vectors.descriptors.itemsize * DESCRIPTOR_DIM

        def search(index: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
            hits = searcher.search_batch(index, descriptors, TOP)
            return np.array([[h.keyframe_id for h in q] + [-1] * (TOP - len(q)) for q in hits])

        return search, size

    return build


def methods(count: int, nprobe: int = DEFAULT_NPROBE
            ) -> dict[str, Callable[[Collection], tuple[Searcher, float]]]:
    """Every method by name; `nprobe` is the cells the IVF ones visit per query."""
    cells = round(math.sqrt(count))
    return {
        "faiss-flat512": _flat512,
        "faiss-flat64": _flat64,
        "ours-flat64": _ours("Flat"),
        "ours-ivf64": _ours(f"IVF{cells},Flat", nprobe=nprobe),
        "ours-hnsw64": _ours("HNSW32"),
        "ours-ivf512-fp16": _ours(f"IVF{cells},SQfp16@512", nprobe=nprobe),
        "ours-ivf512-sq8": _ours(f"IVF{cells},SQ8@512", nprobe=nprobe),
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(build: Callable[[Collection], tuple[Searcher, float]], c: Collection,
            truth: np.ndarray | None) -> tuple[MethodResult, np.ndarray]:
    rss = _rss_mb()
    start = time.perf_counter()
    search, size = build(c)
    build_s = time.perf_counter() - start
    grown = _rss_mb() - rss
    single = []
    # One query on one thread, for every method alike: a server answers concurrent queries one
    # per core, and FAISS's OpenMP threads only wait on each other when the cores are shared.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for q in range(len(c.queries)):
            start = time.perf_counter()
            search(c.query_index[q : q + 1], c.queries[q : q + 1])
            single.append((time.perf_counter() - start) * 1000)
    finally:
        faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    rows = search(c.query_index, c.queries)
    batch = (time.perf_counter() - start) * 1000 / len(c.queries)
    truth = rows if truth is None else truth
    recall = float(np.mean([len(set(r) & set(t)) / TOP for r, t in zip(rows, truth, strict=True)]))
    result = MethodResult(
        ms_per_query=statistics.median(single),
        p95_ms=float(np.percentile(single, 95)),
        batch_ms_per_query=batch,
        recall_at_12=recall,
        bytes_per_keyframe=size,
        build_s=build_s,
        rss_growth_mb=grown,
    )
    return result, rows


def run(count: int, queries: int = 200, names: list[str] | None = None,
        index_dir: Path | None = None, noise: float = 0.1, seed: int = 0,
        progress: Callable[[str], None] | None = None, nprobes: list[int] | None = None,
        descriptor_files: list[Path] | None = None) -> dict:
    """The whole benchmark: one collection, every method on it in turn, the exact one first.

    With `nprobes`, each IVF method is measured once per value, reported as "NAME nprobe=N".
    `descriptor_files` (.npz with a "descriptors" array) replace `index_dir` as the source of
    the real descriptors.
    """
    say = progress or (lambda _line: None)
    real, computed_by = ((descriptors_from_files(descriptor_files), []) if descriptor_files
                         else real_descriptors(index_dir))
    start = time.perf_counter()
    collection = synthesize(real, count, queries, noise, seed)
    say(f"collection of {count} from {len(real)} real descriptors: "
        f"{time.perf_counter() - start:.1f} s")
    available = methods(count)
    chosen = names or list(available)
    unknown = set(chosen) - set(available)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; known: {sorted(available)}")
    if nprobes is not None and min(nprobes, default=0) < 1:
        raise ValueError("nprobe must be at least 1")
    # The exact search runs first: its answers are the truth every other method is scored on.
    order = ["faiss-flat512", *[n for n in chosen if n != "faiss-flat512"]]
    results: dict[str, dict] = {}
    truth = None
    for name in order:
        # Rebuilt for each nprobe (same seed, so the same cells): build time and memory are
        # then reported per row like any other method's.
        builds = ([(f"{name} nprobe={n}", methods(count, n)[name]) for n in nprobes]
                  if nprobes and "ivf" in name else [(name, available[name])])
        for label, build in builds:
            result, rows = measure(build, collection, truth)
            truth = rows if truth is None else truth
            if name in chosen:
                results[label] = {k: round(v, 4) for k, v in asdict(result).items()}
                say(f"{label}: {results[label]}")
    return {
        "keyframes": count,
        "queries": queries,
        "real_descriptors": collection.real,
        "descriptors_from": ([str(f) for f in descriptor_files] if descriptor_files
                             else str(index_dir) if index_dir else "samples/videos"),
        "noise": noise,
        "auto": auto_coarse(count),
        "nprobe": nprobes or DEFAULT_NPROBE,
        "descriptors_by": computed_by,  # inference back ends; none recorded in .npz files
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(),
                    "load_average": os.getloadavg()},
        "methods": results,
    }
