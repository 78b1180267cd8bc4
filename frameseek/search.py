"""Coarse-to-fine search (paper §3.3): the 64-d index narrows, the 512-d descriptor decides.

The coarse stage is named by a FAISS factory string. Over the 64-d index ("Flat" is the paper's
exhaustive search; "IVF1024,Flat", "HNSW32", ...) it returns the top `candidates` key frames,
which are re-ranked by exact Euclidean distance on their 512-d descriptors. With the suffix
"@512" the index is built over the 512-d descriptors themselves ("IVF1000,SQfp16@512": an
inverted file holding the float16 descriptors the store keeps), which ranks exactly within the
`nprobe` cells it visits, so no re-rank is needed.

An embedded index does not build this in memory above `FLAT_LIMIT`: it opens the persistent IVF
of frameseek/searchindex.py, which shares `rerank` and `hits` with it. "auto", for collections
held in memory (the benchmarks, the evaluation sweeps), picks "Flat" below `FLAT_LIMIT` key
frames and "IVF<√N>,SQfp16@512" above. Why not an approximate index over the 64-d alone: at
scale the 64-d mean pooling is too coarse to *rank* a dense neighbourhood (measured in
docs/performance.md: its top 1000 miss a fifth of the true 512-d top 12 at 200k key frames),
while cells over the 512-d keep recall@12 at 1.0 with few probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np

from frameseek.store.base import Vectors

FLAT_LIMIT = 50_000
ON_DESCRIPTORS = "@512"
# Cells probed per query. Recall@12 against exact 512-d search, measured (docs/performance.md):
# at 1M key frames (1000 cells) 0.9992 with 10 as with 12 and 16 on the demo-index seeds, 0.9983
# as with 16 on seeds from the eval corpus, while 8 drops to 0.9933; at 100k (316 cells) 0.9992
# and 1.0000. 10 cells cost 1.4-1.5 ms a query at 1M on one core, 16 cost 2.1 ms.
DEFAULT_NPROBE = 10
TRAIN_PER_CELL = 40  # k-means sample per cell: FAISS wants >= 39; more only slows the build
CHUNK = 65_536  # rows converted to float32 at a time, so memory stays flat


@dataclass(frozen=True)
class Hit:
    keyframe_id: int
    distance: float  # Euclidean, on the 512-d descriptors


class Searcher(Protocol):
    """What a search structure answers, whether built in memory or opened from files."""

    def search(self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
               candidates: int | None = None) -> list[Hit]: ...

    def search_batch(self, indexes: np.ndarray, descriptors: np.ndarray, top: int = 12,
                     candidates: int | None = None) -> list[list[Hit]]: ...


def auto_coarse(count: int) -> str:
    """The coarse stage for a collection of `count` key frames.

    √N cells balance the two costs of a query (N/cells vectors scanned per probe, one distance
    per cell to route) and keep the k-means build affordable on a small machine.
    """
    if count < FLAT_LIMIT:
        return "Flat"
    return f"IVF{round(math.sqrt(count))},SQfp16{ON_DESCRIPTORS}"


class CoarseToFine:
    """Built once over a `Vectors` snapshot; `search` is then safe to call from many threads.

    Descriptors may be float32 or float16 (as the store keeps them); distances are computed in
    float32 either way.
    """

    def __init__(self, vectors: Vectors, coarse: str = "auto", candidates: int = 100,
                 nprobe: int = DEFAULT_NPROBE, seed: int = 0) -> None:
        self.vectors = vectors
        self.candidates = candidates
        self.coarse_name = auto_coarse(len(vectors)) if coarse == "auto" else coarse
        self.exact = self.coarse_name.endswith(ON_DESCRIPTORS)
        source = vectors.descriptors if self.exact else vectors.index
        factory = self.coarse_name.removesuffix(ON_DESCRIPTORS)
        self.coarse = faiss.index_factory(source.shape[1], factory, faiss.METRIC_L2)
        if len(vectors):
            _build(self.coarse, source, seed)
        if hasattr(self.coarse, "nprobe"):
            self.coarse.nprobe = nprobe

    def search(
        self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
        candidates: int | None = None,
    ) -> list[Hit]:
        """One query's 64-d index and 512-d descriptor → up to `top` hits, nearest first."""
        return self.search_batch(index[None], descriptor[None], top, candidates)[0]

    def search_batch(
        self, indexes: np.ndarray, descriptors: np.ndarray, top: int = 12,
        candidates: int | None = None,
    ) -> list[list[Hit]]:
        """Many queries at once (rows of `indexes` (Q, 64) and `descriptors` (Q, 512))."""
        if not len(self.vectors):
            return [[] for _ in range(len(indexes))]
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        if self.exact:
            _, rows = self.coarse.search(descriptors, min(top, len(self.vectors)))
        else:
            m = min(max(top, candidates or self.candidates), len(self.vectors))
            _, rows = self.coarse.search(np.ascontiguousarray(indexes, dtype=np.float32), m)
        squared, rows = rerank(self.vectors.descriptors, rows, descriptors, top)
        return hits(np.where(rows >= 0, self.vectors.ids[rows], -1), squared)


# float16 → float32 by table: numpy's own conversion is 4× slower on descriptors, half of whose
# values are exact zeros (a 0.4 ms share of a 2 ms query at 100 candidates).
SINGLE_OF_HALF = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def rerank(stored: np.ndarray, rows: np.ndarray, queries: np.ndarray, top: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows (Q, m) of `stored` (float16 or float32, in memory or mapped) ranked by
    exact squared distance to `queries` (Q, 512) float32: the best `top`, with their squared
    distances, -1 rows (no candidate) last at infinity.

    Distances are recomputed directly: FAISS's expanded form (|x|² + |q|² - 2x·q) is off in the
    fourth digit, and the codes of a compact index are approximate anyway."""
    valid = rows >= 0  # FAISS pads with -1 where it found fewer than asked
    picked_rows = stored[rows]  # -1 reads a row masked below
    gaps = (np.take(SINGLE_OF_HALF, picked_rows.view(np.uint16)) if stored.dtype == np.float16
            else picked_rows.astype(np.float32))
    gaps -= queries[:, None, :]
    squared = np.einsum("qij,qij->qi", gaps, gaps)
    squared[~valid] = np.inf
    best = np.argsort(squared, axis=1, kind="stable")[:, :top]
    picked = np.arange(len(rows))[:, None], best
    return squared[picked], rows[picked]


def hits(ids: np.ndarray, squared: np.ndarray) -> list[list[Hit]]:
    """Key-frame ids (Q, top), -1 for none, and squared distances → each query's hits."""
    # Converted to Python numbers in bulk: per-element int()/float() on numpy scalars cost
    # about as much as the re-rank itself at 12 hits.
    distances = np.sqrt(np.maximum(squared.astype(np.float64), 0.0)).tolist()
    return [
        [Hit(i, d) for i, d in zip(query_ids, query_distances, strict=True) if i >= 0]
        for query_ids, query_distances in zip(ids.tolist(), distances, strict=True)
    ]


def _build(index: faiss.Index, source: np.ndarray, seed: int) -> None:
    """Train on a sample (k-means needs few points per cell), then add in float32 chunks."""
    count = len(source)
    if not index.is_trained:
        cells = getattr(index, "nlist", 0) or count
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(count, min(count, TRAIN_PER_CELL * cells), replace=False))
        index.train(np.ascontiguousarray(source[sample], dtype=np.float32))
    for start in range(0, count, CHUNK):
        index.add(np.ascontiguousarray(source[start:start + CHUNK], dtype=np.float32))
