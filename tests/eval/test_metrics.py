"""The report's figures on hand-made rankings."""

from __future__ import annotations

import pytest

from frameseek.eval.methods import Result
from frameseek.eval.metrics import (
    Outcome,
    by_perturbation,
    paper_accuracy,
    reciprocal_rank,
    summarise,
    time_error,
)
from frameseek.eval.queries import Query
from frameseek.eval.report import ordering_differences


def query(video: str = "a.mp4", time: float = 10.0, kind: str = "none") -> Query:
    return Query("q", "plain", "q.jpg", video, time, 240, {"kind": kind})


def at(video: str, time: float) -> Result:
    return Result(video, time, time, time)


def test_paper_accuracy_counts_results_from_the_query_video() -> None:
    outcome = Outcome(query(), [at("a.mp4", 9), at("b.mp4", 1), at("a.mp4", 30),
                                at("c.mp4", 2), at("b.mp4", 3)], 0.001, 0.2)
    assert paper_accuracy(outcome, 1) == 1.0
    assert paper_accuracy(outcome, 5) == pytest.approx(2 / 5)
    assert paper_accuracy(outcome, 12) == pytest.approx(2 / 5)  # only 5 were retrieved
    assert reciprocal_rank(Outcome(query(), [at("b.mp4", 1), at("a.mp4", 9)], 0, 0)) == 0.5
    assert reciprocal_rank(Outcome(query(), [at("b.mp4", 1)], 0, 0)) == 0.0


def test_time_error_is_zero_inside_a_shot_span_and_the_gap_outside() -> None:
    assert time_error(query(time=10), at("a.mp4", 12.5)) == pytest.approx(2.5)
    assert time_error(query(time=10), Result("a.mp4", 8, 8, 11)) == 0.0
    assert time_error(query(time=10), Result("a.mp4", 3, 3, 7)) == pytest.approx(3.0)


def test_summary_figures() -> None:
    outcomes = [
        Outcome(query(time=10), [at("a.mp4", 10.5), at("a.mp4", 40)], 0.001, 0.25),
        Outcome(query(time=10), [at("a.mp4", 13.0)], 0.003, 0.25),
        Outcome(query(time=10), [at("b.mp4", 10.0), at("a.mp4", 10)], 0.002, 0.25),
    ]
    f = summarise(outcomes)
    assert f["top1_video"] == pytest.approx(2 / 3)
    assert f["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert f["time_error_median_s"] == pytest.approx(1.75)
    assert f["within_2s"] == pytest.approx(1 / 3)
    assert f["search_ms_median"] == pytest.approx(2.0)
    assert f["with_cnn_ms_median"] == pytest.approx(252.0)
    table = by_perturbation([Outcome(query(kind="crop"), [at("a.mp4", 1)], 0, 0),
                             Outcome(query(kind="jpeg"), [at("b.mp4", 1)], 0, 0)])
    assert table["crop"]["top1_video"] == 1.0 and table["jpeg"]["top1_video"] == 0.0


def test_ordering_differences_name_the_pairs_the_paper_ranks_the_other_way() -> None:
    measured = {"Ours": 0.9, "DFSP": 0.95, "DF": 0.8, "DFSE": 0.7, "DFTA": 0.6, "LBTT": 0.75}
    methods = {n: {"sets": {"plain": {"acc@12": v}}} for n, v in measured.items()}
    assert ordering_differences(methods, "plain") == [("Ours", "DFSP")]
