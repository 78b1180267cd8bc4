"""Beyond the paper (issue 8): representations and query handling for damaged queries.

The paper's mean-pooled pool5 descriptor is a good match for frames taken straight from the video
but degrades on crops, screenshots and photos of screens. Everything here works on the same pool5
maps (N, 512, h, w) the faithful pipeline computes, so no second CNN pass is ever needed:

- `RegionalMax` (R-MAC, Tolias et al. 2016): max-pool over square regions at several scales, each
  region L2-normalised, PCA-whitened, L2-normalised again, summed and L2-normalised. A crop or a
  frame inside a page still shares whole regions with the original.
- `Whitening`: PCA-whitening learned on the indexed collection, with L2 normalisation; it also
  gives the 64-d coarse vector (the first 64 whitened components).
- `trim_borders`: the content box of a screenshot or photo of a screen, found by peeling uniform
  borders (page background, black frame border, bezel) layer by layer.
- `local_similarity`: spatial verification of a few candidates by mutual nearest neighbours among
  the 7×7 local conv features.
- `aggregate_videos` and `NoMatch`: one score per video from its key frames in the top results,
  and a threshold on it calibrated for a chosen false-positive rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

Region = tuple[int, int, int]  # (top, left, side) of a square region of the feature map
Box = tuple[int, int, int, int]  # (top, bottom, left, right) in pixels, end exclusive


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
        return l2_normalise((x - self.mean) @ self.projection)


@dataclass
class RegionalMax:
    """R-MAC descriptors (`dim`-d fine, 64-d coarse) of pool5 maps, whitening fitted once."""

    regions_whitening: Whitening
    coarse_whitening: Whitening
    levels: int = 3

    @classmethod
    def fit(cls, pool5: np.ndarray, levels: int = 3, coarse_dim: int = 64,
            shrinkage: float = 0.1) -> RegionalMax:
        regional = regional_max(pool5, rmac_regions(*pool5.shape[2:], levels))
        regions_whitening = Whitening.fit(regional.reshape(-1, regional.shape[2]),
                                          shrinkage=shrinkage)
        fine = _sum_regions(regions_whitening.transform(regional))
        return cls(regions_whitening, Whitening.fit(fine, coarse_dim, shrinkage), levels)

    def fine(self, pool5: np.ndarray) -> np.ndarray:
        """(N, C, h, w) → (N, C) unit-length R-MAC; any h, w (non-square inputs too)."""
        regional = regional_max(pool5, rmac_regions(*pool5.shape[2:], self.levels))
        return _sum_regions(self.regions_whitening.transform(regional))

    def coarse(self, fine: np.ndarray) -> np.ndarray:
        """Fine R-MAC (N, C) → the (N, 64) whitened, unit-length coarse vector."""
        return self.coarse_whitening.transform(fine)


def _sum_regions(whitened: np.ndarray) -> np.ndarray:
    return l2_normalise(whitened.sum(axis=1))


# -- query-side handling -------------------------------------------------------------------------


def trim_borders(rgb: np.ndarray, tolerance: int = 24, min_share: float = 0.08,
                 layers: int = 3, work_side: int = 320) -> Box:
    """The content box of an image framed by uniform borders (a page, a player, a bezel).

    Per layer: if one or two colours make up the box's outer ring, pixels near them are
    background, and the box shrinks to the bounding box of the largest connected foreground
    region (so text beside a frame is dropped). The new box is kept only if it is a pasted
    rectangle: foreground along each of its four sides (a frame's own sky or a cartoon's white
    background touches its object at a few points only, and is not a border). The search runs on
    a copy at most `work_side` pixels on its long side.
    """
    scale = min(1.0, work_side / max(rgb.shape[:2]))
    small = rgb if scale == 1.0 else np.asarray(Image.fromarray(rgb).resize(
        (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
        Image.Resampling.BOX))
    top, bottom, left, right = 0, small.shape[0], 0, small.shape[1]
    for _ in range(layers):
        view = small[top:bottom, left:right].astype(np.int16)
        if min(view.shape[:2]) < 8:
            break
        colours = _border_colours(view, tolerance)
        if colours is None:
            break
        background = (np.abs(view[:, :, None, :] - colours).max(axis=3) <= tolerance).any(axis=2)
        labels, count = ndimage.label(~background)
        if count == 0:
            break
        sizes = np.bincount(labels.ravel())[1:]
        rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
        if (rows.stop - rows.start) * (cols.stop - cols.start) < min_share * background.size:
            break
        if (rows.stop - rows.start, cols.stop - cols.start) == background.shape:
            break
        if not _is_pasted(~background[rows, cols]):
            break
        top, bottom = top + rows.start, top + rows.stop
        left, right = left + cols.start, left + cols.stop
    if scale == 1.0:
        return top, bottom, left, right
    height, width = rgb.shape[:2]
    return (min(height, int(top / scale)), min(height, int(np.ceil(bottom / scale))),
            min(width, int(left / scale)), min(width, int(np.ceil(right / scale))))


def _border_colours(view: np.ndarray, tolerance: int, uniform: float = 0.9
                    ) -> np.ndarray | None:
    """The colours of the box's uniform sides, (k, 3), where at least two of its four
    one-pixel sides are one colour (a page all round, or a video's letterbox bars); None where
    fewer are (a picture's own edge: a sky makes one uniform side at most)."""
    colours: list[np.ndarray] = []
    uniform_sides = 0
    for side in (view[0], view[-1], view[:, 0], view[:, -1]):
        _, inverse, counts = np.unique(side // (2 * tolerance), axis=0, return_inverse=True,
                                       return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] >= uniform * len(side):
            uniform_sides += 1
            colour = np.median(side[inverse.ravel() == top], axis=0)
            if not any(np.abs(colour - c).max() <= tolerance for c in colours):
                colours.append(colour)
    return np.stack(colours) if uniform_sides >= 2 else None


def _is_pasted(foreground: np.ndarray, depth: float = 0.03, share: float = 0.5) -> bool:
    """Whether a box's content fills a thin band along each of its four sides."""
    h, w = foreground.shape
    dy, dx = max(1, round(depth * h)), max(1, round(depth * w))
    bands = (foreground[:dy], foreground[-dy:], foreground[:, :dx], foreground[:, -dx:])
    return all(band.mean() >= share for band in bands)


def crop_to_content(rgb: np.ndarray) -> np.ndarray:
    top, bottom, left, right = trim_borders(rgb)
    return rgb[top:bottom, left:right]


# -- verification, aggregation, "no match" -------------------------------------------------------


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


def aggregate_videos(videos: Sequence[str], similarities: Sequence[float],
                     per_video: int = 3) -> list[tuple[str, float]]:
    """Ranked results (video of each, similarity) → videos ranked by the sum of their best
    `per_video` similarities: several key frames of one video agreeing outweigh one lucky hit."""
    scores: dict[str, list[float]] = defaultdict(list)
    for video, similarity in zip(videos, similarities, strict=True):
        if len(scores[video]) < per_video:
            scores[video].append(float(similarity))
    totals = {video: sum(values) / per_video for video, values in scores.items()}
    return sorted(totals.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class NoMatch:
    """Answer "no match" below a score threshold chosen for a false-positive rate."""

    threshold: float

    @classmethod
    def calibrate(cls, out_of_index_scores: Sequence[float], fpr: float = 0.01) -> NoMatch:
        """The smallest threshold that lets at most `fpr` of out-of-index queries through."""
        scores = np.sort(np.asarray(out_of_index_scores, dtype=np.float64))
        allowed = int(np.floor(fpr * len(scores)))
        threshold = scores[len(scores) - allowed - 1] if len(scores) else -np.inf
        return cls(float(np.nextafter(threshold, np.inf)))

    def is_match(self, score: float) -> bool:
        return score >= self.threshold
