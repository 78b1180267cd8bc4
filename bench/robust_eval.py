"""Benchmark of issue 8's variants on the evaluation harness's corpus and query sets.

Reuses what `frameseek eval run` cached in its out directory: the analysis pass (pool5 maps of
every sampled frame, float16) and the query sets with the pool5 maps of each query as given and
trimmed, so no CNN pass is repeated. Key frames are those of the eval run (θ of IndexConfig, the
given sample rate).

Every variant runs the same coarse-to-fine search in numpy (coarse top 100, fine re-rank, top 12)
and is scored with frameseek/eval/metrics.py. The "no match" answer has its own study,
bench/no_match.py, built on this one's searcher.

    python bench/robust_eval.py --eval-out /tmp/ev/fps2 --corpus /tmp/fs-corpus --out /tmp/robust
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from frameseek.eval.analysis import VideoAnalysis, _from_arrays
from frameseek.eval.methods import Result
from frameseek.eval.metrics import Outcome, by_perturbation, summarise
from frameseek.eval.queries import QUERIES_FILE, SETS, Query
from frameseek.eval.run import corpus_videos, embed_queries
from frameseek.features import FeatureExtractor, mean_pool_channels, mean_pool_spatial
from frameseek.index import IndexConfig, content_id
from frameseek.rmac import RegionalMax, Whitening, shipped
from frameseek.verdict import aggregate_videos
from frameseek.verify import local_features, local_similarity

TOP = 12
CANDIDATES = 100
VERIFY = 20  # candidates re-scored by local verification
LOCAL_DIM = 64


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Database:
    """The key frames of the indexed videos and every sample of them (for fitting)."""

    videos: np.ndarray  # (N,) path per key frame
    times: np.ndarray
    pool5: np.ndarray  # (N, 512, 7, 7) float16
    samples: np.ndarray  # (S, 512, 7, 7) float16: all sampled frames, whitening is fitted here


def load_analyses(eval_out: Path, corpus: Path, sample_fps: float) -> list[tuple[str, str,
                                                                               VideoAnalysis]]:
    """(path, role, analysis) of every corpus video whose analysis the eval run has cached."""
    found = []
    for video in corpus_videos(corpus, indexed_only=True):
        key = f"{content_id(video.path)[:24]}-{sample_fps}-224-v1"
        file = eval_out / "cache" / "analysis" / f"{key}.npz"
        if not file.exists():
            print(f"  (not analysed yet, left out: {video.path.name})")
            continue
        with np.load(file) as data:
            found.append((str(video.path), video.role, _from_arrays(str(video.path), data)))
    return found


def database(analyses: list[tuple[str, str, VideoAnalysis]], config: IndexConfig,
             keep: Callable[[str, str], bool],
             maps: Callable[[VideoAnalysis], np.ndarray] = lambda a: a.pool5) -> Database:
    """The kept videos' key frames (the eval run's), with `maps` of every sample: VGG16's pool5
    by default, another backbone's in bench/backbone_eval.py."""
    chosen = [(path, a, maps(a)) for path, role, a in analyses if keep(path, role)]
    rows = [a.select(config)[0] for _, a, _ in chosen]
    return Database(
        videos=np.concatenate([[path] * len(r) for (path, _, _), r in zip(chosen, rows,
                                                                           strict=True)]),
        times=np.concatenate([a.times[r] for (_, a, _), r in zip(chosen, rows, strict=True)]),
        pool5=np.concatenate([m[r] for (_, _, m), r in zip(chosen, rows, strict=True)]),
        samples=np.concatenate([m for _, _, m in chosen]),
    )


@dataclass
class QuerySet:
    queries: list[Query]
    pool5: np.ndarray  # (Q, 512, 7, 7) of the image as given
    trimmed_pool5: np.ndarray  # of the image cropped to its content (same where nothing trimmed)
    trimmed: np.ndarray  # (Q,) bool
    trim_ms: np.ndarray
    cnn_ms: np.ndarray  # decoding + CNN forward of the query as given (eval run's timing)


def load_queries(out: Path, extractor: FeatureExtractor, videos: set[str] | None = None
                 ) -> QuerySet:
    """Queries written by frameseek.eval.queries under out/queries (those of `videos` only), with
    their maps cached under out/cache as the eval run does (frameseek.eval.run.embed_queries)."""
    query_dir = out / "queries"
    listing = json.loads((query_dir / QUERIES_FILE).read_text())["queries"]
    queries = [Query(**q) for q in listing]
    inputs, total, _ = embed_queries(queries, query_dir, extractor, out)
    keep = [i for i, q in enumerate(queries) if videos is None or q.video in videos]
    chosen = [inputs[i] for i in keep]
    return QuerySet([queries[i] for i in keep], np.concatenate([q.pool5 for q in chosen]),
                    np.concatenate([q.content_pool5 for q in chosen]),
                    np.array([q.content_rgb.shape != q.rgb.shape for q in chosen]),
                    np.array([q.trim_seconds * 1000 for q in chosen]), total[keep] * 1000)


# -- representations -----------------------------------------------------------------------------


class Encoder:
    """pool5 maps → (coarse, fine) vectors; `similarity` turns fine distances into scores."""

    name: str
    unit = True  # fine vectors are unit length: similarity = 1 - d²/2

    def fit(self, samples: np.ndarray) -> None: ...

    def encode(self, pool5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def extra_bytes(self) -> int:
        return 0


class Faithful(Encoder):
    name, unit = "paper (mean 512, 64-d groups)", False

    def encode(self, pool5):
        fine = mean_pool_spatial(pool5.astype(np.float32))
        return mean_pool_channels(fine), fine


class WhitenedMean(Encoder):
    name = "mean + PCA-whitening"

    def fit(self, samples):
        fine = mean_pool_spatial(samples.astype(np.float32))
        self.fine_w, self.coarse_w = Whitening.fit(fine), Whitening.fit(fine, 64)

    def encode(self, pool5):
        fine = mean_pool_spatial(pool5.astype(np.float32))
        return self.coarse_w.transform(fine), self.fine_w.transform(fine)


class RMAC(Encoder):
    """frameseek's "rmac" pooling: the whitening shipped with it (fitted on unrelated stills)."""

    name = "R-MAC + PCA-whitening"

    def fit(self, samples):
        self.model = shipped()

    def encode(self, pool5):
        fine = self.model.descriptors(pool5.astype(np.float32))
        return self.model.coarse(fine), fine


class CorpusRMAC(RMAC):
    """R-MAC with the whitening refitted on this corpus's own sampled frames."""

    def fit(self, samples):
        self.model = RegionalMax.fit(samples.astype(np.float32))


# -- search --------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    encoder: Encoder
    trim: bool = False
    verify: bool = False
    aggregate: int = 0  # results grouped by video, videos ranked by their best `aggregate`


@dataclass
class Searcher:
    """A built database for one encoder: coarse, fine and (optionally) local vectors."""

    encoder: Encoder
    db: Database
    locals_w: Whitening | None = None
    coarse: np.ndarray = field(init=False)
    fine: np.ndarray = field(init=False)
    locals_: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.encoder.fit(self.db.samples)
        self.coarse, self.fine = self.encoder.encode(self.db.pool5)
        if self.locals_w is not None:
            self.locals_ = local_features(self.db.pool5, self.locals_w).astype(np.float16)

    def search(self, pool5: np.ndarray, verify: bool, aggregate: int
               ) -> tuple[list[Result], list[tuple[str, float]]]:
        """One query's maps → top results, and the candidates' videos ranked by their best
        score (what a "no match" answer is decided on: bench/no_match.py)."""
        coarse, fine = self.encoder.encode(pool5[None])
        rows = np.argsort(((self.coarse - coarse) ** 2).sum(axis=1), kind="stable")[:CANDIDATES]
        squared = ((self.fine[rows] - fine) ** 2).sum(axis=1)
        order = np.argsort(squared, kind="stable")
        rows, squared = rows[order], squared[order]
        scores = 1 - squared / 2 if self.encoder.unit else -np.sqrt(squared)
        if verify and self.locals_ is not None:
            head = rows[:VERIFY]
            query_locals = local_features(pool5[None], self.locals_w)[0]
            local = local_similarity(query_locals, self.locals_[head].astype(np.float32))
            head_scores = scores[:VERIFY] + local
            order = np.argsort(-head_scores, kind="stable")
            rows = np.concatenate([head[order], rows[VERIFY:]])
            scores = np.concatenate([head_scores[order], scores[VERIFY:] + 0.0])
        videos = self.db.videos[rows]
        ranked = aggregate_videos(videos, scores, max(1, aggregate))
        if aggregate:  # the best video's key frames first, then the next video's, ...
            rank = {video: i for i, (video, _) in enumerate(ranked)}
            order = np.argsort([rank[v] for v in videos], kind="stable")
            rows = rows[order]
        results = [Result(str(self.db.videos[r]), float(self.db.times[r]),
                          float(self.db.times[r]), float(self.db.times[r]))
                   for r in rows[:TOP]]
        return results, ranked


def run_variant(searcher: Searcher, variant: Variant, qs: QuerySet
                ) -> tuple[list[Outcome], list[list[tuple[str, float]]]]:
    """Every query, one at a time on one BLAS thread (as a server answers one request)."""
    with threadpool_limits(1):
        return _run_variant(searcher, variant, qs)


def _run_variant(searcher: Searcher, variant: Variant, qs: QuerySet
                 ) -> tuple[list[Outcome], list[list[tuple[str, float]]]]:
    outcomes, rankings = [], []
    maps = qs.trimmed_pool5 if variant.trim else qs.pool5
    searcher.search(maps[0], variant.verify, variant.aggregate)  # warm-up
    for i, query in enumerate(qs.queries):
        start = time.perf_counter()
        results, ranked = searcher.search(maps[i], variant.verify, variant.aggregate)
        seconds = time.perf_counter() - start
        trim_ms = qs.trim_ms[i] if variant.trim else 0.0
        outcomes.append(Outcome(query, results, seconds, (qs.cnn_ms[i] + trim_ms) / 1000))
        rankings.append(ranked)
    return outcomes, rankings


def bytes_per_keyframe(variant: Variant) -> int:
    """Storage beyond the faithful 64 float32 + 512 float16 per key frame."""
    extra = 0
    if variant.verify:
        extra += 49 * LOCAL_DIM * 2  # 7×7 local features, whitened to 64-d, float16
    return extra


# -- main ----------------------------------------------------------------------------------------


def variants() -> list[Variant]:
    return [
        Variant("faithful (paper)", Faithful()),
        Variant("faithful + trim", Faithful(), trim=True),
        Variant("mean + whitening", WhitenedMean()),
        Variant("R-MAC + whitening", RMAC()),
        Variant("R-MAC + whitening + trim", RMAC(), trim=True),
        Variant("R-MAC + whitening fitted on the corpus + trim", CorpusRMAC(), trim=True),
        Variant("R-MAC + trim + verify", RMAC(), trim=True, verify=True),
        Variant("R-MAC + trim + verify + video agg. (best 3)", RMAC(), trim=True, verify=True,
                aggregate=3),
        Variant("R-MAC + trim + video agg. (best 3)", RMAC(), trim=True, aggregate=3),
        Variant("faithful + video agg. (best 1)", Faithful(), aggregate=1),
        Variant("R-MAC + trim + video agg. (best 1)", RMAC(), trim=True, aggregate=1),
    ]


def main_table(analyses, config: IndexConfig, qs: QuerySet) -> list[dict]:
    db = database(analyses, config, lambda path, role: True)
    locals_w = Whitening.fit(_local_sample(db.pool5), LOCAL_DIM)
    rows = []
    for variant in variants():
        searcher = Searcher(variant.encoder, db, locals_w if variant.verify else None)
        outcomes, _ = run_variant(searcher, variant, qs)
        row = {"variant": variant.name, "bytes_extra": bytes_per_keyframe(variant)}
        for set_name in SETS:
            chosen = [o for o in outcomes if o.query.set == set_name]
            row[set_name] = summarise(chosen)
        row["perturbations"] = by_perturbation([o for o in outcomes
                                                if o.query.set == "perturbed"])
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def _local_sample(pool5: np.ndarray, count: int = 20_000, seed: int = 0) -> np.ndarray:
    local = pool5.reshape(len(pool5), pool5.shape[1], -1).transpose(0, 2, 1).reshape(
        -1, pool5.shape[1])
    rng = np.random.default_rng(seed)
    return local[np.sort(rng.choice(len(local), min(count, len(local)), replace=False))]


def format_row(row: dict) -> str:
    p, q = row["plain"], row["perturbed"]
    return (f"| {row['variant']} | {p['top1_video']:.3f} | {p['acc@12']:.3f} | "
            f"{q['top1_video']:.3f} | {q['acc@12']:.3f} | {q['with_cnn_ms_median']:.0f} "
            f"({q['search_ms_median']:.1f}) | {row['bytes_extra']} |")


def eval_cache_parser(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark that reads an eval run's cache and writes to --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--eval-out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--sample-fps", type=float, default=IndexConfig.sample_fps)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main() -> None:
    parser = eval_cache_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    config = IndexConfig(sample_fps=args.sample_fps)
    analyses = load_analyses(args.eval_out, args.corpus, args.sample_fps)
    extractor = FeatureExtractor(input_size=config.input_size)
    qs = load_queries(args.eval_out, extractor, {p for p, _, _ in analyses})
    print(f"{len(analyses)} videos, {len(qs.queries)} queries, {int(qs.trimmed.sum())} trimmed")
    print("| variant | plain top-1 video | plain acc@12 | perturbed top-1 | perturbed acc@12 | "
          "query ms (search ms) | extra bytes/key frame |")
    print("|---|---|---|---|---|---|---|")
    table = main_table(analyses, config, qs)
    results = {"videos": len(analyses), "queries": len(qs.queries),
               "trimmed": {s: int(sum(t for q, t in zip(qs.queries, qs.trimmed, strict=True)
                                      if q.set == s)) for s in SETS},
               "table": table}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
