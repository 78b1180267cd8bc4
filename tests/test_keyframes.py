"""Algorithm 1: colour histograms, the m rule, k-means key frames, and the extractor on video."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import pairwise, product
from pathlib import Path

import numpy as np
import pytest

from frameseek import keyframes, rmac
from frameseek.features import FeatureExtractor, Features
from frameseek.keyframes import (
    HISTOGRAM_SIZE,
    KeyFrameExtractor,
    Sampler,
    color_histogram,
    color_histograms,
    count_clusters,
    cover,
    select_keyframes,
)
from frameseek.video import Frame, VideoError, iter_frames
from tests.conftest import BBB, BIKES, sampled_frames


def solid(colour: tuple[int, int, int], height: int = 8, width: int = 8) -> np.ndarray:
    return np.full((height, width, 3), colour, dtype=np.uint8)


# -- colour histogram ---------------------------------------------------------------------------

def test_histogram_of_one_colour_is_one_cell() -> None:
    for (r, g, b) in product((0, 40, 255), repeat=3):
        histogram = color_histogram(solid((r, g, b)))
        assert histogram.shape == (512,)
        cell = (r // 32 * 8 + g // 32) * 8 + b // 32
        assert histogram[cell] == 1.0 and histogram.sum() == 1.0


def test_histogram_counts_colour_shares_not_positions() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    histogram = color_histogram(image)
    assert histogram.sum() == pytest.approx(1.0)
    assert (histogram >= 0).all()
    shuffled = rng.permutation(image.reshape(-1, 3)).reshape(image.shape)
    np.testing.assert_array_equal(color_histogram(shuffled), histogram)
    # A quarter red, three quarters blue.
    half = solid((0, 0, 255), 4, 4)
    half[:2, :2] = (255, 0, 0)
    histogram = color_histogram(half)
    assert histogram[7 * 64] == 0.25 and histogram[7] == 0.75


def test_histograms_of_many_images_are_each_one_s() -> None:
    # 19 images: groups of 8 and a remainder.
    images = np.random.default_rng(1).integers(0, 256, (19, 12, 10, 3), dtype=np.uint8)
    expected = np.stack([color_histogram(image) for image in images])
    np.testing.assert_array_equal(color_histograms(images), expected)
    np.testing.assert_array_equal(color_histograms(images, bins=4),
                                  np.stack([color_histogram(image, 4) for image in images]))


def test_histogram_bins_parameter() -> None:
    histogram = color_histogram(solid((200, 100, 0)), bins=4)
    assert histogram.shape == (64,)
    assert histogram[(3 * 4 + 1) * 4 + 0] == 1.0


# -- the m rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("distances", "theta", "m"), [
    ([0, 0, 0, 0, 0, 0, 2, 3, 3, 2], 2.0, 2),  # mean 1, threshold 2: the 2s are not above it
    ([0, 0, 0, 0, 0, 0, 2, 3, 3, 2], 1.9, 4),
    ([0, 0, 0, 0, 0, 0, 2, 3, 3, 2], 0.0, 4),  # every non-zero distance
    ([1, 1, 1, 1, 6], 1.4, 1),
    ([5, 5, 5, 5], 1.4, 1),  # no change anywhere: still one key frame
    ([0, 0, 0], 1.4, 1),
    ([], 1.4, 1),  # a one-frame video
    ([0.5, 0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1, 0.5, 0.1], 1.4, 3),  # mean 0.22, threshold 0.308
])
def test_count_clusters(distances: list[float], theta: float, m: int) -> None:
    assert count_clusters(np.asarray(distances, dtype=np.float32), theta) == m


def wipe(start: tuple[int, int, int], end: tuple[int, int, int], steps: int) -> list[np.ndarray]:
    """A wipe from one colour to another, one more column of `steps` each frame."""
    frames = []
    for k in range(1, steps + 1):
        frame = solid(start, 8, steps)
        frame[:, :k] = end
        frames.append(frame)
    return frames


def test_m_rule_on_known_histograms() -> None:
    # Three flat shots (red, green, red again: two cuts of distance √2), then a wipe to blue in
    # 8 steps (each moves 1/8 of the mass between two cells: √2/8).
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    frames = [solid(red)] * 10 + [solid(green)] * 10 + [solid(red)] * 10 + wipe(red, blue, 8)
    histograms = np.stack([color_histogram(f) for f in frames])
    distances = np.linalg.norm(np.diff(histograms, axis=0), axis=1)
    expected = np.zeros(37)
    expected[[9, 19]] = np.sqrt(2)
    expected[29:] = np.sqrt(2) / 8
    np.testing.assert_allclose(distances, expected, atol=1e-6)
    # mean(D) = 3√2/37 ≈ 0.115. θ = 1.4: threshold 0.161, below the wipe's steps (0.177), so
    # the two cuts and all 8 steps count; θ = 2: threshold 0.229, only the cuts.
    assert count_clusters(distances, 1.4) == 10
    assert count_clusters(distances, 2.0) == 2
    assert count_clusters(distances, 20.0) == 1


# -- k-means selection --------------------------------------------------------------------------

@pytest.fixture
def blobs() -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 10, (4, 16))
    return np.concatenate([c + rng.normal(0, 0.5, (25, 16)) for c in centres]).astype(np.float32)


def test_select_keyframes_one_per_cluster_nearest_its_centre(blobs: np.ndarray) -> None:
    rows, labels = select_keyframes(blobs, 4, seed=0)
    assert len(rows) == 4 and list(rows) == sorted(rows)
    # Each of the four well-separated blobs is one cluster and gives one key frame.
    assert sorted(row // 25 for row in rows) == [0, 1, 2, 3]
    for row in rows:
        members = np.flatnonzero(labels == labels[row])
        centre = blobs[members].mean(axis=0)
        gaps = [np.sum((blobs[i].astype(np.float64) - centre) ** 2) for i in members]
        assert row == members[int(np.argmin(gaps))]


def test_select_keyframes_is_deterministic(blobs: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 32)).astype(np.float32)  # no structure: k-means is fragile
    first = select_keyframes(features, 7, seed=11)
    again = select_keyframes(features, 7, seed=11)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    # The seed matters (otherwise the two calls above prove nothing).
    assert any(not np.array_equal(first[0], select_keyframes(features, 7, seed=s)[0])
               for s in range(5))


def test_select_keyframes_single_cluster_and_cap(blobs: np.ndarray) -> None:
    rows, labels = select_keyframes(blobs, 1)
    nearest = np.argmin(np.linalg.norm(blobs - blobs.mean(axis=0), axis=1))
    assert list(rows) == [nearest] and not labels.any()
    rows, _ = select_keyframes(blobs[:3], 10)  # more centres than frames
    assert list(rows) == [0, 1, 2]


# -- the coverage guarantee ---------------------------------------------------------------------

def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("similarity", [0.0, 0.5, 0.9, 0.99])
def test_cover_leaves_no_sample_below_the_similarity(blobs: np.ndarray, similarity: float
                                                     ) -> None:
    vectors = unit(blobs)
    rows, labels = select_keyframes(vectors, 1)  # one key frame for four blobs: poorly covered
    covered, new_labels, added = cover(vectors, rows, labels, similarity)
    assert set(rows) <= set(covered) and added == len(covered) - len(rows)
    assert list(covered) == sorted(covered)
    assert ((vectors @ vectors[covered].T).max(axis=1) >= similarity).all()
    # Each key frame stands for its own cluster, and every sample belongs to one of them.
    assert len({new_labels[r] for r in covered}) == len(covered)
    assert set(new_labels) == {new_labels[r] for r in covered}
    if similarity >= 0.5:
        assert added >= 3  # at least one key frame in each of the other blobs


def test_cover_changes_nothing_where_every_sample_is_covered(blobs: np.ndarray) -> None:
    vectors = unit(blobs)
    rows, labels = select_keyframes(vectors, 4)
    worst = float((vectors @ vectors[rows].T).max(axis=1).min())
    covered, new_labels, added = cover(vectors, rows, labels, worst)
    assert added == 0 and list(covered) == list(rows)
    np.testing.assert_array_equal(new_labels, labels)


def test_sampler_takes_the_first_frame_of_each_step() -> None:
    sampler = Sampler(2.0)
    times = [0.0, 0.2, 0.49, 0.5, 0.9, 1.01, 1.2, 2.5]
    assert [t for t in times if sampler.take(t)] == [0.0, 0.5, 1.01, 2.5]


# -- the extractor on real video ----------------------------------------------------------------

def bunny_frames(count: int) -> Iterator[Frame]:
    for frame, _ in zip(iter_frames(BBB), range(count), strict=False):
        yield frame


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor()


def test_extractor_on_the_first_five_seconds(extractor: FeatureExtractor) -> None:
    # Frames 0-119 hold three shots (cuts at frames 16 and 91); 10 samples at 2 fps, so the
    # CNN runs in two batches (8 + 2).
    seen: list[int] = []
    keyframer = KeyFrameExtractor(extractor, theta=1.4, sample_fps=2.0)
    result = keyframer.extract(bunny_frames(120), on_frame=lambda f: seen.append(f.number))

    assert seen == list(range(120))
    assert result.frames == 120 and result.sampled == 10
    assert result.duration == pytest.approx(119 / 24)
    histograms = [color_histogram(f.rgb(HISTOGRAM_SIZE, HISTOGRAM_SIZE)) for f in bunny_frames(120)]
    distances = np.array([np.linalg.norm(b - a) for a, b in pairwise(histograms)])
    assert result.clusters_requested == count_clusters(distances, 1.4)
    # m is capped at samples / samples_per_cluster = 5.
    assert 1 <= len(result.keyframes) <= 5
    assert result.compression_ratio == pytest.approx(1 - len(result.keyframes) / 120)
    for keyframe in result.keyframes:
        assert keyframe.frame % 12 == 0  # a sampled frame (every 12th at 24 fps / 2 fps)
        assert keyframe.time == keyframe.frame / 24
        assert keyframe.descriptor.shape == (512,) and keyframe.index.shape == (64,)
        assert any(start <= keyframe.time < end for start, end in keyframe.segments)
        assert keyframe.thumbnail.startswith(b"\xff\xd8")  # a JPEG
    # The segments of all key frames together cover every sample exactly once.
    covered = sorted(s for k in result.keyframes for s in k.segments)
    assert covered[0][0] == 0.0 and covered[-1][1] == pytest.approx(10 * 0.5)
    assert all(a[1] <= b[0] for a, b in pairwise(covered))

    again = keyframer.extract(bunny_frames(120))
    assert [k.frame for k in again.keyframes] == [k.frame for k in result.keyframes]
    for a, b in zip(again.keyframes, result.keyframes, strict=True):
        np.testing.assert_allclose(a.descriptor, b.descriptor, atol=1e-4)


def test_decoder_errors_surface_as_they_are(extractor: FeatureExtractor, tmp_path: Path
                                          ) -> None:
    # Decoding runs in a thread of its own: its errors are raised in the caller all the same.
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(VideoError, match="not a readable video"):
        KeyFrameExtractor(extractor).extract(iter_frames(junk))


def test_an_interrupt_stops_the_decoder_thread(extractor: FeatureExtractor) -> None:
    def interrupt(frame: Frame) -> None:
        if frame.number == 30:
            raise KeyboardInterrupt  # Ctrl-C, as the main thread receives it

    with pytest.raises(KeyboardInterrupt):
        KeyFrameExtractor(extractor).extract(iter_frames(BBB), on_frame=interrupt)
    assert not [t for t in threading.enumerate() if t.name == "frameseek-decoder"]


@pytest.mark.parametrize("settings", [{"sample_fps": 0.0}, {"sample_fps": -2.0},
                                      {"samples_per_cluster": 0.0}, {"theta": -0.1}])
def test_extractor_refuses_impossible_settings(extractor: FeatureExtractor, settings: dict
                                               ) -> None:
    with pytest.raises(ValueError, match="sample_fps > 0"):
        KeyFrameExtractor(extractor, **settings)


def test_coverage_holds_for_every_frame_of_a_real_video() -> None:
    """Whatever k-means draws on this CPU, every frame of bikes.mp4 (fast camera moves, where
    frames between two samples can be far from both) ends up at least the match threshold
    similar to a key frame, every sample at least `coverage`; and the plain Algorithm 1 is still
    one argument away."""
    extractor = FeatureExtractor(pooling=rmac.shipped())
    coverage = rmac.MATCH_SIMILARITY + 0.1
    covered = KeyFrameExtractor(extractor, coverage=coverage).extract(iter_frames(BIKES))
    plain = KeyFrameExtractor(extractor).extract(iter_frames(BIKES))
    assert plain.coverage_added == 0
    assert covered.coverage_added == len(covered.keyframes) - len(plain.keyframes)
    assert {k.frame for k in plain.keyframes} <= {k.frame for k in covered.keyframes}

    assert covered.sampled == plain.sampled and covered.gap_samples > 0 == plain.gap_samples
    assert [k.frame for k in covered.keyframes] == sorted(k.frame for k in covered.keyframes)

    numbers = set(sampled_frames(BIKES))
    frames = extractor.transform(np.stack([f.rgb(224, 224) for f in iter_frames(BIKES)]))
    keyframes = np.stack([k.descriptor for k in covered.keyframes])
    similarity = (frames.descriptors @ keyframes.T).max(axis=1)
    assert (similarity[sorted(numbers)] >= coverage - 1e-3).all()
    assert (similarity >= rmac.MATCH_SIMILARITY).all(), np.flatnonzero(
        similarity < rmac.MATCH_SIMILARITY)
    # Every sample's time lies in some key frame's segments.
    spans = [s for k in covered.keyframes for s in k.segments]
    assert all(any(a <= t < b for a, b in spans) for t in np.asarray(sorted(numbers)) / 25)


class BatchRecorder(FeatureExtractor):
    """The real extractor, noting how many images each `transform` (the extra samples') gets."""

    def __init__(self) -> None:
        super().__init__(pooling=rmac.shipped())
        self.batches: list[int] = []

    def transform(self, images: np.ndarray) -> Features:
        self.batches.append(len(images))
        return super().transform(images)


def test_gaps_are_closed_in_full_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open gaps wait for a batch's worth before their middles go through the CNN (a forward at
    batch 1 costs about twice as much per image); only the video's end flushes smaller ones, one
    a bisection round. Held back or not (GAP_BYTES 0 closes them at once), the same frames are
    embedded."""
    coverage = rmac.MATCH_SIMILARITY + 0.1
    gathered = BatchRecorder()
    result = KeyFrameExtractor(gathered, coverage=coverage).extract(iter_frames(BBB))
    assert sum(gathered.batches) == result.gap_samples > 3 * gathered.batch_size
    # 2 samples a second of 24 fps: 11 frames a gap, halved at most 4 times; and the tail's end.
    assert len([n for n in gathered.batches if n % gathered.batch_size]) <= 1 + 4

    monkeypatch.setattr(keyframes, "GAP_BYTES", 0)
    at_once = BatchRecorder()
    unbatched = KeyFrameExtractor(at_once, coverage=coverage).extract(iter_frames(BBB))
    # The same frames, but for a gap whose ends' similarity lies within rounding of `coverage`
    # (a batch of other images can round the CNN's output differently).
    assert abs(unbatched.gap_samples - result.gap_samples) <= result.gap_samples // 10
    assert len(at_once.batches) > len(gathered.batches)


def test_coverage_cannot_be_combined_with_the_cheaper_clustering(extractor: FeatureExtractor
                                                                 ) -> None:
    with pytest.raises(ValueError, match="cluster_size"):
        KeyFrameExtractor(extractor, cluster_size=112, coverage=0.7)
