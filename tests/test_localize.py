"""The exact moment: signature tracks, placement, and refined times through Index and the CLI."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.cli import main
from frameseek.index import VIDEO_MARGIN, Index
from frameseek.localize import (
    FINE_GRID,
    FULL_FRAME,
    GRID,
    TRACKS_FILE,
    UNCHANGED_LEVELS,
    LocalisationSample,
    Track,
    TrackBuilder,
    _unchanged_appearances,
    candidate_placements,
    grey,
    localisation_metrics,
    query_signature,
    segment_of,
)
from frameseek.results import Match, Moment, similarity
from frameseek.video import iter_frames
from tests.conftest import BBB, CARPHONE, frame_at

# Frame 1000 of the bunny clip (41.667 s) is inside a shot with motion; its best key frame is
# frame 972 (40.5 s), more than a second away, so the key frame's own time cannot pass.
QUERY_FRAME = 1000
FPS = 24


@pytest.fixture(scope="module")
def query_frame() -> tuple[np.ndarray, float]:
    return frame_at(BBB, QUERY_FRAME)


def _jpeg(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).save(path, format="JPEG", quality=90)
    return path


def test_refinement_finds_the_frame_and_beats_the_key_frame(sample_index, query_frame):
    rgb, true_time = query_frame
    with Index.open(sample_index) as index:
        top = index.search(rgb)[0]
    assert top.video.endswith(BBB.name)
    assert top.refined
    assert abs(top.time - true_time) <= 2 / FPS
    assert abs(top.frame - QUERY_FRAME) <= 2
    assert abs(top.keyframe_time - true_time) > abs(top.time - true_time) + 0.5
    assert top.segment[0] - 0.5 <= top.time <= top.segment[1] + 0.5


def test_crop_and_brightness_still_localise(sample_index, query_frame):
    rgb, true_time = query_frame
    h, w = rgb.shape[:2]
    crop = rgb[h // 8: h // 8 + int(h * 0.8), w // 10: w // 10 + int(w * 0.8)]
    brighter = np.clip(crop.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    with Index.open(sample_index) as index:
        top = index.search(brighter)[0]
    assert top.refined
    # The targets allow a perturbed query 1 s; a clipped, brightened crop of a moving shot lands
    # a few frames off, still far nearer than its key frame.
    assert abs(top.time - true_time) <= 0.5 < abs(top.keyframe_time - true_time)


def test_no_refine_keeps_the_key_frame_time(sample_index, query_frame):
    rgb, _ = query_frame
    with Index.open(sample_index) as index:
        plain = index.search(rgb, refine=False)
    assert all(not m.refined and m.time == m.keyframe_time and m.frame == m.keyframe_frame
               for m in plain)
    assert all(m.segment[0] <= m.keyframe_time < m.segment[1] for m in plain)


def test_cli_json_keeps_the_contract_and_adds_the_moment(sample_index, query_frame, tmp_path,
                                                         capsys):
    rgb, true_time = query_frame
    image = _jpeg(rgb, tmp_path / "still.jpg")
    assert main(["search", str(image), "--index", str(sample_index), "--json", "--top", "3"]) == 0
    refined = json.loads(capsys.readouterr().out)["results"]
    assert main(["search", str(image), "--index", str(sample_index), "--json", "--top", "3",
                 "--no-refine"]) == 0
    fast = json.loads(capsys.readouterr().out)["results"]
    for result in refined + fast:
        assert {"video", "time", "frame", "distance", "keyframe_time", "keyframe_frame",
                "segment"} <= result.keys()
        assert len(result["segment"]) == 2
    assert abs(refined[0]["time"] - true_time) <= 2 / FPS
    assert refined[0]["keyframe_time"] == fast[0]["keyframe_time"]
    assert [r["time"] for r in fast] == [r["keyframe_time"] for r in fast]
    assert [r["frame"] for r in fast] == [r["keyframe_frame"] for r in fast]


def test_cli_text_shows_the_moment_and_its_key_frame(sample_index, query_frame, tmp_path,
                                                     capsys):
    image = _jpeg(query_frame[0], tmp_path / "still.jpg")
    assert main(["search", str(image), "--index", str(sample_index), "--top", "1"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "00:41.6" in line and "key frame 00:40.5" in line and "segment" in line


def test_index_without_tracks_refines_by_decoding(sample_index, query_frame, tmp_path):
    """An index built before tracks existed: the spans are decoded at query time instead."""
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    for file in copy.glob(TRACKS_FILE + "*"):
        file.unlink()
    rgb, true_time = query_frame
    with Index.open(copy) as index:
        top = index.search(rgb)[0]
    assert top.refined
    assert abs(top.time - true_time) <= 2 / FPS


def test_a_damaged_thumbnail_still_refines_as_a_whole_frame(sample_index, query_frame, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    rgb, true_time = query_frame
    with sqlite3.connect(copy / "frameseek.sqlite") as db:
        db.execute("UPDATE keyframes SET thumbnail = ?", (b"not a jpeg",))
    with Index.open(copy) as index:
        top = index.search(rgb)[0]
    assert top.video.endswith(BBB.name) and top.refined
    assert abs(top.time - true_time) <= 2 / FPS


def test_rerunning_index_gives_an_old_index_its_tracks(sample_index, sample_videos, tmp_path):
    """Unchanged videos are not re-indexed, but those without a track get one (decode only)."""
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    for file in copy.glob(TRACKS_FILE + "*"):
        file.unlink()
    with Index.open(copy) as index:
        before = {v.path: v.id for v in index.videos()}
        report = index.add([sample_videos])
        assert sorted(report.unchanged) == sorted(before) and not report.added
        assert {v.path: v.id for v in index.videos()} == before  # nothing re-indexed
        for video in index.videos():
            track = index.tracks.get(video.path, video.content_id)
            assert track is not None and len(track) >= 8 * video.duration - 2


def test_removing_a_video_removes_its_track(sample_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    with Index.open(copy) as index:
        video = next(v for v in index.videos() if v.path.endswith(BBB.name))
        assert index.tracks.get(video.path, video.content_id) is not None
        index.remove(video.path)
        assert index.tracks.get(video.path, video.content_id) is None


def test_track_samples_eight_a_second_and_round_trips(sample_videos):
    builder = TrackBuilder()
    frames = sum(1 for _ in builder.observe(iter_frames(sample_videos / "bikes.mp4")))
    track = builder.track()
    assert frames == 250  # frames pass through untouched
    assert len(track) == 80  # 10 s at 25 fps, on an 8 per second grid
    assert np.all(np.diff(track.times) > 0.1) and np.all(np.diff(track.times) < 0.17)
    again = Track.from_bytes(track.to_bytes())
    assert np.array_equal(again.signatures, track.signatures)
    assert np.array_equal(again.frames, track.frames)
    assert np.array_equal(again.times, track.times)


def test_placement_finds_a_crop_and_a_frame_inside_a_page(query_frame):
    frame = grey(query_frame[0])  # 180 × 320
    crop = frame[30:150, 48:256]
    best = max(candidate_placements(crop, frame), key=lambda p: p.score)
    assert best.x == pytest.approx(48 / 320, abs=0.03)
    assert best.y == pytest.approx(30 / 180, abs=0.03)
    assert best.width == pytest.approx(208 / 320, abs=0.04)
    page = np.full((400, 520), 230.0, dtype=np.float32)
    page[100:280, 150:470] = frame
    inset = max(candidate_placements(page, frame), key=lambda p: p.score)
    cells, covered = query_signature(page, inset)
    whole, _ = query_signature(frame, FULL_FRAME)
    assert covered.sum() > 0.8 * covered.size
    # Scales are tried in steps of 0.05, so the inset is placed to within a few percent.
    assert np.corrcoef(cells[covered], whole[covered])[0, 1] > 0.95


def test_segment_of():
    spans = [(1.0, 2.0), (5.0, 6.0)]
    assert segment_of(5.5, spans) == (5.0, 6.0)
    assert segment_of(2.3, spans) == (1.0, 2.3)
    assert segment_of(4.8, spans) == (4.8, 6.0)


def test_localisation_metrics():
    samples = [
        LocalisationSample(True, 10.0, 11.5, 10.04, 0.010),
        LocalisationSample(True, 20.0, 20.7, 20.0, 0.030),
        LocalisationSample(False, 30.0, 3.0, 3.0, 0.020),
    ]
    table = localisation_metrics(samples)
    assert table["key frame"]["within_1s"] == pytest.approx(1 / 3)
    assert table["key frame"]["within_2s"] == pytest.approx(2 / 3)
    assert table["refined"]["within_0.5s"] == pytest.approx(2 / 3)
    assert table["refined"]["median_error_s"] == pytest.approx(0.02)
    assert table["refined"]["added_ms_median"] == pytest.approx(20.0)
    assert table["key frame"]["added_ms_median"] == 0.0


def test_query_bytes_and_arrays_give_the_same_moment(sample_index, query_frame):
    rgb, _ = query_frame
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    with Index.open(sample_index) as index:
        assert index.search(buffer.getvalue(), top=1)[0].frame == index.search(rgb, top=1)[0].frame


def test_a_picture_shown_twice_is_answered_with_both_moments(recurring: Path) -> None:
    query = [frame.rgb() for frame in iter_frames(CARPHONE)][30]  # at 1.0 s and at 6.0 s
    with Index.open(recurring / "index") as index:
        answer = index.answer(query)
    assert [v.video for v in answer.videos] == [str(recurring / "recurring.mp4")]
    video = answer.videos[0]
    assert video.appearances == 2
    first, second = video.moments  # in time order
    assert abs(first.time - 1.0) <= 0.5 and abs(second.time - 6.0) <= 0.5
    assert first.start <= first.time <= first.end < second.start <= second.time <= second.end
    assert video.score == max(m.similarity for m in video.moments) >= 0.9
    # The person in the car moves: the picture itself, unchanged, lasts a track entry or two
    # each time, not the 2 s of the shot, nor the bikes between.
    assert 0.0 < video.seconds <= 1.0


def test_videos_in_the_cli_json_name_every_moment(recurring: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    query = _jpeg([frame.rgb() for frame in iter_frames(CARPHONE)][30], tmp_path / "q.jpg")
    assert main(["search", str(query), "--index", str(recurring / "index"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["results"][0]) == {  # the key-frame contract is unchanged
        "video", "time", "frame", "distance", "keyframe_time", "keyframe_frame", "segment",
        "refined", "inliers", "region"}
    (video,) = answer["videos"]
    assert set(video) == {"video", "score", "appearances", "seconds", "moments"}
    assert video["appearances"] == len(video["moments"]) == 2
    assert set(video["moments"][0]) == {"time", "frame", "similarity", "start", "end"}
    assert [round(m["time"]) for m in video["moments"]] == [1, 6]


def test_a_query_that_matches_nothing_has_no_videos(recurring: Path) -> None:
    unrelated = frame_at(BBB, 300)[0]
    with Index.open(recurring / "index") as index:
        answer = index.answer(unrelated)
        assert index.verdict(answer.results).match is False
    assert answer.videos == []


def test_videos_far_below_the_best_are_not_listed(sample_index: Path, query_frame) -> None:
    """With no similarity floor at all, the bikes video's key frames still match nothing of a
    bunny frame: its best lies far more than VIDEO_MARGIN below the bunny's."""
    rgb, _ = query_frame
    with Index.open(sample_index) as index:
        unfloored = index.search(rgb, top=100)
        answer = index.answer(rgb, min_similarity=-1.0)
    assert {Path(m.video).name for m in unfloored} == {BBB.name, "bikes.mp4"}
    assert [Path(v.video).name for v in answer.videos] == [BBB.name]
    bikes = max(similarity(m.distance) for m in unfloored if m.video.endswith("bikes.mp4"))
    assert bikes < answer.videos[0].score - VIDEO_MARGIN


def test_only_frames_showing_the_picture_unchanged_are_its_appearances() -> None:
    """The query covers the left half of the frame. Its picture, at rows 10-14 (the best moment
    found), comes back at rows 40-44 with the right half changed, and brightened by more than
    UNCHANGED_LEVELS at 60-64. A weaker key frame's moment at row 82 shows another picture.
    The appearances: 10-14 and 40-44, the latter in no key frame's segment."""
    rng = np.random.default_rng(0)
    shape = (FINE_GRID[1], FINE_GRID[0])
    half = shape[1] // 2
    picture = rng.integers(40, 200, shape).astype(np.float32)
    thumbnails = rng.integers(0, 256, (100, *shape)).astype(np.float32)
    for rows, offset in ((slice(40, 45), 0), (slice(60, 65), 3 * UNCHANGED_LEVELS)):
        thumbnails[rows, :, :half] = picture[:, :half] + offset
    thumbnails[10:15] = picture
    thumbnails += rng.normal(0, 1, thumbnails.shape)
    track = Track(np.arange(100, dtype=np.int32), np.arange(100) / 8.0,
                  np.clip(thumbnails, 0, 255).astype(np.uint8))
    covered = np.zeros((1, GRID[1], GRID[0]), dtype=bool)
    covered[0, :, : GRID[0] // 2] = True
    cells = track.signatures[12][None]
    best = Match("v.mp4", 1.5, 12, 0.3, 7, [(1.0, 2.0)], 1.5, 12, (1.0, 2.0))
    other = Match("v.mp4", 10.2, 82, 0.5, 8, [(10.0, 10.6)], 10.2, 82, (10.0, 10.6))
    found = [Moment(1.5, 12, 0.9, 1.0, 2.0, 7), Moment(82 / 8, 82, 0.8, 10.0, 10.6, 8)]
    kept, recurrence = _unchanged_appearances(track, cells, covered, found, [best, other])
    # Each stretch runs from its first unchanged frame to the next frame of the track.
    assert kept == replace(found[0], start=10 / 8, end=15 / 8)
    assert (recurrence.start, recurrence.end) == (40 / 8, 45 / 8)
    assert recurrence.frame == 42  # the stretch's middle
    assert recurrence.similarity == 0.8  # no stronger than the moments found


def test_a_track_written_before_fine_thumbnails_reads_with_the_same_signatures() -> None:
    rng = np.random.default_rng(1)
    signatures = rng.integers(0, 256, (5, GRID[1], GRID[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, frames=np.arange(5, dtype=np.int32), times=np.arange(5) / 8.0,
                        deltas=np.diff(signatures, axis=0, prepend=np.zeros_like(signatures[:1])))
    track = Track.from_bytes(buffer.getvalue())
    assert track.thumbnails.shape == (5, FINE_GRID[1], FINE_GRID[0])
    assert np.array_equal(track.signatures, signatures)
