"""Issue 4: does clustering on 112-px features (`IndexConfig.cluster_size=112`) cost accuracy?

Reuses what `frameseek eval run` cached in its out directory (the analysis pass of every corpus
video, with the 224-px descriptors of every sampled frame, and the query sets with their CNN
maps), so the only CNN work is the cheap one being judged: the 112-px features of the same
samples, cached in --out. Per video, Algorithm 1 keeps m key frames under the same rule (θ, the
cap samples / 2, seed) as the faithful selection, but clusters the 112-px features; the key frames
it picks get their 224-px descriptors from the cache, as `KeyFrameExtractor` computes them for
the chosen frames only. Both selections are written into real indexes and searched by the eval's
own "Ours" variants (64-d top 100 → 512-d re-rank, top 12; "Ours" is the paper's pooling, the
others R-MAC and/or border trimming), then scored with frameseek/eval/metrics.py.

    python bench/cluster_size_eval.py --eval-out /tmp/ev/full --corpus /tmp/fs-corpus \
        --sample-fps 1.0 --out /tmp/cluster112
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from robust_eval import eval_cache_parser, load_analyses

from frameseek.eval.analysis import VideoAnalysis
from frameseek.eval.methods import DEFAULT, Selection, ours_variants
from frameseek.eval.metrics import summarise
from frameseek.eval.queries import QUERIES_FILE, SETS, Query
from frameseek.eval.run import embed_queries, search_all
from frameseek.features import FeatureExtractor, mean_pool_spatial
from frameseek.index import IndexConfig, content_id
from frameseek.video import iter_frames

CLUSTER_SIZE = 112


def cluster_features(analysis: VideoAnalysis, extractor: FeatureExtractor, cache: Path
                     ) -> np.ndarray:
    """The mean-pooled 512-d features of the analysis's samples at the clustering input size.

    Computed as `KeyFrameExtractor` computes them for its clusterer: frames converted straight
    to that size (not shrunk from the 224-px copy), pool5 averaged over its cells."""
    path = Path(analysis.path)
    file = cache / f"{content_id(path)[:24]}-{len(analysis.numbers)}-{extractor.input_size}.npy"
    if file.exists():
        return np.load(file)
    wanted = set(analysis.numbers.tolist())
    size = extractor.input_size
    pixels = [frame.rgb(size, size) for frame in iter_frames(path) if frame.number in wanted]
    if len(pixels) != len(wanted):
        raise RuntimeError(f"{path}: decoded {len(pixels)} of the {len(wanted)} cached samples")
    features = mean_pool_spatial(extractor.pool5(np.stack(pixels)))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, features)
    return features


def main() -> None:
    parser = eval_cache_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    config = IndexConfig(sample_fps=args.sample_fps)
    analyses = [a for _, _, a in load_analyses(args.eval_out, args.corpus, args.sample_fps)]

    start = time.perf_counter()
    clusterer = FeatureExtractor(input_size=CLUSTER_SIZE)
    cheap = [replace(a, descriptors=cluster_features(a, clusterer, args.out / "features"))
             for a in analyses]
    features_s = time.perf_counter() - start
    # The selection rule is VideoAnalysis.select for all (m, the cap, the seed): only the
    # clustered features differ; the indexes get the cached 224-px maps of the chosen samples.
    # The control reruns the faithful clustering with another k-means seed: how far accuracy
    # moves when only the choice among near-equal frames changes, the yardstick for 0.01.
    selections: dict[str, Selection] = {
        "faithful": {a.path: a.select(config) for a in analyses},
        f"cluster_size={CLUSTER_SIZE}": {a.path: c.select(config)
                                         for a, c in zip(analyses, cheap, strict=True)},
        "faithful, k-means seed 1": {a.path: a.select(replace(config, seed=1))
                                     for a in analyses},
    }

    query_dir = args.eval_out / "queries"
    queries = [Query(**q) for q in json.loads((query_dir / QUERIES_FILE).read_text())["queries"]]
    # The eval's cached query maps; the 224-px CNN runs only if that cache is missing.
    inputs, cnn_s, load_s = embed_queries(queries, query_dir, FeatureExtractor(), args.eval_out)

    rows, right = [], {}
    for name, selection in selections.items():
        same = sum(len(np.intersect1d(chosen, selections["faithful"][path][0]))
                   for path, (chosen, _) in selection.items())
        variants = ours_variants(args.out / "index" / name.replace(" ", "-"), analyses,
                                 selection, config)
        for method in variants:
            outcomes = search_all(method, queries, inputs, cnn_s, load_s)
            right[name, method.name] = {o.query.id: o.results[0].video == o.query.video
                                        for o in outcomes}
            rows.append({"selection": name, "method": method.name, "keyframes": method.entries,
                         "same_as_faithful": same,
                         **{s: summarise([o for o in outcomes if o.query.set == s])
                            for s in SETS}})
        for index in {id(m.index): m.index for m in variants}.values():
            index.close()
    for row in rows:  # top-1 answers that differ from the faithful selection's, by query
        base = right["faithful", row["method"]]
        mine = right[row["selection"], row["method"]]
        row["top1_lost"] = sorted(q for q in base if base[q] and not mine[q])
        row["top1_gained"] = sorted(q for q in base if mine[q] and not base[q])

    print(f"{len(analyses)} videos, {len(queries)} queries, sample fps {args.sample_fps}; "
          f"{CLUSTER_SIZE}-px features {features_s:.0f} s (cached in {args.out / 'features'})")
    print("| search | key frames from | key frames (same as faithful) | plain top-1 | "
          "plain acc@12 | perturbed top-1 | perturbed acc@12 | top-1 lost / gained |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["method"] in ("Ours", DEFAULT):
            p, q = r["plain"], r["perturbed"]
            print(f"| {r['method']} | {r['selection']} | {r['keyframes']} "
                  f"({r['same_as_faithful']}) | {p['top1_video']:.3f} | {p['acc@12']:.3f} | "
                  f"{q['top1_video']:.3f} | {q['acc@12']:.3f} | "
                  f"{len(r['top1_lost'])} / {len(r['top1_gained'])} |")
    results = {"videos": len(analyses), "queries": len(queries), "sample_fps": args.sample_fps,
               "cluster_size": CLUSTER_SIZE, "cluster_features_s": round(features_s, 1),
               "load_average": os.getloadavg(), "rows": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
