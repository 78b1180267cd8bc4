"""The verdict on real frames: video aggregation and the "no match" threshold."""

from __future__ import annotations

import numpy as np
import pytest

from frameseek.features import FeatureExtractor
from frameseek.rmac import RegionalMax
from frameseek.verdict import NoMatch, aggregate_videos
from tests.conftest import BBB, BIKES, frame_at


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
