"""Border trimming on real frames: pasted into a page, letterboxed, and left alone when plain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from frameseek.borders import trim_borders
from tests.conftest import BBB, BIKES, frame_at


@pytest.fixture(scope="module")
def bunny_frame() -> np.ndarray:
    return frame_at(BBB, 803)[0]  # 180×320, the frame of samples/query.jpg


def letterboxed(frame: np.ndarray, top: int, left: int, page: tuple[int, int, int]
                ) -> np.ndarray:
    """The frame pasted into a web-page-like canvas: title bar, a black border, side text."""
    h, w = frame.shape[:2]
    canvas = Image.new("RGB", (w + left + 190, h + top + 70), page)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 24), fill=(222, 225, 230))
    draw.rectangle((left - 3, top - 3, left + w + 2, top + h + 2), fill=(0, 0, 0))
    canvas.paste(Image.fromarray(frame), (left, top))
    draw.text((left, top + h + 10), "Watch the full video - 1,234 views", fill=(40, 40, 40))
    for line in range(5):
        draw.text((left + w + 14, 40 + 16 * line), f"Up next: clip {line}", fill=(40, 40, 40))
    return np.asarray(canvas)


@pytest.mark.parametrize("page", [(245, 245, 245), (32, 33, 36)])
def test_trim_recovers_the_content_box_of_a_letterboxed_frame(bunny_frame, page):
    top, left = 57, 31
    image = letterboxed(bunny_frame, top, left, page)
    box = trim_borders(image)
    h, w = bunny_frame.shape[:2]
    # Within the 3-pixel black border drawn around the frame, plus a pixel of resampling.
    assert np.allclose(box, (top, top + h, left, left + w), atol=4), box


def test_trim_leaves_plain_frames_alone(bunny_frame):
    for image in (bunny_frame, frame_at(BIKES, 100)[0]):
        assert trim_borders(image) == (0, image.shape[0], 0, image.shape[1])


def test_trim_black_bars_of_a_letterboxed_video_frame(bunny_frame):
    bars = np.zeros((bunny_frame.shape[0] + 80, *bunny_frame.shape[1:]), dtype=np.uint8)
    bars[40:-40] = bunny_frame
    assert np.allclose(trim_borders(bars), (40, 40 + bunny_frame.shape[0], 0, 320), atol=2)
