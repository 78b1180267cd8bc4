"""The cheaper clustering of Algorithm 1 (`cluster_size`) still stores full 224-px descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from frameseek.features import FeatureExtractor
from frameseek.keyframes import KeyFrameExtractor, StageTimer
from frameseek.video import iter_frames


def test_key_frames_clustered_at_112_px_carry_their_224_px_descriptor(sample_videos: Path
                                                                      ) -> None:
    video = sample_videos / "bikes.mp4"
    full = FeatureExtractor(input_size=224)
    timer = StageTimer()
    result = KeyFrameExtractor(full, timer=timer, cluster_size=112).extract(iter_frames(video))
    assert result.keyframes and "cnn_keyframes" in timer.seconds
    wanted = {k.frame: k for k in result.keyframes}
    pixels = {f.number: f.rgb(224, 224) for f in iter_frames(video) if f.number in wanted}
    expected = full.transform(np.stack([pixels[n] for n in wanted]))
    for row, keyframe in enumerate(wanted.values()):
        np.testing.assert_allclose(keyframe.descriptor, expected.descriptors[row], rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(keyframe.index, expected.index[row], rtol=1e-4, atol=1e-4)
