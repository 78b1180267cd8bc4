"""Retrieval figures for one method on one query set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frameseek.eval.methods import Result
from frameseek.eval.queries import Query

DEPTHS = (1, 5, 12)
TIME_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class Outcome:
    """One query's ranked results and how long the method took on it."""

    query: Query
    results: list[Result]
    seconds: float  # the method's own query encoding and search
    cnn_seconds: float  # decoding the query image and the CNN forward, 0 where not used


def paper_accuracy(outcome: Outcome, depth: int) -> float:
    """The paper's Eq. 2 over the top `depth`: results from the query's video / results."""
    top = outcome.results[:depth]
    return sum(r.video == outcome.query.video for r in top) / len(top) if top else 0.0


def time_error(query: Query, result: Result) -> float:
    """Seconds between the query's moment and the span the result stands for (0 inside it)."""
    if result.start <= query.time <= result.end:
        return 0.0
    return min(abs(query.time - result.start), abs(query.time - result.end))


def reciprocal_rank(outcome: Outcome) -> float:
    for rank, result in enumerate(outcome.results, 1):
        if result.video == outcome.query.video:
            return 1.0 / rank
    return 0.0


def summarise(outcomes: Sequence[Outcome]) -> dict:
    """Every figure of the report's main table, for one method and one query set."""
    top1 = [bool(o.results) and o.results[0].video == o.query.video for o in outcomes]
    errors = [time_error(o.query, o.results[0]) for o, hit in zip(outcomes, top1, strict=True)
              if hit]
    alone = np.array([o.seconds for o in outcomes]) * 1000
    total = np.array([o.seconds + o.cnn_seconds for o in outcomes]) * 1000
    figures = {f"acc@{n}": _mean([paper_accuracy(o, n) for o in outcomes]) for n in DEPTHS}
    figures.update({
        "queries": len(outcomes),
        "top1_video": _mean(top1),
        "mrr": _mean([reciprocal_rank(o) for o in outcomes]),
        "time_error_median_s": float(np.median(errors)) if errors else None,
        "within_2s": _mean([e <= TIME_TOLERANCE_S for e in errors] + [False] * top1.count(False)),
        "search_ms_median": float(np.median(alone)),
        "search_ms_p95": float(np.percentile(alone, 95)),
        "with_cnn_ms_median": float(np.median(total)),
        "with_cnn_ms_p95": float(np.percentile(total, 95)),
    })
    return figures


def by_perturbation(outcomes: Sequence[Outcome]) -> dict[str, dict]:
    """Top-1 video accuracy and acc@12 per kind of damage (perturbed set)."""
    kinds = sorted({o.query.perturbation["kind"] for o in outcomes})
    table = {}
    for kind in kinds:
        chosen = [o for o in outcomes if o.query.perturbation["kind"] == kind]
        table[kind] = {
            "queries": len(chosen),
            "top1_video": _mean([bool(o.results) and o.results[0].video == o.query.video
                                 for o in chosen]),
            "acc@12": _mean([paper_accuracy(o, 12) for o in chosen]),
        }
    return table


def _mean(values: Sequence[float | bool]) -> float:
    return float(np.mean(values)) if len(values) else 0.0
