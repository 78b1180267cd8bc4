"""`frameseek eval clips` on the sample videos and their real index: clips cut and re-encoded
by ffmpeg, searched, scored by kind."""

from __future__ import annotations

import json
from pathlib import Path

from frameseek.cli import main
from frameseek.eval.clips import JOINED, KINDS, OUTSIDE, OUTSIDE_PER_VIDEO, iou
from frameseek.index import Index


def test_clips_are_cut_searched_and_scored_by_kind(sample_videos: Path, sample_index: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["eval", "clips", "--corpus", str(sample_videos), "--index", str(sample_index),
                 "--out", str(out)]) == 0
    results = json.loads((out / "clips-results.json").read_text())
    made = json.loads((out / "clips" / "clips.json").read_text())
    assert [c["kind"] for c in made] == [*list(KINDS)[:2], JOINED]  # two videos, one pair
    for clip in made:
        for source in clip["sources"]:
            assert 3.0 <= source["end"] - source["start"] <= 10.0
    assert sum(row["clips"] for row in results["kinds"].values()) == 3
    assert results["inside_found"] >= 2 / 3  # the sample clips are found where they were cut
    assert "| half size | 1 |" in (out / "clips.md").read_text()


def test_videos_the_index_does_not_hold_give_outside_clips(sample_videos: Path, tmp_path: Path
                                                           ) -> None:
    """An index of bikes alone makes the bunny clip, which it does not hold, an outside video:
    its clips must be answered "no match", and they are."""
    with Index.create(tmp_path / "index") as index:
        assert len(index.add([sample_videos / "bikes.mp4"]).added) == 1
    out = tmp_path / "out"
    assert main(["eval", "clips", "--corpus", str(sample_videos), "--index",
                 str(tmp_path / "index"), "--out", str(out)]) == 0
    made = json.loads((out / "clips" / "clips.json").read_text())
    assert [c["kind"] for c in made] == [next(iter(KINDS))] + [OUTSIDE] * OUTSIDE_PER_VIDEO
    results = json.loads((out / "clips-results.json").read_text())
    assert results["outside_no_match"] == results["outside_clips"] == OUTSIDE_PER_VIDEO
    report = (out / "clips.md").read_text()
    assert f"no match\": {OUTSIDE_PER_VIDEO} of {OUTSIDE_PER_VIDEO}." in report


def test_iou() -> None:
    assert iou((0, 10), (5, 15)) == 1 / 3 and iou((0, 1), (2, 3)) == 0.0
