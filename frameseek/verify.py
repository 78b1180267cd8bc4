"""Verification of candidate key frames against the query, beyond the global descriptor.

- `local_features`, `local_similarity`: agreement of the 7×7 local conv features by mutual
  nearest neighbours.
"""

from __future__ import annotations

import numpy as np

from frameseek.rmac import Whitening, l2_normalise


def local_features(pool5: np.ndarray, whitening: Whitening | None = None) -> np.ndarray:
    """(N, C, h, w) → (N, h·w, d) unit-length local features (whitened if given)."""
    n, c = pool5.shape[:2]
    local = pool5.reshape(n, c, -1).transpose(0, 2, 1).astype(np.float32)
    return whitening.transform(local) if whitening is not None else l2_normalise(local)


def local_similarity(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Query locals (L, d) against each candidate's (K, L', d) → (K,) spatial agreement: the
    summed similarity of mutual nearest-neighbour pairs, divided by the query's L."""
    sims = query @ candidates.transpose(0, 2, 1)  # (K, L, L')
    best_for_query = sims.argmax(axis=2)  # (K, L)
    best_for_candidate = sims.argmax(axis=1)  # (K, L')
    mutual = np.take_along_axis(best_for_candidate, best_for_query, axis=1) == np.arange(
        len(query))
    best = np.take_along_axis(sims, best_for_query[:, :, None], axis=2)[:, :, 0]
    return np.where(mutual, np.maximum(best, 0), 0).sum(axis=1) / len(query)
