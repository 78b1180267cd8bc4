"""Corpus builder: shot splitting, clip cutting and the manifest; nothing is downloaded."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from frameseek.eval import corpus
from frameseek.eval.corpus import (
    CorpusError,
    Entry,
    detect_cuts,
    histogram_distances,
    plan_clips,
    scan_video,
    summarize,
    write_manifest,
)
from frameseek.eval.run import corpus_videos
from frameseek.keyframes import color_histogram

FIXTURE = Path(__file__).parents[2] / "samples" / "videos" / "big_buck_bunny_60s.mp4"
# Shot starts in the fixture (film 60-120 s); the same cuts are found, 1440 frames later, when
# the full 720p film is scanned, so they do not depend on the fixture's low resolution.
Scan = tuple[list[NDArray[np.uint8]], NDArray[np.float64], float]
FIXTURE_CUTS = [16, 91, 226, 271, 323, 373, 479, 714, 754, 954, 1054, 1264, 1391]


def solid(colour: tuple[int, int, int], n: int) -> list[NDArray[np.uint8]]:
    return [np.full((36, 64, 3), colour, dtype=np.uint8) for _ in range(n)]


def distances_of(frames: list[NDArray[np.uint8]]) -> NDArray[np.float64]:
    return histogram_distances(np.stack([color_histogram(f) for f in frames]))


@pytest.fixture(scope="module")
def fixture_scan() -> Scan:
    return scan_video(FIXTURE)


def test_histogram_is_normalised_and_distance_bounded() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
    hist = color_histogram(frame)
    assert hist.shape == (512,)
    assert hist.sum() == pytest.approx(1.0)
    d = distances_of([frame, frame, *solid((255, 0, 0), 1), *solid((0, 0, 255), 1)])
    assert d[0] == 0.0
    assert d[2] == pytest.approx(1.0)


def test_detect_cuts_on_synthetic_shots() -> None:
    frames = solid((200, 30, 30), 20) + solid((30, 200, 30), 30) + solid((30, 30, 200), 25)
    assert detect_cuts(distances_of(frames)) == [20, 50]


def test_a_flash_gives_one_cut_not_two() -> None:
    frames = solid((200, 30, 30), 20) + solid((255, 255, 255), 1) + solid((200, 30, 30), 20)
    assert detect_cuts(distances_of(frames)) == [20]


def test_detect_cuts_on_real_footage(fixture_scan: Scan) -> None:
    thumbs, times, duration = fixture_scan
    assert len(thumbs) == len(times) == 1440
    assert duration == pytest.approx(60.0)
    hists = np.stack([color_histogram(t) for t in thumbs])
    assert detect_cuts(histogram_distances(hists)) == FIXTURE_CUTS


def test_plan_clips_merges_short_shots_at_cut_points() -> None:
    times = np.arange(1440) / 24
    clips = plan_clips(FIXTURE_CUTS, times, 60.0, target_s=5.0, min_s=5.0)
    assert clips[0][0] == 0 and clips[-1][1] == 1440
    assert all(a[1] == b[0] for a, b in pairwise(clips))
    assert {start for start, _ in clips[1:]} <= set(FIXTURE_CUTS)
    assert all((end - start) / 24 >= 5.0 for start, end in clips)
    # 57.96 s -> 60 s is only 2 s long, so the last shot joins its neighbour.
    assert clips[-1] == (1264, 1440)


def test_plan_clips_without_cuts_keeps_one_clip() -> None:
    assert plan_clips([], np.arange(100) / 25, 4.0) == [(0, 100)]


def test_cut_clip_is_frame_exact(
    tmp_path: Path, fixture_scan: Scan
) -> None:
    thumbs, times, _ = fixture_scan
    start, end = 226, 271  # one whole shot, 9.42 s -> 11.29 s
    clip = tmp_path / "clip.mp4"
    corpus._cut_clip(FIXTURE, clip, (times[start - 1] + times[start]) / 2, end - start)
    corpus._verify_clip(clip, thumbs, start, end)
    duration, frames, width, height = corpus._probe(clip)
    assert duration == pytest.approx((end - start) / 24)
    assert (frames, width, height) == (end - start, 640, 360)
    assert scan_video(clip)[1][0] == 0.0  # outputs start at t=0 whatever the seek
    # The same file claimed one frame earlier must fail the boundary check.
    with pytest.raises(CorpusError):
        corpus._verify_clip(clip, thumbs, start - 1, end - 1)


def entry(name: str, role: str, duration: float) -> Entry:
    return Entry(file=f"videos/{name}.mp4", registry="debian", source="opencv-doc",
                 version="4.6.0+dfsg-12", original_path=f"/usr/share/{name}.avi",
                 licence="BSD-3-Clause", attribution="OpenCV", duration_s=duration, frames=10,
                 width=640, height=360, role=role, source_start_s=0.0, source_end_s=duration)


def test_manifest_is_a_json_list_of_entries(tmp_path: Path) -> None:
    entries = [entry("vtest", "query", 79.5), entry("tree", "distractor", 29.6)]
    path = write_manifest(entries, tmp_path)
    assert path == tmp_path / "manifest.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert [r["file"] for r in rows] == ["videos/vtest.mp4", "videos/tree.mp4"]
    assert set(rows[0]) == {
        "file", "registry", "source", "version", "original_path", "licence", "attribution",
        "duration_s", "frames", "width", "height", "role", "source_start_s", "source_end_s",
    }
    assert Entry(**rows[1]) == entries[1]


def test_outside_videos_are_listed_but_not_indexed_by_the_eval(tmp_path: Path) -> None:
    entries = [entry(name, role, 10.0) for name, role in
               (("vtest", "query"), ("tree", "distractor"), ("anim", "outside"))]
    write_manifest(entries, tmp_path)
    assert [v.role for v in corpus_videos(tmp_path)] == ["query", "distractor", "outside"]
    assert [v.path.name for v in corpus_videos(tmp_path, indexed_only=True)] == [
        "vtest.mp4", "tree.mp4"]


def test_summary_counts_roles_and_failures() -> None:
    text = summarize([entry("vtest", "query", 90.0), entry("tree", "distractor", 30.0),
                      entry("anim", "outside", 0.0)], ["pampi"])
    assert "3 videos, 2.0 min (1 query, 1 distractor, 1 outside)" in text
    assert "opencv-doc (3)" in text
    assert "failed: pampi" in text
