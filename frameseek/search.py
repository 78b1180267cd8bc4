"""Coarse-to-fine search (paper §3.3): 64-d index → top m candidates → 512-d re-rank → top n.

The coarse stage is any FAISS index over the 64-d vectors, named by a FAISS factory string
("Flat" is the paper's exhaustive search); the refine stage is exact Euclidean distance on the
512-d descriptors of the candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from frameseek.store.base import Vectors


@dataclass(frozen=True)
class Hit:
    keyframe_id: int
    distance: float  # Euclidean, on the 512-d descriptors


class CoarseToFine:
    """Built once over a `Vectors` snapshot; `search` is then safe to call from many threads."""

    def __init__(self, vectors: Vectors, coarse: str = "Flat", candidates: int = 100) -> None:
        self.vectors = vectors
        self.candidates = candidates
        self.coarse = faiss.index_factory(vectors.index.shape[1], coarse, faiss.METRIC_L2)
        if len(vectors):
            if not self.coarse.is_trained:
                self.coarse.train(vectors.index)
            self.coarse.add(vectors.index)

    def search(
        self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
        candidates: int | None = None,
    ) -> list[Hit]:
        """One query's 64-d index and 512-d descriptor → up to `top` hits, nearest first."""
        if not len(self.vectors):
            return []
        m = max(top, candidates or self.candidates)
        _, rows = self.coarse.search(np.ascontiguousarray(index, dtype=np.float32)[None], m)
        rows = rows[0][rows[0] >= 0]
        gaps = self.vectors.descriptors[rows] - descriptor
        distances = np.sqrt(np.einsum("ij,ij->i", gaps, gaps))
        best = np.argsort(distances, kind="stable")[:top]
        return [Hit(int(self.vectors.ids[rows[i]]), float(distances[i])) for i in best]
