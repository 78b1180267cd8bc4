"""Verification of candidates on real frames: geometric inliers by SIFT and RANSAC against
thumbnails as the store keeps them, and local conv features."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from frameseek.eval.queries import HARD_FAMILIES
from frameseek.features import FeatureExtractor
from frameseek.keyframes import THUMBNAIL_WIDTH
from frameseek.verify import (
    RANK_INLIERS,
    GeometricVerifier,
    local_features,
    local_similarity,
    verified_order,
)
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


def thumbnail(frame: np.ndarray) -> bytes:
    """A key frame's thumbnail as the store keeps it (frameseek/keyframes.py)."""
    image = Image.fromarray(frame)
    height = max(2, round(image.height * THUMBNAIL_WIDTH / image.width))
    buffer = io.BytesIO()
    image.resize((THUMBNAIL_WIDTH, height), Image.Resampling.BILINEAR).save(
        buffer, format="JPEG", quality=80)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def verifier() -> GeometricVerifier:
    # Key frame ids 0-2: bunny frames from three shots; 3: a bikes frame.
    frames = [frame_at(BBB, n)[0] for n in (806, 100, 1300)] + [frame_at(BIKES, 120)[0]]
    stored = {i: thumbnail(f) for i, f in enumerate(frames)}
    return GeometricVerifier(stored.get)


# Not tight crops: a tenth to a third of a frame is a few dozen pixels of a 192-wide thumbnail,
# too few keypoints to verify (docs/robust.md gives the family's measured share).
@pytest.mark.parametrize("family", ["inset", "vertical", "stretch", "phone_moire",
                                    "grey_contrast", "text_block"])
def test_a_damaged_copy_of_a_frame_is_verified_and_other_frames_are_not(
        verifier, bunny_frame, family) -> None:
    picture, _ = HARD_FAMILIES[family](Image.fromarray(bunny_frame), np.random.default_rng(1))
    counts = verifier.inliers(verifier.query(np.asarray(picture.convert("RGB"))), [0, 1, 2, 3])
    assert counts[0] >= RANK_INLIERS, counts
    assert max(counts[1:]) < RANK_INLIERS, counts


def test_keypoints_of_key_frames_are_cached(verifier) -> None:
    first = verifier.keyframe(1)
    assert verifier.keyframe(1) is first
    assert len(GeometricVerifier(lambda _: None).keyframe(9).points) == 0  # no thumbnail
    assert len(GeometricVerifier(lambda _: b"not a jpeg").keyframe(9).points) == 0


def test_verified_candidates_come_first_by_inliers_and_the_rest_keep_their_order() -> None:
    assert verified_order([3, 40, 0, 15, 11], min_inliers=12) == [1, 3, 0, 2, 4]
    assert verified_order([1, 2, 3], min_inliers=12) == [0, 1, 2]
    assert verified_order([1, 20, 3, 0], 12, [True, True, False, False]) == [1, 2, 3, 0]
