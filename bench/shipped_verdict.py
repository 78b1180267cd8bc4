"""The verdict frameseek ships (similarity 0.58 or MATCH_INLIERS inliers) at the default effort,
on an eval run's caches: outside queries answered as matches, and true matches kept, per set and
hard family. Not cross-validated: the thresholds were fitted on these very queries (the eval
report's verdict table has the cross-validated figures).

    python bench/shipped_verdict.py --eval-out /tmp/ev/hard --corpus /tmp/fs-corpus --work /tmp/sv
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from frameseek.eval import run
from frameseek.eval.analysis import cached_analysis
from frameseek.eval.methods import OursVerified, build_ours
from frameseek.eval.queries import make_queries
from frameseek.eval.verdicts import collect, is_match
from frameseek.features import FeatureExtractor
from frameseek.index import Index, IndexConfig
from frameseek.rmac import MATCH_SIMILARITY
from frameseek.verdict import MATCH_INLIERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-out", required=True, type=Path, help="an eval run's --out")
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path, help="where the indexes go")
    parser.add_argument("--queries-per-video", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out, config = args.eval_out, IndexConfig()
    extractor = FeatureExtractor(input_size=config.input_size)
    videos = run.corpus_videos(args.corpus, indexed_only=True)
    analyses = [cached_analysis(v.path, out / "cache" / "analysis", extractor, config)
                for v in videos]
    rmac = replace(config, pooling="rmac")
    selection = {a.path: a.select(config) for a in analyses}

    def embedded(videos_: list[Path], directory: Path, per_video: int) -> list:
        queries = make_queries(videos_, directory, per_video, args.seed)
        inputs, _, _ = run.embed_queries(queries, directory, extractor, out)
        return list(zip(queries, run.embed_regions(inputs, directory, extractor, out),
                        strict=True))

    inside = embedded([v.path for v in videos if v.role == "query"], out / "queries",
                      args.queries_per_video)
    everything = run.corpus_videos(args.corpus)
    outside = embedded([v.path for v in everything if v.role == "outside"],
                       out / "queries-outside", run.OUTSIDE_PER_VIDEO)
    works = {str(v.path): v.work for v in everything}
    reduced: dict[str, Index] = {}

    def without(work: str) -> Index:
        if work not in reduced:
            kept = [a for a in analyses if works[a.path] != work]
            reduced[work] = build_ours(args.work / f"without-{len(reduced)}", kept, selection,
                                       rmac)
        return reduced[work]

    index = build_ours(args.work / "rmac", analyses, selection, rmac)
    found = collect(OursVerified("default", index, 0.0), inside, outside, works, without)
    rule = (MATCH_SIMILARITY, MATCH_INLIERS)
    passed = [is_match(e, *rule) for e in found if not e.inside]
    groups: dict[str, dict[str, list[bool]]] = {"sets": {}, "families": {}}
    for e in found:
        if e.inside:
            kept = is_match(e, *rule) and e.right
            groups["sets"].setdefault(e.query.set, []).append(kept)
            if e.query.set == "hard":
                groups["families"].setdefault(e.query.perturbation["kind"], []).append(kept)
    print(json.dumps({
        "rule": list(rule), "outside_queries": len(passed), "fpr": float(np.mean(passed)),
        **{key: {name: {"queries": len(v), "kept": round(float(np.mean(v)), 3)}
                 for name, v in sorted(group.items())} for key, group in groups.items()},
    }))


if __name__ == "__main__":
    main()
