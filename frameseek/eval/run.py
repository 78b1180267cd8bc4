"""`frameseek eval run`: corpus → analysis pass (cached) → queries → every method → report."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from frameseek import backends
from frameseek.borders import trim_borders
from frameseek.eval.analysis import VideoAnalysis, cached_analysis
from frameseek.eval.gallery import write_gallery
from frameseek.eval.localisation import evaluate as evaluate_localisation
from frameseek.eval.methods import (
    DEFAULT,
    TRIMMED,
    VERIFIED,
    KeyFrames,
    Method,
    Ours,
    QueryInput,
    Selection,
    all_regions,
    baselines,
    build_ours,
    ours_variants,
)
from frameseek.eval.metrics import Outcome, by_perturbation, summarise
from frameseek.eval.queries import QUERIES_FILE, SETS, Query, make_queries
from frameseek.eval.report import write_report
from frameseek.eval.sweep import THETAS, theta_sweep
from frameseek.eval.verdicts import collect, study
from frameseek.features import FeatureExtractor, mean_pool_channels, mean_pool_spatial
from frameseek.index import Index, IndexConfig, find_videos
from frameseek.query import load_image

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SMOKE_THETAS = (0.6, 1.4, 3.0)
QUERY_CACHE_VERSION = b"trim-v1"
REGION_CACHE_VERSION = b"regions-v1"
OUTSIDE_PER_VIDEO = 10  # frames per outside video, each a plain, a perturbed and hard queries


@dataclass(frozen=True)
class Settings:
    corpus: Path
    out: Path
    per_video: int = 5
    seed: int = 0
    smoke: bool = False
    sample_fps: float = IndexConfig.sample_fps
    coverage_margin: float | None = IndexConfig.coverage_margin
    command: str = ""


@dataclass(frozen=True)
class CorpusVideo:
    path: Path
    role: str  # frameseek.eval.corpus.ROLES: "query", "distractor" or "outside"
    work: str  # the source video it was cut from: Big Buck Bunny's clips are one work


def corpus_videos(corpus: Path, indexed_only: bool = False) -> list[CorpusVideo]:
    """The manifest's videos with their roles; without a manifest, every video is a query video.
    `indexed_only` leaves out the "outside" videos, which only bench/no_match.py queries."""
    manifest = corpus / MANIFEST
    if not manifest.exists():
        return [CorpusVideo(path, "query", str(path)) for path in find_videos([corpus])]
    rows = json.loads(manifest.read_text())
    videos = [CorpusVideo(corpus / row["file"], row.get("role", "query"),
                          row.get("original_path", row["file"])) for row in rows]
    return [v for v in videos if not (indexed_only and v.role == "outside")]


def run(settings: Settings) -> dict:
    """Run every experiment; write report.md, results.json, the plot and the gallery."""
    started = time.perf_counter()
    out = settings.out
    config = IndexConfig(sample_fps=settings.sample_fps,
                         coverage_margin=settings.coverage_margin)
    extractor = FeatureExtractor(input_size=config.input_size)  # pool5 maps: pooled per method
    videos = corpus_videos(settings.corpus, indexed_only=True)
    if not videos:
        raise SystemExit(f"frameseek eval: no videos in {settings.corpus}")

    analyses: list[VideoAnalysis] = []
    for number, video in enumerate(videos, 1):
        analysis = cached_analysis(video.path, out / "cache" / "analysis", extractor, config)
        log.info("analysed %d/%d %s: %d frames, %d samples (%.0f s)", number, len(videos),
                 video.path.name, analysis.frames, len(analysis.times), analysis.seconds)
        analyses.append(analysis)

    query_dir = out / "queries"
    queries = make_queries([v.path for v in videos if v.role == "query"], query_dir,
                           settings.per_video, settings.seed)
    inputs, cnn_seconds, load_seconds = embed_queries(queries, query_dir, extractor, out)
    log.info("%d queries embedded", len(queries))
    inputs = embed_regions(inputs, query_dir, extractor, out)
    log.info("their regions embedded")

    selection = {a.path: a.select(config) for a in analyses}
    keyframes = KeyFrames.select(analyses, selection)
    variants = ours_variants(out / "index", analyses, selection, config)
    methods: list[Method] = [*variants, *baselines(keyframes, analyses, 1.0 / config.sample_fps,
                                                   settings.seed)]
    outcomes = {m.name: search_all(m, queries, inputs, cnn_seconds, load_seconds)
                for m in methods}
    log.info("searched with %d methods", len(methods))
    faithful, trimmed, default = (next(m for m in variants if m.name == name)
                                  for name in ("Ours", TRIMMED, DEFAULT))

    sweep = theta_sweep(analyses, config, queries, inputs,
                        SMOKE_THETAS if settings.smoke else THETAS)
    log.info("θ sweep done")

    # Sizes before the localisation tracks join the indexes.
    index_bytes = {m.name: directory_bytes(m.index.directory)
                   for m in (faithful, trimmed, default)}
    localisation = {}
    for method in (default, trimmed, faithful):
        localisation[method.name] = evaluate_localisation(method, queries, inputs,
                                                          out / "cache" / "tracks")
        localisation[method.name]["index_bytes_without_tracks"] = index_bytes[method.name]
    log.info("localisation measured")
    verdicts = verdict_study(settings, videos, analyses, selection, config, queries, inputs,
                             [m for m in variants if m.name == TRIMMED
                              or m.name.startswith(VERIFIED)], extractor)
    log.info("verdicts measured")

    results = {
        "meta": meta(settings, config, extractor),
        "corpus": corpus_summary(videos, analyses, queries),
        "indexing": indexing_summary(analyses, methods),
        "methods": {
            m.name: {
                "dimension": m.dimension, "entries": m.entries, "vector_bytes": m.vector_bytes,
                "uses_cnn": m.uses_cnn,
                "compression_ratio": 1 - m.entries / sum(a.frames for a in analyses),
                "sets": {s: summarise([o for o in outcomes[m.name] if o.query.set == s])
                         for s in SETS},
                "perturbations": by_perturbation(
                    [o for o in outcomes[m.name] if o.query.set == "perturbed"]),
                "families": by_perturbation(
                    [o for o in outcomes[m.name] if o.query.set == "hard"]),
            }
            for m in methods
        },
        "ours_index_bytes_per_keyframe": index_bytes[default.name] / max(1, default.entries),
        "theta_sweep": sweep,
        "localisation": localisation,
        "verdicts": verdicts,
    }
    write_gallery(out / "gallery.html", gallery_picks(outcomes[default.name], settings.seed),
                  query_dir, default.index.store.thumbnail)
    for index in {id(m.index): m.index for m in variants}.values():
        index.close()
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    write_report(out, results)
    return results


def embed_queries(queries: list[Query], query_dir: Path, extractor: FeatureExtractor, out: Path
                  ) -> tuple[list[QueryInput], np.ndarray, np.ndarray]:
    """Each query decoded and run through the CNN once (cached by the query list's content).

    Also each query's content box (uniform borders trimmed) and the maps of that content.
    Returns the inputs, and per query the seconds for decoding + CNN and for decoding alone.
    """
    listing = (query_dir / QUERIES_FILE).read_bytes()
    key = hashlib.sha256(listing + str(extractor.input_size).encode()
                         + extractor.backbone.backend.name.encode()
                         + QUERY_CACHE_VERSION).hexdigest()[:24]
    cache = out / "cache" / f"queries-{key}.npz"
    rgbs = [load_image(query_dir / q.file) for q in queries]
    if not cache.exists():
        arrays = _embed_queries(queries, query_dir, extractor, rgbs[0])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    with np.load(cache) as data:
        arrays = dict(data)
    descriptors = mean_pool_spatial(arrays["pool5"])
    index = mean_pool_channels(descriptors)
    inputs = []
    for i, rgb in enumerate(rgbs):
        top, bottom, left, right = arrays["boxes"][i]
        inputs.append(QueryInput(rgb, arrays["pool5"][i : i + 1], descriptors[i], index[i],
                                 rgb[top:bottom, left:right], arrays["content_pool5"][i : i + 1],
                                 float(arrays["trim"][i])))
    return inputs, arrays["total"], arrays["loading"]


def _embed_queries(queries: list[Query], query_dir: Path, extractor: FeatureExtractor,
                   warm_up: np.ndarray) -> dict[str, np.ndarray]:
    maps, content_maps, boxes, total, loading, trim = [], [], [], [], [], []
    extractor.pool5(extractor.resize(warm_up)[None])  # kept out of the timings
    for q in queries:
        start = time.perf_counter()
        rgb = load_image(query_dir / q.file)
        loaded = time.perf_counter()
        maps.append(extractor.pool5(extractor.resize(rgb)[None])[0])
        total.append(time.perf_counter() - start)
        loading.append(loaded - start)
        start = time.perf_counter()
        box = trim_borders(rgb)
        trim.append(time.perf_counter() - start)
        boxes.append(box)
        top, bottom, left, right = box
        trimmed = box != (0, rgb.shape[0], 0, rgb.shape[1])
        content_maps.append(extractor.pool5(extractor.resize(
            np.ascontiguousarray(rgb[top:bottom, left:right]))[None])[0] if trimmed else maps[-1])
    return {"pool5": np.stack(maps), "content_pool5": np.stack(content_maps),
            "boxes": np.array(boxes), "total": np.array(total), "loading": np.array(loading),
            "trim": np.array(trim)}


def embed_regions(inputs: list[QueryInput], query_dir: Path, extractor: FeatureExtractor,
                  out: Path) -> list[QueryInput]:
    """Each query's regions (`methods.all_regions` of its trimmed content) through the CNN once,
    cached like the queries, each forward timed."""
    listing = (query_dir / QUERIES_FILE).read_bytes()
    key = hashlib.sha256(listing + str(extractor.input_size).encode()
                         + REGION_CACHE_VERSION).hexdigest()[:24]
    cache = out / "cache" / f"regions-{key}.npz"
    regions = [all_regions(q.content_rgb) for q in inputs]
    if not cache.exists():
        maps, seconds = [], []
        for q, found in zip(inputs, regions, strict=True):
            for region in found:
                start = time.perf_counter()
                maps.append(extractor.pool5(extractor.resize(region.crop(q.content_rgb))[None])[0])
                seconds.append(time.perf_counter() - start)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, pool5=np.array(maps, dtype=np.float16).reshape(-1, 512, 7, 7),
                 seconds=np.array(seconds), boxes=np.array(
                     [r.box for found in regions for r in found]).reshape(-1, 4))
    with np.load(cache) as data:
        arrays = dict(data)
    if [tuple(b) for b in arrays["boxes"].tolist()] != [r.box for f in regions for r in f]:
        raise RuntimeError(f"{cache}: cached regions differ from today's; delete the file")
    embedded, start = [], 0
    for q, found in zip(inputs, regions, strict=True):
        end = start + len(found)
        embedded.append(replace(q, regions=tuple(found),
                                region_pool5=arrays["pool5"][start:end],
                                region_seconds=tuple(arrays["seconds"][start:end].tolist())))
        start = end
    return embedded


def verdict_study(settings: Settings, videos: list[CorpusVideo], analyses: list[VideoAnalysis],
                  selection: Selection, config: IndexConfig, queries: list[Query],
                  inputs: list[QueryInput], methods: list[Ours], extractor: FeatureExtractor
                  ) -> dict:
    """True matches kept at outside FPR ≤ 1% (frameseek/eval/verdicts.py), per method, with
    the similarity rule alone and, for verified methods, with inliers too."""
    everything = corpus_videos(settings.corpus)
    works = {str(v.path): v.work for v in everything}
    outside_videos = [v.path for v in everything if v.role == "outside"]
    outside: list[tuple[Query, QueryInput]] = []
    if outside_videos:
        directory = settings.out / "queries-outside"
        found = make_queries(outside_videos, directory, OUTSIDE_PER_VIDEO, settings.seed)
        features, _, _ = embed_queries(found, directory, extractor, settings.out)
        outside = list(zip(found, embed_regions(features, directory, extractor, settings.out),
                           strict=True))
    reduced: dict[str, Index] = {}

    def without(work: str) -> Index:
        if work not in reduced:
            kept = [a for a in analyses if works[a.path] != work]
            reduced[work] = build_ours(settings.out / "index" / f"without-{len(reduced)}", kept,
                                       selection, replace(config, pooling="rmac"))
        return reduced[work]

    inside = list(zip(queries, inputs, strict=True))
    results = {}
    for method in methods:
        found = collect(method, inside, outside, works, without)
        results[method.name] = {"similarity": study(found, use_inliers=False)}
        if method.name.startswith(VERIFIED):
            results[method.name]["similarity or inliers"] = study(found, use_inliers=True)
        log.info("verdicts of %s", method.name)
    for index in reduced.values():
        index.close()
    return results


def search_all(method: Method, queries: list[Query], inputs: list[QueryInput],
               cnn_seconds: np.ndarray, load_seconds: np.ndarray) -> list[Outcome]:
    method.search(inputs[0])  # warm-up: first-call allocations are not a query's cost
    outcomes = []
    for i, (query, q) in enumerate(zip(queries, inputs, strict=True)):
        start = time.perf_counter()
        results = method.search(q)
        seconds = time.perf_counter() - start
        before = cnn_seconds[i] if method.uses_cnn else load_seconds[i]
        before += method.query_seconds(q)
        outcomes.append(Outcome(query, results, seconds, float(before)))
    return outcomes


def gallery_picks(outcomes: list[Outcome], seed: int, count: int = 3) -> list[Outcome]:
    """A few queries of each set, seeded, so the page shows hits and misses as they come."""
    rng = np.random.default_rng(seed)
    picks: list[Outcome] = []
    for set_name in SETS:
        chosen = [o for o in outcomes if o.query.set == set_name]
        picks.extend(chosen[i] for i in sorted(rng.permutation(len(chosen))[:count]))
    return picks


def index_meta(index: Index, command: str) -> dict:
    """What the evaluations over an existing index (`eval clips`, `eval recurring`) print
    beside their figures: when, on what CPU, the command, and the back end that ran the CNN."""
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{backends.cpu_model()}, {backends.usable_cpus()} CPUs",
            "command": command, "inference": backends.summary(index.extractor.backbone.backend)}


def meta(settings: Settings, config: IndexConfig, extractor: FeatureExtractor) -> dict:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {_cpu_name()}, {_cpu_count()} CPU cores available",
        "python": platform.python_version(),
        "command": settings.command,
        "smoke": settings.smoke,
        "seed": settings.seed,
        "queries_per_video": settings.per_video,
        "inference": backends.describe(extractor.backbone.backend),
        "config": {"theta": config.theta, "sample_fps": config.sample_fps,
                   "samples_per_cluster": config.samples_per_cluster,
                   "input_size": config.input_size, "coverage_margin": config.coverage_margin},
    }


def corpus_summary(videos: list[CorpusVideo], analyses: list[VideoAnalysis],
                   queries: list[Query]) -> dict:
    return {
        "videos": len(videos),
        "query_videos": sum(v.role == "query" for v in videos),
        "distractor_videos": sum(v.role == "distractor" for v in videos),
        "duration_s": sum(a.duration for a in analyses),
        "frames": sum(a.frames for a in analyses),
        "samples": sum(len(a.times) for a in analyses),
        "queries": {s: sum(q.set == s for q in queries) for s in SETS},
    }


def indexing_summary(analyses: list[VideoAnalysis], methods: list[Method]) -> dict:
    duration = sum(a.duration for a in analyses)
    wall = sum(a.seconds for a in analyses)
    return {
        "analysis_wall_s": wall,
        "analysis_cpu_s": sum(a.cpu_seconds for a in analyses),
        "analysis_wall_s_per_video_s": wall / duration if duration else 0.0,
        "method_build_s": {m.name: m.build_seconds for m in methods},
    }


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
