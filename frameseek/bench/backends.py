"""The inference back ends side by side: load time, ms per image at batch 1 and batch 8, and
how closely their pool5 maps follow onnxruntime fp32's on real video frames.

Back ends take turns within each round, so that the load of other processes weighs on all of
them alike; the figures are medians over the rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from frameseek import backends
from frameseek.backends.hardware import cpu_flags, native_bf16
from frameseek.features import pool5_model, preprocess, self_check_reference
from frameseek.video import iter_frames

BATCHES = (1, 8)
REFERENCE = "onnxruntime-fp32"


def frames(video: Path, count: int, size: int, every: int = 24) -> np.ndarray:
    """`count` frames of `video`, one in `every`, resized to the CNN's square input."""
    from PIL import Image

    chosen = []
    for frame in iter_frames(video):
        if frame.number % every == 0:
            pil = Image.fromarray(frame.rgb()).resize((size, size), Image.Resampling.BILINEAR)
            chosen.append(np.asarray(pil))
            if len(chosen) == count:
                break
    return np.stack(chosen)


def run(video: Path, names: list[str] | None = None, rounds: int = 5, size: int = 224,
        threads: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda _line: None)
    load_before = os.getloadavg()[0]
    threads = threads or backends.usable_cpus()
    specs = [s for s in backends.BACKENDS if names is None or s.name in names]
    unavailable = {s.name: reason for s in specs if (reason := s.unavailable())}
    model = pool5_model()
    loaded: dict[str, backends.Backend] = {}
    load_s: dict[str, float] = {}
    for spec in specs:
        if spec.name in unavailable:
            continue
        start = time.perf_counter()
        loaded[spec.name] = spec.load(model, threads)
        load_s[spec.name] = time.perf_counter() - start
        say(f"{spec.name}: loaded in {load_s[spec.name]:.2f} s")
    inputs = preprocess(frames(video, max(BATCHES), size))
    reference = next(iter(loaded.values())) if REFERENCE not in loaded else loaded[REFERENCE]
    expected = reference(inputs)
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in BATCHES} for n in loaded}
    for batch in BATCHES:
        for backend in loaded.values():
            backend(inputs[:batch])  # the first forward at a shape allocates
        for _ in range(rounds):
            for name, backend in loaded.items():
                start = time.perf_counter()
                backend(inputs[:batch])
                times[name][batch].append((time.perf_counter() - start) * 1000 / batch)
        say(f"batch {batch}: done")
    results = {}
    for name, backend in loaded.items():
        cosine = backends.pool5_cosine(backend(inputs), expected)
        results[name] = {
            **backends.describe(backend),
            "load_s": round(load_s[name], 3),
            **{f"ms_per_image_batch{b}": round(statistics.median(times[name][b]), 1)
               for b in BATCHES},
            "min_cosine_vs_reference": round(float(cosine.min()), 6),
            "self_check_cosine": round(self_check_reference().agreement(backend), 6),
        }
    return {
        "cpu_model": backends.cpu_model(),
        "native_bf16": native_bf16(cpu_flags()),
        "threads": threads,
        "input_size": size,
        "rounds": rounds,
        "reference": reference.name,
        "frames": f"{len(inputs)} frames of {video}",
        "auto": backends.select(model, threads, self_check_reference(), backends.AUTO).name,
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "backends": results,
        "unavailable": unavailable,
    }
