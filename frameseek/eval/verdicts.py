"""The verdict measured: true matches kept, per query set and family, at an outside-query
false-positive rate of at most 1%, each rule's thresholds cross-validated by work.

Outside queries, made the eval's way (plain, perturbed, hard): the corpus's "outside" videos
against the whole index, and every query of a work (a source video; Big Buck Bunny's clips are one
work) against the index without that work. A work's queries, in the collection and outside it,
are judged by thresholds calibrated on the other works' outside queries only.

Rules: "similarity" (the best key frame's similarity of the whole query, as before verification),
and "similarity or inliers" (also a match where a verified key frame has at least so many
geometric inliers). Per training fold the thresholds kept are those that keep the most of the
fold's true matches while letting at most `FPR` of its outside queries through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from frameseek.eval.methods import Ours, QueryInput
from frameseek.eval.queries import Query
from frameseek.index import Index
from frameseek.rmac import MATCH_SIMILARITY
from frameseek.verdict import MATCH_INLIERS

FPR = 0.01
SIMILARITIES = tuple(round(0.20 + 0.02 * i, 2) for i in range(36))  # 0.20 … 0.90
INLIERS = (*range(4, 30), 32, 36, 40, 50, 1 << 30)  # the last: inliers never decide


@dataclass(frozen=True)
class Evidence:
    """What the verdict sees of one query's search."""

    query: Query
    work: str
    inside: bool  # the query's video is in the index searched
    right: bool  # the top result is the query's video
    similarity: float  # the whole query's best
    inliers: int  # the most of a verified key frame (0 where nothing was verified)


def evidence(method: Ours, query: Query, features: QueryInput, work: str, inside: bool
             ) -> Evidence:
    matches, _ = method.matches(features)
    verdict = method.index.verdict(matches)
    if verdict is None:
        raise ValueError(f"{method.name} gives no verdict")
    return Evidence(query, work, inside, bool(matches) and matches[0].video == query.video,
                    verdict.similarity, verdict.inliers or 0)


def collect(method: Ours, inside: Sequence[tuple[Query, QueryInput]],
            outside: Sequence[tuple[Query, QueryInput]], works: dict[str, str],
            without: Callable[[str], Index]) -> list[Evidence]:
    """Evidence for the collection's queries, the outside videos' queries, and each work's
    queries against the index without it (`without(work)`)."""
    found = [evidence(method, q, f, works[q.video], True) for q, f in inside]
    found += [evidence(method, q, f, works[q.video], False) for q, f in outside]
    for work in sorted({works[q.video] for q, _ in inside}):
        reduced = method.with_index(without(work))
        found += [evidence(reduced, q, f, work, False) for q, f in inside
                  if works[q.video] == work]
    return found


def is_match(e: Evidence, similarity: float, inliers: int) -> bool:
    return e.similarity >= similarity or e.inliers >= inliers


def calibrate(training: Sequence[Evidence], use_inliers: bool,
              similarities: Sequence[float] = SIMILARITIES) -> tuple[float, int]:
    """The thresholds that keep the most true matches of `training` at outside FPR ≤ `FPR`."""
    outside = [e for e in training if not e.inside]
    inside = [e for e in training if e.inside and e.right]
    best: tuple[float, tuple[float, int]] = (-1.0, (np.inf, 1 << 30))
    for similarity in similarities:
        for inliers in INLIERS if use_inliers else (1 << 30,):
            passed = sum(is_match(e, similarity, inliers) for e in outside)
            if passed > FPR * len(outside):
                continue
            kept = sum(is_match(e, similarity, inliers) for e in inside)
            if kept > best[0]:
                best = (kept, (similarity, inliers))
    return best[1]


def study(found: Sequence[Evidence], use_inliers: bool) -> dict:
    """Cross-validated by work: per work, thresholds from the others; figures over all."""
    judged: list[tuple[Evidence, bool]] = []
    folds = {}
    for work in sorted({e.work for e in found}):
        similarity, inliers = calibrate([e for e in found if e.work != work], use_inliers)
        folds[work] = [similarity, inliers]
        judged += [(e, is_match(e, similarity, inliers)) for e in found if e.work == work]
    outside = [m for e, m in judged if not e.inside]
    figures: dict = {
        "outside_queries": len(outside),
        "fpr": float(np.mean(outside)) if outside else 0.0,
        "thresholds_all_works": list(calibrate(found, use_inliers)),
        # With the similarity threshold frameseek ships: what MATCH_INLIERS is set from.
        "inliers_at_shipped_similarity": calibrate(found, use_inliers, (MATCH_SIMILARITY,))[1],
        "folds": folds,
        "sets": {},
        "families": {},
    }
    # The shipped rule (frameseek.index.Index.verdict) as it is, not cross-validated.
    shipped = (MATCH_SIMILARITY, MATCH_INLIERS if use_inliers else 1 << 30)
    figures["shipped"] = {"thresholds": list(shipped), "fpr": float(np.mean(
        [is_match(e, *shipped) for e in found if not e.inside] or [0.0]))}
    inside = [(e, m, is_match(e, *shipped)) for e, m in judged if e.inside]
    groups = [("sets", e.query.set, e, m, s) for e, m, s in inside]
    groups += [("families", e.query.perturbation["kind"], e, m, s) for e, m, s in inside
               if e.query.set == "hard"]
    for key, name in sorted({(g[0], g[1]) for g in groups}):
        chosen = [(e, m, s) for k, n, e, m, s in groups if (k, n) == (key, name)]
        figures[key][name] = {
            "queries": len(chosen),
            "kept": float(np.mean([m and e.right for e, m, _ in chosen])),
            "kept_shipped": float(np.mean([s and e.right for e, _, s in chosen])),
        }
    return figures
