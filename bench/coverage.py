"""The coverage guarantee's margin: what each margin costs in key frames and what it buys.

For each video, every frame (or every `--frame-step`-th) goes through VGG16 once, so that the
study can ask of *every* frame, not only of the 2-fps samples the guarantee is stated on: is its
R-MAC descriptor at least the match threshold (0.58) similar to some key frame of its video? A
frame of an indexed video below it is answered "no match". Key frames are chosen as
`frameseek index` chooses them (Algorithm 1 over the samples: the paper's m, the sampling cap,
k-means on the mean-pooled descriptors), then `keyframes.cover` adds key frames at each margin.

    python bench/coverage.py samples/videos/*.mp4 tests/data/carphone.mp4 --out /tmp/coverage

prints one JSON object: per margin ("paper" is no coverage), key frames, compression ratio,
the share of frames answered "no match", and the lowest frame similarity; the per-frame
descriptors are cached in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
from itertools import pairwise
from pathlib import Path

import numpy as np

from frameseek.features import mean_pool_spatial
from frameseek.index import IndexConfig, content_id, feature_extractor
from frameseek.keyframes import (
    HISTOGRAM_SIZE,
    Sampler,
    color_histogram,
    count_clusters,
    cover,
    select_keyframes,
)
from frameseek.video import iter_frames

MARGINS = (None, 0.0, 0.05, 0.1, 0.15, 0.2)


def frame_descriptors(path: Path, step: int, cache: Path) -> dict[str, np.ndarray]:
    """Per frame: number, time, histogram distance to the previous frame; per `step`-th frame:
    the mean-pooled and R-MAC descriptors. Cached by content."""
    cached = cache / f"{content_id(path)}-{step}.npz"
    if cached.exists():
        return dict(np.load(cached))
    extractor = feature_extractor(IndexConfig())
    numbers, times, distances, pixels = [], [], [], []
    previous = None
    for frame in iter_frames(path):
        histogram = color_histogram(frame.rgb(HISTOGRAM_SIZE, HISTOGRAM_SIZE))
        if previous is not None:
            distances.append(float(np.linalg.norm(histogram - previous)))
        previous = histogram
        numbers.append(frame.number)
        times.append(frame.time)
        if frame.number % step == 0:
            pixels.append(frame.rgb(extractor.input_size, extractor.input_size))
    pool5 = extractor.pool5(np.stack(pixels))
    data = {"numbers": np.asarray(numbers), "times": np.asarray(times),
            "distances": np.asarray(distances, dtype=np.float32),
            "mean": mean_pool_spatial(pool5), "rmac": extractor.features(pool5).descriptors}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **data)
    return data


def bisected(rmac: np.ndarray, sampled: np.ndarray, similarity: float) -> np.ndarray:
    """The samples, plus the middle frame of every gap between two adjacent ones less similar
    than `similarity`, recursively: where the picture moves fast, samples come closer."""
    rows = set(sampled.tolist())
    pending = list(pairwise(sampled.tolist()))
    while pending:
        a, b = pending.pop()
        if b - a > 1 and rmac[a] @ rmac[b] < similarity:
            middle = (a + b) // 2
            rows.add(middle)
            pending += [(a, middle), (middle, b)]
    return np.asarray(sorted(rows))


def study(data: dict[str, np.ndarray], step: int, config: IndexConfig, threshold: float
          ) -> dict:
    embedded = data["numbers"] % step == 0  # frames with descriptors, in order
    sampler = Sampler(config.sample_fps)
    samples = np.asarray([row for row, t in enumerate(data["times"]) if sampler.take(t)])
    if not embedded[samples].all():
        raise SystemExit(f"--frame-step {step} skips sampled frames: use a divisor of the "
                         "sampling step")
    position = np.cumsum(embedded) - 1  # frame row → descriptor row
    sampled = position[samples]
    m = count_clusters(data["distances"], config.theta)
    cap = max(1, int(len(samples) / config.samples_per_cluster))
    rows, labels = select_keyframes(data["mean"][sampled], min(m, cap), config.seed)
    rmac = data["rmac"]
    out = {}
    for margin in MARGINS:
        for dense in (False, True) if margin is not None else (False,):
            candidates, chosen, added = sampled, rows, 0
            if margin is not None:
                if dense:
                    candidates = bisected(rmac, sampled, threshold + margin)
                start = np.searchsorted(candidates, sampled[rows])
                clusters = np.full(len(candidates), -1)
                clusters[np.searchsorted(candidates, sampled)] = labels
                chosen, _, added = cover(rmac[candidates], start, clusters, threshold + margin)
            best = (rmac @ rmac[candidates[chosen]].T).max(axis=1)
            name = "paper" if margin is None else f"{margin:.2f}{' dense' if dense else ''}"
            out[name] = {
                "keyframes": len(chosen), "added": added, "embedded": len(candidates),
                "no_match_frames": int(np.count_nonzero(best < threshold)),
                "min_similarity": round(float(best.min()), 4),
            }
    return {"frames": len(data["numbers"]), "embedded_frames": int(embedded.sum()),
            "samples": len(samples), "margins": out,
            "adjacent_sample_similarity_min": round(float(min(
                rmac[a] @ rmac[b] for a, b in pairwise(sampled))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--frame-step", type=int, default=1,
                        help="embed every Nth frame (a divisor of the sampling step)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/coverage"))
    args = parser.parse_args()
    config = IndexConfig()
    threshold = feature_extractor(config).pooling.match_similarity
    assert threshold is not None
    videos = {str(v): study(frame_descriptors(v, args.frame_step, args.out), args.frame_step,
                            config, threshold) for v in args.videos}
    totals: dict[str, dict] = {}
    frames = sum(v["frames"] for v in videos.values())
    embedded = sum(v["embedded_frames"] for v in videos.values())
    for name in videos[str(args.videos[0])]["margins"]:
        keyframes = sum(v["margins"][name]["keyframes"] for v in videos.values())
        missed = sum(v["margins"][name]["no_match_frames"] for v in videos.values())
        totals[name] = {"keyframes": keyframes,
                        "added": sum(v["margins"][name]["added"] for v in videos.values()),
                        "compression_ratio": round(1 - keyframes / frames, 4),
                        "no_match_share": round(missed / embedded, 4)}
    print(json.dumps({"cpu": platform.processor() or platform.machine(),
                      "threshold": threshold, "frame_step": args.frame_step,
                      "totals": totals, "videos": videos}, indent=1))


if __name__ == "__main__":
    main()
