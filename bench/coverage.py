"""The coverage guarantee's margin: what each margin costs in key frames and what it buys.

For each video, every frame (or every `--frame-step`-th) goes through VGG16 once, so that the
study can ask of *every* frame, not only of the 2-fps samples the guarantee is stated on: is its
R-MAC descriptor at least the match threshold (0.58) similar to some key frame of its video? A
frame of an indexed video below it is answered "no match". Key frames are chosen as
`frameseek index` chooses them (Algorithm 1 over the samples: the paper's m, the sampling cap,
k-means on the mean-pooled descriptors), then `keyframes.cover` adds key frames at each margin.

    python bench/coverage.py samples/videos/*.mp4 tests/data/carphone.mp4 --out /tmp/coverage

prints one JSON object: per rule ("paper" is no coverage; "samples covered M" applies
`keyframes.cover` to the 2-fps samples alone; "gaps closed M" is `frameseek index`'s extractor at
margin M), the key frames, the frames the CNN embedded, the compression ratio, the frames answered
"no match", and the lowest frame similarity; the per-frame descriptors are cached in --out.
"""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path

import numpy as np

from frameseek import backends
from frameseek.features import mean_pool_spatial
from frameseek.index import IndexConfig, content_id, feature_extractor
from frameseek.keyframes import (
    HISTOGRAM_SIZE,
    KeyFrameExtractor,
    Sampler,
    color_histogram,
    count_clusters,
    cover,
    select_keyframes,
)
from frameseek.video import iter_frames

MARGINS = (None, 0.0, 0.05, 0.1, 0.2)


def frame_descriptors(path: Path, cache: Path) -> dict[str, np.ndarray]:
    """Per frame: time, histogram distance to the previous frame, the mean-pooled and R-MAC
    descriptors. Cached by content."""
    cached = cache / f"{content_id(path)}-1.npz"
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
        pixels.append(frame.rgb(extractor.input_size, extractor.input_size))
    pool5 = extractor.pool5(np.stack(pixels))
    data = {"numbers": np.asarray(numbers), "times": np.asarray(times),
            "distances": np.asarray(distances, dtype=np.float32),
            "mean": mean_pool_spatial(pool5), "rmac": extractor.features(pool5).descriptors}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **data)
    return data


def study(path: Path, data: dict[str, np.ndarray], config: IndexConfig, threshold: float
          ) -> dict:
    """Per rule, the key frames and how well they cover every frame. "samples covered" applies
    `cover` to the regular samples only; "gaps closed" is the real `KeyFrameExtractor`."""
    sampler = Sampler(config.sample_fps)
    sampled = np.asarray([row for row, t in enumerate(data["times"]) if sampler.take(t)])
    m = count_clusters(data["distances"], config.theta)
    cap = max(1, int(len(sampled) / config.samples_per_cluster))
    rows, labels = select_keyframes(data["mean"][sampled], min(m, cap), config.seed)
    rmac = data["rmac"]
    extractor = feature_extractor(config)
    rules: dict[str, tuple[np.ndarray, int, int]] = {}  # key-frame descriptors, added, embedded
    for margin in MARGINS:
        if margin is None:
            rules["paper"] = (rmac[sampled[rows]], 0, len(sampled))
            continue
        chosen, _, added = cover(rmac[sampled], rows, labels, threshold + margin)
        rules[f"samples covered {margin:.2f}"] = (rmac[sampled[chosen]], added, len(sampled))
        result = KeyFrameExtractor(extractor, coverage=threshold + margin).extract(
            iter_frames(path))
        rules[f"gaps closed {margin:.2f}"] = (np.stack([k.descriptor for k in result.keyframes]),
                                              result.coverage_added,
                                              result.sampled + result.gap_samples)
    out = {}
    for name, (keyframes, added, embedded) in rules.items():
        best = (rmac @ keyframes.T).max(axis=1)
        out[name] = {"keyframes": len(keyframes), "added": added, "embedded": embedded,
                     "no_match_frames": int(np.count_nonzero(best < threshold)),
                     "min_similarity": round(float(best.min()), 4)}
    return {"frames": len(rmac), "samples": len(sampled), "rules": out,
            "adjacent_sample_similarity_min": round(float(min(
                rmac[a] @ rmac[b] for a, b in pairwise(sampled))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/coverage"))
    args = parser.parse_args()
    config = IndexConfig()
    threshold = feature_extractor(config).pooling.match_similarity
    assert threshold is not None
    videos = {str(v): study(v, frame_descriptors(v, args.out), config, threshold)
              for v in args.videos}
    frames = sum(v["frames"] for v in videos.values())
    totals = {}
    for name in next(iter(videos.values()))["rules"]:
        rows = [v["rules"][name] for v in videos.values()]
        keyframes = sum(r["keyframes"] for r in rows)
        totals[name] = {"keyframes": keyframes, "added": sum(r["added"] for r in rows),
                        "embedded": sum(r["embedded"] for r in rows),
                        "compression_ratio": round(1 - keyframes / frames, 4),
                        "no_match_frames": sum(r["no_match_frames"] for r in rows)}
    backend = backends.describe(feature_extractor(config).backbone.backend)
    print(json.dumps({"backend": backend, "threshold": threshold,
                      "frames": frames, "totals": totals, "videos": videos}, indent=1))


if __name__ == "__main__":
    main()
