"""Verification of candidates on real frames: local conv features."""

from __future__ import annotations

import numpy as np
import pytest

from frameseek.features import FeatureExtractor
from frameseek.verify import local_features, local_similarity
from tests.conftest import BBB, BIKES, frame_at


@pytest.fixture(scope="module")
def bunny_frame() -> np.ndarray:
    return frame_at(BBB, 803)[0]  # 180×320, the frame of samples/query.jpg


def test_local_similarity_prefers_the_same_frame_to_another_video(bunny_frame):
    extractor = FeatureExtractor()
    images = np.stack([extractor.resize(im) for im in (
        frame_at(BBB, 806)[0], frame_at(BIKES, 100)[0], bunny_frame)])
    pool5 = extractor.pool5(images)
    locals_ = local_features(pool5)
    scores = local_similarity(locals_[2], locals_[:2])
    assert scores[0] > scores[1]
    assert local_similarity(locals_[2], locals_[2:]) == pytest.approx(1.0, abs=1e-5)
