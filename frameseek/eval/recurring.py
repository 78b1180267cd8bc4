"""`frameseek eval recurring`: "where else does this appear?" measured on the corpus.

The truth comes from the pixels: every frame of each query video is decoded to a small grey
copy, and a picture's true moments are the stretches of frames within MAX_DIFFERENCE of it
(mean absolute difference, 0-255), runs closer than MERGE_S joined. A query is *recurring* when
its picture has two stretches more than RECURRENCE_S apart. Queries are frames taken once a
second, as JPEG files; each is searched (`Index.answer`) and the moments answered for its video
are scored:

- a true stretch is *listed* when an answered moment lies in it (within TOLERANCE_S);
- an answered moment is *true* when it lies in a true stretch of its video (within TOLERANCE_S);
  moments of other videos are false.

Reported for the recurring queries (the issue's measure) and for all of them.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from frameseek.eval.run import corpus_videos, index_meta
from frameseek.index import Index
from frameseek.video import iter_frames

GREY = (32, 18)
MAX_DIFFERENCE = 3.0
MERGE_S = 0.5
RECURRENCE_S = 2.0
TOLERANCE_S = 0.5
QUERY_EVERY_S = 1.0


@dataclass(frozen=True)
class Picture:
    video: Path
    time: float
    file: Path
    stretches: list[tuple[float, float]]  # every true moment of the picture, in time order

    @property
    def recurring(self) -> bool:
        return any(b[0] - a[1] > RECURRENCE_S for a, b in zip(self.stretches, self.stretches[1:],
                                                              strict=False))


def pictures(video: Path, out: Path) -> list[Picture]:
    """Query frames of one video, once a second, each with its true stretches."""
    times, greys, chosen = [], [], {}
    next_query = 0.0
    for frame in iter_frames(video):
        times.append(frame.time)
        greys.append(np.asarray(Image.fromarray(frame.rgb(*GREY)).convert("L"), np.float32))
        if frame.time >= next_query:
            chosen[len(times) - 1] = frame.rgb()
            next_query = frame.time + QUERY_EVERY_S
    stack, stamps = np.stack(greys), np.array(times)
    found = []
    for row, rgb in chosen.items():
        alike = np.abs(stack - stack[row]).mean(axis=(1, 2)) <= MAX_DIFFERENCE
        file = out / f"{video.stem}-{row:05d}.jpg"
        Image.fromarray(rgb).save(file, quality=90)
        found.append(Picture(video, float(stamps[row]), file, _stretches(stamps[alike])))
    return found


def _stretches(times: np.ndarray) -> list[tuple[float, float]]:
    runs: list[list[float]] = []
    for t in times:
        if runs and t - runs[-1][1] <= MERGE_S:
            runs[-1][1] = float(t)
        else:
            runs.append([float(t), float(t)])
    return [(a, b) for a, b in runs]


def _inside(time: float, stretches: list[tuple[float, float]]) -> bool:
    return any(a - TOLERANCE_S <= time <= b + TOLERANCE_S for a, b in stretches)


def score(picture: Picture, videos: list) -> dict:
    """One query's listed and true counts (module doc)."""
    moments = [(Path(v.video).name, m.time) for v in videos for m in v.moments]
    own = [t for name, t in moments if name == picture.video.name]
    listed = sum(any(a - TOLERANCE_S <= t <= b + TOLERANCE_S for t in own)
                 for a, b in picture.stretches)
    true = sum(_inside(t, picture.stretches) for t in own)
    return {"file": picture.file.name, "recurring": picture.recurring,
            "stretches": len(picture.stretches), "listed": listed, "answered": len(moments),
            "true": true}


def summary(scores: list[dict]) -> dict:
    stretches = sum(s["stretches"] for s in scores)
    answered = sum(s["answered"] for s in scores)
    return {"queries": len(scores), "true_moments": stretches,
            "listed": sum(s["listed"] for s in scores) / stretches if stretches else None,
            "answered_moments": answered,
            "true": sum(s["true"] for s in scores) / answered if answered else None}


def run(corpus: Path, index_dir: Path, out: Path, command: str) -> dict:
    folder = out / "recurring"
    folder.mkdir(parents=True, exist_ok=True)
    queries = [p for v in corpus_videos(corpus) if v.role == "query"
               for p in pictures(v.path, folder)]
    scores, seconds = [], []
    with Index.open(index_dir) as index:
        for picture in queries:
            start = time.perf_counter()
            answer = index.answer(picture.file)
            seconds.append(time.perf_counter() - start)
            scores.append(score(picture, answer.videos))
        meta = index_meta(index, command)
    results = {
        "meta": meta,
        "recurring": summary([s for s in scores if s["recurring"]]),
        "all": summary(scores),
        "seconds_median": statistics.median(seconds) if seconds else None,
        "scores": scores,
    }
    (out / "recurring-results.json").write_text(json.dumps(results, indent=1))
    (out / "recurring.md").write_text(report(results))
    return results


def report(results: dict) -> str:
    meta = results["meta"]

    def row(name: str, s: dict) -> str:
        listed = "–" if s["listed"] is None else f"{s['listed']:.3f}"
        true = "–" if s["true"] is None else f"{s['true']:.3f}"
        return (f"| {name} | {s['queries']} | {s['true_moments']} | {listed} | "
                f"{s['answered_moments']} | {true} |")

    return "\n".join([
        "# Every moment a picture appears", "",
        f"Generated {meta['date']} on {meta['machine']}; CNN {meta['inference']}. Command: "
        f"`{meta['command']}`", "",
        f"True moments: the stretches of frames within {MAX_DIFFERENCE} grey levels (mean "
        f"absolute difference at {GREY[0]}×{GREY[1]}) of the query frame; recurring: two "
        f"stretches more than {RECURRENCE_S:.0f} s apart. Listed / true within "
        f"{TOLERANCE_S} s.", "",
        "| queries | count | true moments | listed | moments answered | true |",
        "|---|---|---|---|---|---|",
        row("recurring pictures", results["recurring"]),
        row("all queries", results["all"]), "",
        f"Median query {results['seconds_median']:.2f} s.", ""])
