"""Query regions: besides the whole query, the windows in which a video's picture may sit.

A global descriptor of a picture-in-picture sees mostly the surrounding picture, and one of a
small part of a frame matches a key frame's whole. So the query is also searched as a few
regions, each embedded on its own (one CNN batch), and their results are merged by video and
moment. Regions only propose candidates: a small window of any picture resembles some key frame
of another video, so what decides between them is geometric verification (frameseek/verify.py).

- `inset_boxes`: rectangles drawn in the query's own structure (a pasted picture's edges).
- `windows`: windows at a few scales, and a frame-shaped window of a tall query.
- `query_regions`: the regions an `Effort` asks for.
- `merge`: per-region results → one list, each key frame once, at its best region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import cv2
import numpy as np

from frameseek.borders import Box

WHOLE = "whole"
INSET = "inset"
WINDOW = "window"


@dataclass(frozen=True)
class Region:
    box: Box  # (top, bottom, left, right) in the query's pixels
    kind: str  # WHOLE, INSET or WINDOW

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self.box
        return np.ascontiguousarray(rgb[top:bottom, left:right])


@dataclass(frozen=True)
class Effort:
    """How much a search does beyond the whole query's descriptor."""

    insets: int  # rectangles from the query's structure searched as regions, at most
    windows: bool  # windows at several scales
    verify: int  # candidate key frames checked geometrically (0: none)


EFFORTS = {
    "fast": Effort(insets=0, windows=False, verify=6),
    "default": Effort(insets=2, windows=False, verify=10),
    "thorough": Effort(insets=3, windows=True, verify=20),
}
DEFAULT_EFFORT = "default"


def query_regions(rgb: np.ndarray, effort: Effort) -> list[Region]:
    """The whole query first, then its insets, then windows (none that repeat another)."""
    height, width = rgb.shape[:2]
    regions = [Region((0, height, 0, width), WHOLE)]
    boxes = [(box, INSET) for box in inset_boxes(rgb)[:effort.insets]]
    if effort.windows:
        boxes += [(box, WINDOW) for box in windows(height, width)]
    for box, kind in boxes:
        if all(_overlap(box, r.box) < 0.8 for r in regions):
            regions.append(Region(box, kind))
    return regions


def inset_boxes(rgb: np.ndarray, work_side: int = 320, min_share: float = 0.04,
                max_share: float = 0.7, support: float = 0.6, min_side: int = 32) -> list[Box]:
    """Axis-aligned rectangles outlined in the picture, largest first: a frame pasted into
    another picture leaves straight edges all along its border, which natural content rarely
    does on four sides at once.

    Found on a copy at most `work_side` pixels on its long side. Long straight edges are kept
    (an opening of the gradient map with a line a tenth of the picture long); each closed shape
    they draw is a candidate, kept where edges run along at least `support` of each of its four
    sides, its shape is video-like (aspect 0.4-2.6) and it covers `min_share`-`max_share` of
    the query, and at least `min_side` pixels on each side (less is not worth a CNN forward).
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, work_side / max(height, width))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    h, w = grey.shape
    smooth = cv2.GaussianBlur(grey, (3, 3), 0).astype(np.float32)
    across_rows = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1)) > 40
    across_columns = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 1, 0)) > 40
    rows = cv2.morphologyEx(across_rows.astype(np.uint8), cv2.MORPH_OPEN,
                            np.ones((1, max(3, w // 10)), np.uint8))
    columns = cv2.morphologyEx(across_columns.astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((max(3, h // 10), 1), np.uint8))
    # A two-pixel tolerance: an edge a pixel off the box's side still supports it.
    rows = cv2.dilate(rows, np.ones((5, 1), np.uint8))
    columns = cv2.dilate(columns, np.ones((1, 5), np.uint8))
    contours, _ = cv2.findContours(rows | columns, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, Box]] = []
    for contour in contours:
        x, y, bw, bh = cv2.boundingRect(contour)
        share = bw * bh / (h * w)
        if not min_share <= share <= max_share or not 0.4 <= bw / bh <= 2.6:
            continue
        # The middle of each side (its corners belong to the other two as well).
        y2, x2 = min(h - 1, y + bh - 1), min(w - 1, x + bw - 1)
        sides = (rows[y, x:x2 + 1], rows[y2, x:x2 + 1], columns[y:y2 + 1, x],
                 columns[y:y2 + 1, x2])
        if min(side.mean() for side in sides) < support:
            continue
        box = (min(height, round((y + 2) / scale)), min(height, round((y2 - 1) / scale)),
               min(width, round((x + 2) / scale)), min(width, round((x2 - 1) / scale)))
        small = min(box[1] - box[0], box[3] - box[2]) < min_side
        if not small and all(_overlap(box, other) < 0.8 for _, other in found):
            found.append((share, box))
    return [box for _, box in sorted(found, key=lambda item: -item[0])]


def windows(height: int, width: int) -> list[Box]:
    """The centre at 70% and the four quarters' windows at half size (overlapping, as a crop
    of a frame rarely keeps its centre), and for a tall query a frame-shaped (16:9) window at
    its centre, for a wide frame reposted in a vertical one."""
    boxes: list[Box] = [_window(height, width, 0.7, 0.5, 0.5)]
    boxes += [_window(height, width, 0.5, cy, cx) for cy in (0.3, 0.7) for cx in (0.3, 0.7)]
    if height > width:
        h = min(height, round(width * 9 / 16))
        top = (height - h) // 2
        boxes.append((top, top + h, 0, width))
    return boxes


def _window(height: int, width: int, side: float, cy: float, cx: float) -> Box:
    h, w = max(1, round(height * side)), max(1, round(width * side))
    top = min(height - h, max(0, round(cy * height - h / 2)))
    left = min(width - w, max(0, round(cx * width - w / 2)))
    return top, top + h, left, left + w


def _overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    h = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    w = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = h * w
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / union if union else 0.0


class Ranked(Protocol):
    """A search result as `merge` needs it (frameseek.index.Match)."""

    @property
    def keyframe_id(self) -> int: ...

    @property
    def distance(self) -> float: ...


M = TypeVar("M", bound=Ranked)


def merge(regions: Sequence[Region], results: Sequence[Sequence[M]], top: int
          ) -> list[tuple[M, Region]]:
    """Each region's results (nearest first; the whole query's first) → the `top` nearest key
    frames over all regions, each once. A key frame the whole query found stays at the whole
    query's distance: the verdict's similarity is the whole query's (frameseek/index.py), and
    where regions add nothing new the ranking is the whole query's; its nearest key frame stays
    in the list, last if need be. Other key frames come with the region they were nearest
    in."""
    best: dict[int, tuple[M, Region]] = {}
    for region, matches in zip(regions, results, strict=True):
        for match in matches:
            held = best.get(match.keyframe_id)
            if held is None or (held[1].kind != WHOLE and match.distance < held[0].distance):
                best[match.keyframe_id] = (match, region)
    ranked = sorted(best.values(), key=lambda item: item[0].distance)[:top]
    nearest = results[0][0] if results and results[0] else None
    if nearest is not None and all(m.keyframe_id != nearest.keyframe_id for m, _ in ranked):
        ranked[-1] = (nearest, regions[0])
    return ranked
