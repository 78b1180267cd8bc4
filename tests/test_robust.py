"""Issue 8's query-side pieces on real frames: border trimming, verification, "no match"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from frameseek.features import FeatureExtractor
from frameseek.rmac import RegionalMax
from frameseek.robust import (
    NoMatch,
    aggregate_videos,
    local_features,
    local_similarity,
    trim_borders,
)
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


def test_local_similarity_prefers_the_same_frame_to_another_video(bunny_frame):
    extractor = FeatureExtractor()
    images = np.stack([extractor.resize(im) for im in (
        frame_at(BBB, 806)[0], frame_at(BIKES, 100)[0], bunny_frame)])
    pool5 = extractor.pool5(images)
    locals_ = local_features(pool5)
    scores = local_similarity(locals_[2], locals_[:2])
    assert scores[0] > scores[1]
    assert local_similarity(locals_[2], locals_[2:]) == pytest.approx(1.0, abs=1e-5)


def test_aggregate_videos_favours_agreeing_key_frames():
    ranked = aggregate_videos(["a", "b", "b", "b", "a"], [0.9, 0.8, 0.8, 0.8, 0.1])
    assert [video for video, _ in ranked] == ["b", "a"]
    assert ranked[0][1] == pytest.approx(0.8)


def test_no_match_for_a_query_far_from_everything():
    extractor = FeatureExtractor()
    bunny = [frame_at(BBB, n)[0] for n in (100, 400, 700, 1000, 1300)]
    bikes = [frame_at(BIKES, n)[0] for n in (20, 80, 140, 200)]
    pool5 = extractor.pool5(np.stack([extractor.resize(im) for im in bunny + bikes]))
    model = RegionalMax.fit(pool5[:5])
    database = model.descriptors(pool5[:5])

    def best(maps: np.ndarray) -> float:
        return float((database @ model.descriptors(maps).T).max())

    # Calibrated on another video's frames: none of them passes at FPR 0.
    rule = NoMatch.calibrate([best(pool5[i:i + 1]) for i in range(5, 9)], fpr=0.0)
    assert not any(rule.is_match(best(pool5[i:i + 1])) for i in range(5, 9))
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert not rule.is_match(best(extractor.pool5(noise[None])))
    near = extractor.resize(frame_at(BBB, 403)[0])  # three frames from an indexed key frame
    assert rule.is_match(best(extractor.pool5(near[None])))


def test_no_match_threshold_lets_through_at_most_the_asked_rate():
    scores = np.linspace(0, 1, 200)
    rule = NoMatch.calibrate(scores, fpr=0.01)
    assert np.mean([rule.is_match(s) for s in scores]) <= 0.01
    assert rule.is_match(1.5)
