"""The Index facade on a real index: search finds the shot, incremental add/remove, config."""

from __future__ import annotations

import shutil
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from frameseek.index import ConfigMismatch, Index, IndexConfig, find_videos
from frameseek.keyframes import HISTOGRAM_SIZE, color_histogram
from frameseek.rmac import MATCH_SIMILARITY
from frameseek.verify import RANK_INLIERS
from frameseek.video import iter_frames
from tests.conftest import BBB, BIKES, SAMPLES, sampled_frames
from tests.test_video import write_video

CARPHONE = Path(__file__).parent / "data" / "carphone.mp4"
CUT = 10.0  # a hard cut: a histogram distance this many times the video's mean distance


def shots(video: Path) -> list[tuple[int, int]]:
    """The video's shots as [first, end) frame numbers, found from its own colour histograms."""
    histograms = np.stack([color_histogram(f.rgb(HISTOGRAM_SIZE, HISTOGRAM_SIZE))
                           for f in iter_frames(video)])
    distances = np.linalg.norm(np.diff(histograms, axis=0), axis=1)
    starts = [0, *(np.flatnonzero(distances > CUT * distances.mean()) + 1), len(histograms)]
    return [(int(a), int(b)) for a, b in pairwise(starts)]


def frames_of(video: Path, numbers: set[int]) -> dict[int, np.ndarray]:
    return {f.number: f.rgb() for f in iter_frames(video) if f.number in numbers}


def keyframe_frames(index: Index, video: Path) -> list[int]:
    """Frame numbers of the key frames the index holds for a video (matched by file name)."""
    ids = [int(i) for i in index.store.vectors().ids]
    return [k.frame for k in index.store.keyframes(ids) if Path(k.video).name == video.name]


@pytest.fixture
def index_copy(sample_index: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(sample_index, target)
    return target


def test_shots_of_the_fixtures_are_found() -> None:
    # The bunny clip's 14 shots (film 60-120 s; the eval corpus finds the same cuts on the 720p
    # film), so the shot test below checks against real shot boundaries.
    bunny = shots(BBB)
    assert [a for a, _ in bunny] == [0, 16, 91, 226, 271, 323, 373, 479, 714, 754, 954, 1054,
                                     1264, 1391]
    assert len(shots(BIKES)) >= 3


@pytest.mark.parametrize("video", [BBB, BIKES], ids=["bunny", "bikes"])
def test_a_frame_finds_its_video_and_shot(sample_index: Path, video: Path) -> None:
    """The middle frame of every shot (never a key frame itself) finds its own video first, with
    a key frame from the same shot."""
    with Index.open(sample_index) as index:
        keyframes = set(keyframe_frames(index, video))
        queries = {}
        for first, end in shots(video):
            number = (first + end) // 2
            while number in keyframes:
                number += 1
            queries[number] = (first, end)
        pixels = frames_of(video, set(queries))
        for number, (first, end) in queries.items():
            best = index.search(pixels[number], top=3)[0]
            assert Path(best.video).name == video.name, (number, best)
            assert first <= best.keyframe_frame < end, (
                f"frame {number} (shot {first}-{end}) matched key frame {best.keyframe_frame}")
            assert first <= best.frame < end  # the moment found, too


def test_matches_are_ranked_and_consistent(sample_index: Path) -> None:
    with Index.open(sample_index) as index:
        matches = index.search(SAMPLES / "query.jpg", top=5)
        assert len(matches) == 5
        distances = [m.distance for m in matches]
        # Key frames verified geometrically come first (frameseek/verify.py), then by distance.
        verified = [m for m in matches if (m.inliers or 0) >= RANK_INLIERS]
        assert matches[:len(verified)] == verified
        rest = distances[len(verified):]
        assert rest == sorted(rest)
        for match in matches:
            fps = 24 if Path(match.video).name == BBB.name else 25
            assert match.keyframe_time == pytest.approx(match.keyframe_frame / fps, abs=1e-6)
            assert match.time == pytest.approx(match.frame / fps, abs=1e-6)
            assert any(a <= match.keyframe_time < b for a, b in match.segments)
        # The sample query is frame 803 of the bunny clip, in the shot of frames 754-953.
        assert Path(matches[0].video).name == BBB.name
        assert 754 <= matches[0].keyframe_frame < 954
        # The query as a path, a PIL image or an array is the same query.
        image = Image.open(SAMPLES / "query.jpg")
        for same in (image, np.asarray(image.convert("RGB"))):
            again = index.search(same, top=5)
            assert [m.keyframe_id for m in again] == [m.keyframe_id for m in matches]
            np.testing.assert_allclose([m.distance for m in again], distances, atol=1e-3)


def test_a_query_from_outside_the_collection_is_no_match(sample_index: Path) -> None:
    """Every sampled frame of an indexed video is a match, by the coverage guarantee, whatever
    k-means chose on this CPU; frames of a video that is not indexed (the carphone clip) and a
    drawn slide are "no match"; a caller may ask for a stricter threshold."""
    outside = frames_of(CARPHONE, {10, 60, 110})
    slide = Image.new("RGB", (960, 540), (250, 250, 245))
    draw = ImageDraw.Draw(slide)
    draw.rectangle((0, 0, 960, 80), fill=(30, 60, 120))
    draw.text((40, 30), "Lecture 3: image retrieval", fill=(255, 255, 255))
    draw.ellipse((650, 200, 880, 430), outline=(200, 30, 30), width=6)
    with Index.open(sample_index) as index:
        bikes = frames_of(BIKES, set(sampled_frames(BIKES)))
        for number, query in [("query.jpg", SAMPLES / "query.jpg"), *bikes.items()]:
            verdict = index.verdict(index.search(query, refine=False))
            assert verdict.match and verdict.threshold == MATCH_SIMILARITY, (number, verdict)
        for query in (*outside.values(), np.asarray(slide)):
            verdict = index.verdict(index.search(query, refine=False))
            assert not verdict.match and verdict.similarity < MATCH_SIMILARITY, verdict
        matches = index.search(SAMPLES / "query.jpg", refine=False)
        strict = index.verdict(matches, min_similarity=0.999)
        assert not strict.match and strict.similarity == index.verdict(matches).similarity
        assert index.verdict([]).match is False


def test_info_counts_what_was_indexed(sample_index: Path) -> None:
    with Index.open(sample_index) as index:
        info = index.info()
        videos = {Path(v.path).name: v for v in index.videos()}
    assert info["videos"] == 2
    assert {name: v.frames for name, v in videos.items()} == {BBB.name: 1440, BIKES.name: 250}
    assert info["frames"] == 1690
    assert info["keyframes"] == sum(v.keyframes for v in videos.values())
    assert info["compression_ratio"] == pytest.approx(1 - info["keyframes"] / 1690, abs=1e-4)
    assert info["coverage_keyframes"] == sum(v.coverage_keyframes for v in videos.values())
    for v in videos.values():
        # Key frames are a small share of frames, but every video has at least one; those the
        # coverage guarantee added are among them (the count depends on k-means' draw).
        assert 1 <= v.keyframes < v.frames / 10
        assert 0 <= v.coverage_keyframes < v.keyframes


def test_incremental_add_replace_and_remove(index_copy: Path, tmp_path: Path) -> None:
    clip = tmp_path / "videos" / "carphone.mp4"
    clip.parent.mkdir()
    shutil.copy(CARPHONE, clip)
    query = frames_of(clip, {50})[50]  # a frame of the new clip

    with Index.open(index_copy) as index:
        before = index.info()
        assert all(Path(m.video).name != clip.name for m in index.search(query, top=12))

        report = index.add([clip])
        assert [v.path for v in report.added] == [str(clip)] and not report.skipped
        assert report.frames == 120
        after = index.info()
        assert after["videos"] == 3
        assert after["frames"] == before["frames"] + 120
        assert after["keyframes"] == before["keyframes"] + report.keyframes
        assert Path(index.search(query, top=1)[0].video) == clip
        assert len(keyframe_frames(index, clip)) == report.keyframes >= 1

        # Unchanged content is recognised and not analysed again.
        clip.touch()
        report = index.add([clip.parent])
        assert report.unchanged == [str(clip)] and not report.added
        assert index.info()["keyframes"] == after["keyframes"]

        # New content at the same path replaces the old entries.
        head = [f.rgb() for f, _ in zip(iter_frames(CARPHONE), range(48), strict=False)]
        write_video(clip, "libx264", head, list(range(48)), Fraction(1, 30), Fraction(30))
        report = index.add([clip])
        assert len(report.added) == 1 and report.added[0].frames == 48
        replaced = index.info()
        assert replaced["videos"] == 3
        assert replaced["frames"] == before["frames"] + 48
        assert replaced["keyframes"] == before["keyframes"] + report.keyframes
        # Only the new clip's key frames remain (ids may be reused, frame numbers tell).
        assert len(index.store.vectors()) == replaced["keyframes"]
        frames = keyframe_frames(index, clip)
        assert len(frames) == report.keyframes and max(frames) < 48
        assert Path(index.search(query, top=1)[0].video) == clip

        assert index.remove(clip)
        assert not index.remove(clip)
        assert index.info()["keyframes"] == before["keyframes"]
        assert len(index.store.vectors()) == before["keyframes"]
        assert all(Path(m.video) != clip for m in index.search(query, top=12))

    # Everything above was written to disk: a fresh open sees the same.
    with Index.open(index_copy) as index:
        assert {Path(v.path).name for v in index.videos()} == {BBB.name, BIKES.name}


def test_a_different_query_pipeline_is_refused(sample_index: Path) -> None:
    with pytest.raises(ConfigMismatch, match="input_size") as caught:
        Index.open(sample_index, IndexConfig(input_size=320))
    assert "rebuild the index" in str(caught.value)
    # Key-frame parameters do not change the vectors: an index accepts videos added with others.
    with Index.open(sample_index, IndexConfig(theta=2.0, sample_fps=1.0)) as index:
        assert index.config.theta == 2.0


def test_find_videos_walks_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    for name in ("a/one.mp4", "a/deeper/two.MKV", "a/notes.txt", "a/deeper/three.webm"):
        (tmp_path / name).write_bytes(b"x")
    found = find_videos([tmp_path / "a", tmp_path / "a" / "one.mp4"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/deeper/three.webm", "a/deeper/two.MKV", "a/one.mp4"]
