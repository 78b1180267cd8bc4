"""The verdict: whether a query shows a video of the collection at all ("no match"), from
scores whose threshold is calibrated for a chosen false-positive rate on queries from outside.

- `aggregate_videos`: one score per video from its key frames in the top results.
- `NoMatch`: a threshold on a score, calibrated on out-of-collection queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def aggregate_videos(videos: Sequence[str], similarities: Sequence[float],
                     per_video: int = 3) -> list[tuple[str, float]]:
    """Ranked results (video of each, similarity) → videos ranked by the sum of their best
    `per_video` similarities: several key frames of one video agreeing outweigh one lucky hit."""
    scores: dict[str, list[float]] = defaultdict(list)
    for video, similarity in zip(videos, similarities, strict=True):
        if len(scores[video]) < per_video:
            scores[video].append(float(similarity))
    totals = {video: sum(values) / per_video for video, values in scores.items()}
    return sorted(totals.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class NoMatch:
    """Answer "no match" below a score threshold chosen for a false-positive rate."""

    threshold: float

    @classmethod
    def calibrate(cls, out_of_index_scores: Sequence[float], fpr: float = 0.01) -> NoMatch:
        """The smallest threshold that lets at most `fpr` of out-of-index queries through."""
        scores = np.sort(np.asarray(out_of_index_scores, dtype=np.float64))
        allowed = int(np.floor(fpr * len(scores)))
        threshold = scores[len(scores) - allowed - 1] if len(scores) else -np.inf
        return cls(float(np.nextafter(threshold, np.inf)))

    def is_match(self, score: float) -> bool:
        return score >= self.threshold

# Geometric inliers (frameseek/verify.py) that make a match whatever the similarity: with the
# similarity threshold 0.58, the fewest that let at most 1% of the eval's 600 outside queries
# through at the default effort (docs/robust.md, "Hard queries").
MATCH_INLIERS = 18
