"""Query regions on real frames: insets found from the query's structure, windows, merging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from frameseek.eval.queries import HARD_FAMILIES
from frameseek.index import Index
from frameseek.regions import (
    EFFORTS,
    INSET,
    WHOLE,
    WINDOW,
    Region,
    inset_boxes,
    merge,
    query_regions,
    windows,
)
from tests.conftest import BBB, BIKES, ROOT, frame_at


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [frame_at(BBB, n)[0] for n in (100, 803, 1300)] + [frame_at(BIKES, 120)[0]]


def inset_query(frame: np.ndarray, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The eval's picture-in-picture of `frame`, and the inset's box (top, bottom, left, right)."""
    picture, parameters = HARD_FAMILIES["inset"](Image.fromarray(frame),
                                                 np.random.default_rng(seed))
    x, y, w, h = parameters["box"]
    return np.asarray(picture), (y, y + h, x, x + w)


def test_the_inset_of_a_picture_in_picture_is_found(frames) -> None:
    for seed, frame in enumerate(frames):
        query, (top, bottom, left, right) = inset_query(frame, seed)
        boxes = inset_boxes(query)
        assert boxes, seed
        # One of the boxes is the inset, give or take its drawn border and a few pixels.
        assert any(np.allclose(box, (top, bottom, left, right), atol=12) for box in boxes), (
            seed, boxes, (top, bottom, left, right))


def test_plain_frames_have_no_inset(frames) -> None:
    assert [inset_boxes(frame) for frame in frames] == [[]] * len(frames)


def test_regions_follow_the_effort(frames) -> None:
    query, _ = inset_query(frames[1], 7)
    fast = query_regions(query, EFFORTS["fast"])
    assert [r.kind for r in fast] == [WHOLE]
    assert fast[0].box == (0, query.shape[0], 0, query.shape[1])
    default = query_regions(query, EFFORTS["default"])
    assert default[0].kind == WHOLE and {r.kind for r in default[1:]} == {INSET}
    thorough = query_regions(query, EFFORTS["thorough"])
    assert [r.kind for r in thorough][:len(default)] == [r.kind for r in default]
    assert WINDOW in {r.kind for r in thorough}
    for region in thorough:
        crop = region.crop(query)
        assert crop.shape[0] >= 32 and crop.shape[1] >= 32


def test_windows_lie_inside_the_picture_and_a_tall_one_gets_a_frame_shaped_window() -> None:
    for height, width in ((180, 320), (640, 360)):
        for top, bottom, left, right in windows(height, width):
            assert 0 <= top < bottom <= height and 0 <= left < right <= width
    wide = [(b - t) / (r - lf) for t, b, lf, r in windows(640, 360)]
    assert any(ratio == pytest.approx(9 / 16, abs=0.01) for ratio in wide)


@dataclass(frozen=True)
class Found:
    keyframe_id: int
    distance: float


def test_merge_keeps_each_key_frame_once_at_the_whole_query_or_its_nearest_region() -> None:
    whole = Region((0, 10, 0, 10), WHOLE)
    inset = Region((0, 5, 0, 5), INSET)
    window = Region((5, 10, 5, 10), WINDOW)
    merged = merge([whole, inset, window],
                   [[Found(1, 0.9), Found(2, 1.0)],
                    [Found(3, 0.6), Found(1, 0.5), Found(4, 1.2)],
                    [Found(3, 0.4), Found(4, 1.1)]], top=3)
    # 1 and 2 at the whole query's distances although the inset came nearer to 1.
    assert [(m.keyframe_id, m.distance, r.kind) for m, r in merged] == [
        (3, 0.4, WINDOW), (1, 0.9, WHOLE), (2, 1.0, WHOLE)]
    # The whole query's nearest stays, last, where regions found nearer ones.
    kept = merge([whole, inset], [[Found(1, 0.9)], [Found(3, 0.2), Found(4, 0.3)]], top=2)
    assert [(m.keyframe_id, r.kind) for m, r in kept] == [(3, INSET), (1, WHOLE)]


def test_an_inset_is_found_and_kept_as_a_match_by_default_and_an_unindexed_clip_is_not(
        sample_index, frames) -> None:
    query, _ = inset_query(frames[1], 3)  # frame 803 of the bunny, in a busy picture
    with Index.open(sample_index) as index:
        fast = index.search(query, effort="fast")
        found = index.search(query)
        verdict = index.verdict(found)
        assert found[0].video.endswith(BBB.name) and found[0].region is not None
        assert abs(found[0].time - 33.46) <= 1.0
        assert verdict.match and verdict.inliers >= verdict.min_inliers
        # The whole picture alone is far from every key frame: the inset is what finds it.
        assert index.verdict(fast).similarity < verdict.threshold
        carphone = ROOT / "tests" / "data" / "carphone.mp4"
        for number in (10, 60, 100):
            outside, _ = inset_query(frame_at(carphone, number)[0], number)
            assert not index.verdict(index.search(outside, effort="thorough")).match
