"""Clip queries on the real sample index: re-encoded, smaller, at another frame rate, joined
from two sources, from outside the collection, and clips that cannot be queries."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.cli import main
from frameseek.clips import ClipError, featureless, sample_clip
from frameseek.index import Index
from frameseek.video import iter_frames
from tests.conftest import BBB, BIKES, CARPHONE
from tests.robustness.test_bad_videos import write_audio_only
from tests.test_video import write_video


def rescaled(video: Path, start: float, end: float, size: tuple[int, int], every: int = 1
             ) -> list[np.ndarray]:
    frames = [f.rgb() for f in iter_frames(video) if start <= f.time < end][::every]
    return [np.asarray(Image.fromarray(rgb).resize(size)) for rgb in frames]


def encode(path: Path, images: list[np.ndarray], fps: int) -> Path:
    write_video(path, "mpeg4", images, list(range(len(images))), Fraction(1, fps),
                Fraction(fps), {"b": "1000000"})
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    # 25-30 s of the bunny clip at half size and half the frame rate (12 fps).
    encode(folder / "bunny.mp4", rescaled(BBB, 25, 30, (320, 180), every=2), 12)
    # 2-5 s of bikes, then 40-43 s of the bunny clip, at 25 fps.
    encode(folder / "joined.mp4", rescaled(BIKES, 2, 5, (320, 180))
           + rescaled(BBB, 40, 43, (320, 180)), 25)
    return folder


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))


def test_a_smaller_slower_re_encoded_clip_is_found_where_it_was_cut(sample_index: Path,
                                                                    clips: Path) -> None:
    with Index.open(sample_index) as index:
        answer = index.search_clip(clips / "bunny.mp4")
    assert answer.match is True and answer.samples == 10
    best = answer.segments[0]
    assert best.video.endswith(BBB.name)
    assert iou((best.start, best.end), (25.0, 30.0)) >= 0.8
    assert best.query_start == 0.0 and best.end - best.start == best.query_end - best.query_start


def test_a_clip_joining_two_sources_answers_both_segments(sample_index: Path,
                                                          clips: Path) -> None:
    with Index.open(sample_index) as index:
        answer = index.search_clip(clips / "joined.mp4")
    found = {Path(s.video).name: s for s in answer.segments}
    assert set(found) == {BIKES.name, BBB.name}
    assert iou((found[BIKES.name].start, found[BIKES.name].end), (2.0, 5.0)) >= 0.6
    assert iou((found[BBB.name].start, found[BBB.name].end), (40.0, 43.0)) >= 0.6
    assert found[BIKES.name].query_end <= found[BBB.name].query_start + 0.5  # in clip order


def test_a_clip_from_outside_the_collection_is_no_match(sample_index: Path) -> None:
    with Index.open(sample_index) as index:
        answer = index.search_clip(CARPHONE)
    assert answer.match is False and answer.segments == []


def test_black_frames_are_no_evidence_of_a_source(tmp_path: Path) -> None:
    """A video that opens on black, indexed; a clip that fades through black into another
    video's frames: the black samples alone would agree on the opening (a segment of two), so
    they vote for nothing and the clip is no match."""
    size = (176, 144)
    black = [np.zeros((size[1], size[0], 3), np.uint8)] * 25
    indexed = encode(tmp_path / "opens-on-black.mp4",
                     black + [f.rgb() for f in iter_frames(CARPHONE)], 25)
    clip = encode(tmp_path / "fade.mp4", rescaled(BBB, 10, 12, size) + black * 2
                  + rescaled(BBB, 20, 22, size), 25)
    with Index.create(tmp_path / "index") as index:
        assert len(index.add([indexed]).added) == 1
        answer = index.search_clip(clip)
    assert answer.match is False and answer.segments == []
    assert featureless(black[0]) and not featureless(rescaled(BBB, 10, 10.1, size)[0])


def test_the_cli_answers_a_clip_in_json_and_writes_nothing(
        sample_index: Path, clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in sample_index.iterdir() if p.is_file()}
    assert main(["search", str(clips / "bunny.mp4"), "--index", str(sample_index),
                 "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["match"] is True and answer["query"] == str(clips / "bunny.mp4")
    assert set(answer["segments"][0]) == {"video", "start", "end", "query_start", "query_end",
                                          "score", "samples"}
    after = {p.name: p.stat().st_mtime_ns for p in sample_index.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if not k.endswith(("-shm", "-wal"))} == {
        k: v for k, v in before.items() if not k.endswith(("-shm", "-wal"))}


@pytest.mark.parametrize("make, says", [
    (lambda path: write_audio_only(path), "no video"),
    (lambda path: path.write_bytes(b"\x00not a video" * 100), ""),
])
def test_a_clip_that_cannot_be_a_query_is_one_line(sample_index: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   make, says: str) -> None:
    clip = tmp_path / "bad.mp4"
    make(clip)
    assert main(["search", str(clip), "--index", str(sample_index)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("frameseek: ") and error.count("\n") == 1 and says in error


def test_a_clip_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ClipError, match="clip queries take at most 2 s"):
        sample_clip(BIKES, max_seconds=2.0)
