"""`frameseek eval recurring` on a real video in which one picture plays twice."""

from __future__ import annotations

import json
from pathlib import Path

from frameseek.cli import main
from frameseek.eval.recurring import pictures


def test_the_truth_of_a_picture_shown_twice_is_two_stretches(recurring: Path,
                                                             tmp_path: Path) -> None:
    found = {round(p.time, 1): p for p in pictures(recurring / "recurring.mp4", tmp_path)}
    assert found[1.0].recurring and len(found[1.0].stretches) == 2  # carphone, at 1 s and 6 s
    (first, second) = found[1.0].stretches
    assert first[0] <= 1.0 <= first[1] and second[0] <= 6.0 <= second[1]
    assert not found[3.0].recurring  # bikes, shown once
    assert all(p.file.exists() for p in found.values())


def test_recurring_moments_are_listed_and_true(recurring: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "recurring.mp4").symlink_to(recurring / "recurring.mp4")
    out = tmp_path / "out"
    assert main(["eval", "recurring", "--corpus", str(corpus), "--index",
                 str(recurring / "index"), "--out", str(out)]) == 0
    results = json.loads((out / "recurring-results.json").read_text())
    assert results["recurring"]["queries"] >= 2 and results["all"]["queries"] == 7
    assert results["recurring"]["listed"] >= 0.5 and results["recurring"]["true"] >= 0.5
    assert "| recurring pictures |" in (out / "recurring.md").read_text()
