"""The θ sweep (paper Figure 4): only Algorithm 1's m rule and k-means rerun per θ; the
histogram distances and sampled-frame features come from the cached analysis pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from frameseek.eval.analysis import VideoAnalysis
from frameseek.eval.methods import CANDIDATES, TOP, QueryInput, Result
from frameseek.eval.metrics import Outcome, summarise
from frameseek.eval.queries import Query
from frameseek.index import IndexConfig
from frameseek.search import CoarseToFine
from frameseek.store.base import Vectors

THETAS = tuple(round(0.6 + 0.2 * i, 1) for i in range(13))  # 0.6 … 3.0
SWEEP_FIGURES = ("acc@1", "acc@5", "acc@12", "top1_video", "mrr")


def theta_sweep(analyses: Sequence[VideoAnalysis], config: IndexConfig,
                queries: Sequence[Query], inputs: Sequence[QueryInput],
                thetas: Sequence[float] = THETAS) -> list[dict]:
    """Per θ: key frames, compression ratios, and Ours' accuracy on each query set."""
    frames = sum(a.frames for a in analyses)
    rows = []
    for theta in thetas:
        chosen = [a.select(config, theta)[0] for a in analyses]
        videos = np.concatenate([[a.path] * len(c) for a, c in zip(analyses, chosen, strict=True)])
        times = np.concatenate([a.times[c] for a, c in zip(analyses, chosen, strict=True)])
        vectors = Vectors(
            np.arange(len(videos), dtype=np.int64),
            np.concatenate([a.index[c] for a, c in zip(analyses, chosen, strict=True)]),
            np.concatenate([a.descriptors[c] for a, c in zip(analyses, chosen, strict=True)]),
        )
        searcher = CoarseToFine(vectors, candidates=CANDIDATES)
        outcomes: dict[str, list[Outcome]] = {}
        for query, q in zip(queries, inputs, strict=True):
            hits = searcher.search(q.index, q.descriptor, TOP)
            results = [Result(str(videos[h.keyframe_id]), float(times[h.keyframe_id]),
                              float(times[h.keyframe_id]), float(times[h.keyframe_id]))
                       for h in hits]
            outcomes.setdefault(query.set, []).append(Outcome(query, results, 0.0, 0.0))
        requested = sum(min(a.clusters(theta), a.frames) for a in analyses)
        row = {
            "theta": theta,
            "keyframes": len(videos),
            "compression_ratio": 1 - len(videos) / frames,
            "m_rule_compression_ratio": 1 - requested / frames,
        }
        for set_name, chosen_outcomes in outcomes.items():
            figures = summarise(chosen_outcomes)
            row[set_name] = {k: figures[k] for k in SWEEP_FIGURES}
        rows.append(row)
    return rows
