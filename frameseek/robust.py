"""Beyond the paper (issue 8): query handling, verification and "no match" for damaged queries.

The regional descriptor itself is an index option (frameseek/rmac.py). Here, all on the query
side or over the top results:

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

from frameseek.rmac import Whitening, l2_normalise

Box = tuple[int, int, int, int]  # (top, bottom, left, right) in pixels, end exclusive


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
        from scipy import ndimage  # a quarter second of import, paid only by framed queries

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
