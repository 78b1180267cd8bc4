"""Benchmark: how close to the true moment the top result lands, with and without refinement.

Queries are random frames of each indexed video (seeded), saved as JPEG (plain) or damaged in
one of four ways (perturbed): a crop keeping 70% of the area at a random place, a downscale to
0.4, JPEG quality 30, brightness +25%. Prints one table row per query set and refinement mode,
and the bytes the signature tracks add to the index.

    python bench/localize.py --index DIR [--per-video 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from frameseek.index import Index
from frameseek.localize import TRACKS_FILE, GreyQuery, LocalisationSample, localisation_metrics
from frameseek.video import iter_frames

KINDS = ("crop", "downscale", "jpeg30", "brightness")


def perturb(rgb: np.ndarray, kind: str, rng: np.random.Generator) -> Image.Image:
    image = Image.fromarray(rgb)
    if kind == "crop":
        side = np.sqrt(0.7)
        w, h = round(image.width * side), round(image.height * side)
        x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
        return image.crop((x, y, x + w, y + h))
    if kind == "downscale":
        return image.resize((round(image.width * 0.4), round(image.height * 0.4)),
                            Image.Resampling.BILINEAR)
    if kind == "brightness":
        return ImageEnhance.Brightness(image).enhance(1.25)
    return image


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def queries(video: Path, per_video: int, seed: int, keyframes: set[int]
            ) -> list[tuple[str, bytes, float]]:
    """(set, JPEG bytes, true time) for random non-key frames of one video."""
    frames = list(iter_frames(video))
    rng = np.random.default_rng([seed, len(frames)])
    eligible = [f for f in frames[6:-6] if f.number not in keyframes]
    picked = sorted(rng.choice(len(eligible), size=min(per_video, len(eligible)), replace=False))
    found = []
    for i, row in enumerate(picked):
        frame = eligible[row]
        rgb = frame.rgb()
        kind = KINDS[i % len(KINDS)]
        found.append(("plain", jpeg(Image.fromarray(rgb), 90), frame.time))
        found.append((f"perturbed/{kind}", jpeg(perturb(rgb, kind, rng),
                                                30 if kind == "jpeg30" else 90), frame.time))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--per-video", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    samples: dict[str, list[LocalisationSample]] = {}
    with Index.open(args.index) as index:
        for record in index.videos():
            kf = {m.frame for m in index.store.keyframes(
                [int(i) for i in index.store.vectors().ids])
                if m.video == record.path}
            for name, data, true_time in queries(Path(record.path), args.per_video, args.seed, kf):
                pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                matches = index.search(pixels, refine=False)
                start = time.perf_counter()
                refined = index.localizer.refine(GreyQuery(pixels), matches)
                seconds = time.perf_counter() - start
                sample = LocalisationSample(
                    correct=matches[0].video == record.path, true_time=true_time,
                    keyframe_time=matches[0].time, refined_time=refined[0].time,
                    refine_seconds=seconds)
                for key in ("perturbed", name) if name != "plain" else ("plain",):
                    samples.setdefault(key, []).append(sample)
        info = index.info()
    size = sum(p.stat().st_size for p in args.index.iterdir() if p.is_file())
    tracks = sum(p.stat().st_size for p in args.index.glob(TRACKS_FILE + "*"))
    minutes = info["duration_s"] / 60
    print(f"index {size / 1024:.0f} KiB, tracks {tracks / 1024:.1f} KiB "
          f"({tracks / (size - tracks):.1%} of the rest), {tracks / 1024 / minutes:.1f} KiB "
          f"per indexed minute")
    print("| query set | n | correct video | refine | ≤0.5 s | ≤1 s | ≤2 s | median error s |"
          " added ms (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(samples):
        for mode, row in localisation_metrics(samples[key]).items():
            print(f"| {key} | {row['queries']} | {row['correct_video']:.2f} | {mode} | "
                  f"{row['within_0.5s']:.2f} | {row['within_1s']:.2f} | {row['within_2s']:.2f} | "
                  f"{row['median_error_s']:.3f} | {row['added_ms_median']:.1f} |")


if __name__ == "__main__":
    main()
