"""R-MAC (Tolias et al. 2016): regional max-pooling of the same pool5 maps, PCA-whitened.

The paper's mean-pooled descriptor mixes the whole frame, so a crop, a frame inside a web page or
a photo of a screen moves it far. R-MAC max-pools square regions at three scales, whitens and
L2-normalises each region, and sums them: a damaged query still shares whole regions with the
original. Measured on the eval corpus in docs/robust.md.

The whitening is learned once, offline, on images unrelated to any index (the 138 still images of
Debian's opencv-doc examples), and ships with frameseek: the descriptor is then a fixed function
of the pool5 map, videos can be added to an index one at a time, and every index built with
"rmac" agrees. Whitening fitted on the evaluation corpus itself scored the same (docs/robust.md).
Refit with

    python -m frameseek.fit_whitening --out frameseek/data/rmac_whitening.npz IMAGE...
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from frameseek.backends.hardware import blas_on_one_thread

Region = tuple[int, int, int]  # (top, left, side) of a square region of the feature map
COARSE_DIM = 64
MIN_FIT_SIDE = 64
WHITENING_FILE = Path(__file__).parent / "data" / "rmac_whitening.npz"
WHITENING_SHA256 = "b05ed03151859eee1816f3cf7afa32c0eeea0521fbe1e066e0b1b89a8be1f44f"
# With the shipped whitening, a query whose best key frame is less similar than this (cosine of
# the fine vectors) is answered "no match". Calibrated by bench/no_match.py on the eval corpus
# (docs/robust.md): the out-of-collection queries' 99.8th percentile, 0.579.
MATCH_SIMILARITY = 0.58


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# -- regional pooling ----------------------------------------------------------------------------


def rmac_regions(height: int, width: int, levels: int = 3) -> list[Region]:
    """Square regions of R-MAC: at level l (1..levels) side ⌊2·min(h, w)/(l+1)⌋, l per axis
    evenly spaced over the short side, and enough over the long side to keep the overlap near
    40% (one more per unit of excess aspect)."""
    short, long_ = min(height, width), max(height, width)
    regions: list[Region] = []
    for level in range(1, levels + 1):
        side = short if level == 1 else max(1, (2 * short) // (level + 1))
        across_short = level
        extra = int(np.ceil((long_ - short) / max(1, 0.6 * side))) if long_ > short else 0
        across_long = level + extra
        ys = _positions(height, side, across_short if height <= width else across_long)
        xs = _positions(width, side, across_long if height <= width else across_short)
        regions.extend((y, x, side) for y in ys for x in xs)
    return list(dict.fromkeys(regions))


def _positions(length: int, side: int, count: int) -> list[int]:
    if count <= 1 or length <= side:
        return [max(0, (length - side) // 2)]
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def regional_max(pool5: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """(N, C, h, w) → (N, R, C): the max of each channel over each region."""
    return np.stack([pool5[:, :, y:y + s, x:x + s].max(axis=(2, 3)) for y, x, s in regions],
                    axis=1).astype(np.float32)


@dataclass
class Whitening:
    """PCA-whitening with L2 normalisation before and after, learned once on a collection.

    Components with tiny variance would be amplified into noise, so each eigenvalue gets
    `shrinkage` × the mean eigenvalue added before the inverse square root.
    """

    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (D, d): eigenvectors scaled by 1/√(λ + shrinkage·mean λ)

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int | None = None, shrinkage: float = 0.1
            ) -> Whitening:
        x = l2_normalise(np.asarray(vectors, dtype=np.float64))
        mean = x.mean(axis=0)
        covariance = np.cov(x - mean, rowvar=False)
        values, vectors_ = np.linalg.eigh(covariance)  # ascending; deterministic for one input
        order = np.argsort(values)[::-1][: dim or x.shape[1]]
        values, vectors_ = values[order], vectors_[:, order]
        # Eigenvector signs are arbitrary: fix them so refits on the same data agree bit for bit.
        signs = np.sign(vectors_[np.abs(vectors_).argmax(axis=0), np.arange(vectors_.shape[1])])
        vectors_ = vectors_ * signs
        scale = 1.0 / np.sqrt(np.maximum(values, 0) + shrinkage * max(values.mean(), 1e-12))
        return cls(mean.astype(np.float32), (vectors_ * scale).astype(np.float32))

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(..., D) → (..., d), unit length."""
        x = l2_normalise(np.asarray(vectors, dtype=np.float32))
        with blas_on_one_thread():
            return l2_normalise((x - self.mean) @ self.projection)


@dataclass
class RegionalMax:
    """R-MAC of pool5 maps with its region whitening: the "rmac" pooling of an index.

    `descriptors` gives the unit-length 512-d fine vector. `coarse` keeps its first 64 whitened
    components (the directions of largest variance: PCA-whitening's usual reduction),
    renormalised, so that a store can derive the 64-d index from the fine vector it keeps.
    """

    regions_whitening: Whitening
    levels: int = 3
    # The "no match" threshold; None for a whitening it was not calibrated with.
    match_similarity: float | None = None
    name = "rmac"

    @classmethod
    def fit(cls, pool5: np.ndarray, levels: int = 3, shrinkage: float = 0.1) -> RegionalMax:
        regional = regional_max(pool5, rmac_regions(*pool5.shape[2:], levels))
        return cls(Whitening.fit(regional.reshape(-1, regional.shape[2]), shrinkage=shrinkage),
                   levels)

    def descriptors(self, pool5: np.ndarray) -> np.ndarray:
        """(N, C, h, w) → (N, C) unit-length R-MAC; any h, w (non-square inputs too)."""
        regional = regional_max(pool5, rmac_regions(*pool5.shape[2:], self.levels))
        return _sum_regions(self.regions_whitening.transform(regional))

    def coarse(self, descriptors: np.ndarray) -> np.ndarray:
        """Fine R-MAC (N, C) → the (N, 64) coarse vector."""
        return l2_normalise(np.asarray(descriptors, dtype=np.float32)[:, :COARSE_DIM])

    def save(self, path: Path, source: str) -> None:
        np.savez_compressed(path, mean=self.regions_whitening.mean,
                            projection=self.regions_whitening.projection,
                            levels=self.levels, source=source)

    def digest(self) -> str:
        """sha256 of the arrays (a zip's bytes change with its timestamps, the arrays do not)."""
        w = self.regions_whitening
        return hashlib.sha256(w.mean.astype("<f4").tobytes() + w.projection.astype("<f4").tobytes()
                              + str(self.levels).encode()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> RegionalMax:
        with np.load(path) as data:
            return cls(Whitening(data["mean"], data["projection"]), int(data["levels"]))


def _sum_regions(whitened: np.ndarray) -> np.ndarray:
    return l2_normalise(whitened.sum(axis=1))


class WhiteningError(RuntimeError):
    """The shipped whitening file is missing or is not the verified one."""


@lru_cache(maxsize=1)
def shipped() -> RegionalMax:
    """The R-MAC pooling with the whitening that ships with frameseek (sha256-verified, like the
    CNN weights: an index's vectors must never change under it)."""
    try:
        pooling = RegionalMax.load(WHITENING_FILE)
    except (OSError, KeyError, ValueError) as exc:
        raise WhiteningError(f"{WHITENING_FILE}: cannot read ({exc})") from exc
    if pooling.digest() != WHITENING_SHA256:
        raise WhiteningError(f"{WHITENING_FILE}: sha256 {pooling.digest()} is not the verified "
                             "whitening")
    return replace(pooling, match_similarity=MATCH_SIMILARITY)
