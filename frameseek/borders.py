"""Border trimming: the content box of a screenshot or a photo of a screen, found by peeling
uniform borders (page background, black frame border, bezel) layer by layer. Beyond the paper."""

from __future__ import annotations

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (top, bottom, left, right) in pixels, end exclusive


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
