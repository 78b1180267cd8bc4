"""`frameseek eval clips`: clip queries ("where is this clip from?") made from the corpus and
searched in an index of it.

From each query video, clips of 4-10 s are cut at seeded times and re-encoded by ffmpeg
(H.264, as the corpus) in one of these ways: half size, quarter size, half size at 12 fps, a
light crop (85% of the frame), a dark band over the lower part (a caption or overlay), and
clips joining two sources (3-5 s of each of two videos). Clips of the videos the index does not
hold (the corpus's "outside" videos, and any video left out of the index: an index of the corpus
without one work makes that work's videos outside, for as many outside clips as it has videos)
must be answered "no match".

A clip is found when its best segment is from its video and overlaps the true stretch with an
IoU of at least 0.5 (for a joined clip: each source by one of its segments). Reported per kind,
with the wall time of each query.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from frameseek.clips import ClipAnswer
from frameseek.eval.corpus import ENCODE_ARGS, _ffmpeg
from frameseek.eval.run import CorpusVideo, corpus_videos, index_meta
from frameseek.index import Index
from frameseek.video import probe

# ffmpeg filters, all ending in even dimensions for yuv420p.
HALF = "scale=trunc(iw/4)*2:-2"
KINDS = {
    "half size": HALF,
    "quarter size": "scale=trunc(iw/8)*2:-2",
    "half size, 12 fps": f"fps=12,{HALF}",
    "light crop": f"crop=iw*0.85:ih*0.85,{HALF}",
    "overlay band": f"drawbox=x=0:y=ih*0.72:w=iw:h=ih*0.2:color=black@0.7:t=fill,{HALF}",
}
JOINED = "two sources joined"
OUTSIDE = "outside (not indexed)"
MIN_S, MAX_S = 4.0, 10.0
MIN_IOU = 0.5
OUTSIDE_PER_VIDEO = 10


@dataclass(frozen=True)
class Source:
    video: str  # the file's name
    start: float
    end: float


@dataclass(frozen=True)
class ClipQuery:
    file: str
    kind: str
    sources: list[Source]  # empty for an outside clip


def make_clips(videos: list[CorpusVideo], indexed: set[str], out: Path, seed: int = 0
               ) -> list[ClipQuery]:
    """One clip of each kind per indexed query video (cycling through the kinds), a joined clip
    per pair of consecutive ones, and OUTSIDE_PER_VIDEO clips of each video whose file name is
    not in `indexed` (the kinds in turn)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    queries: list[ClipQuery] = []
    inside = [v for v in videos if v.role == "query" and v.path.name in indexed]
    kinds = list(KINDS)
    for number, video in enumerate(inside):
        kind = kinds[number % len(kinds)]
        source = _stretch(video.path, rng, MIN_S, MAX_S)
        if source is not None:
            queries.append(_cut(video.path, source, out / f"clip-{number:03d}.mp4", kind,
                                KINDS[kind]))
    for number, (a, b) in enumerate(zip(inside[::2], inside[1::2], strict=False)):
        first, second = _stretch(a.path, rng, 3.0, 5.0), _stretch(b.path, rng, 3.0, 5.0)
        if first is not None and second is not None:
            queries.append(_join(a.path, first, b.path, second, out / f"joined-{number:03d}.mp4"))
    for number, video in enumerate(v for v in videos if v.path.name not in indexed):
        for copy in range(OUTSIDE_PER_VIDEO):
            source = _stretch(video.path, rng, MIN_S, MAX_S)
            if source is not None:
                filters = KINDS[kinds[copy % len(kinds)]]
                clip = _cut(video.path, source, out / f"outside-{number:02d}-{copy}.mp4",
                            OUTSIDE, filters)
                queries.append(ClipQuery(clip.file, OUTSIDE, []))
    (out / "clips.json").write_text(json.dumps([asdict(q) for q in queries], indent=1))
    return queries


def _stretch(path: Path, rng: np.random.Generator, shortest: float, longest: float
             ) -> Source | None:
    duration = probe(path).duration
    if duration < shortest + 0.5:
        return None
    length = float(rng.uniform(shortest, min(longest, duration - 0.5)))
    start = float(rng.uniform(0.0, duration - length))
    return Source(path.name, round(start, 3), round(start + length, 3))


def _cut(path: Path, source: Source, target: Path, kind: str, filters: str) -> ClipQuery:
    _ffmpeg(["-ss", f"{source.start:.3f}", "-t", f"{source.end - source.start:.3f}",
             "-i", path, "-vf", f"setpts=PTS-STARTPTS,{filters}", *ENCODE_ARGS, target])
    return ClipQuery(target.name, kind, [source])


def _join(a: Path, first: Source, b: Path, second: Source, target: Path) -> ClipQuery:
    size = "scale=320:180,setsar=1"
    graph = (f"[0:v]setpts=PTS-STARTPTS,{size},fps=25[a];[1:v]setpts=PTS-STARTPTS,{size},"
             "fps=25[b];[a][b]concat=n=2:v=1[v]")
    arguments = ["-ss", f"{first.start:.3f}", "-t", f"{first.end - first.start:.3f}", "-i", a,
                 "-ss", f"{second.start:.3f}", "-t", f"{second.end - second.start:.3f}", "-i", b,
                 "-filter_complex", graph, *ENCODE_ARGS, target]
    arguments[arguments.index("0:v:0")] = "[v]"
    _ffmpeg(arguments)
    return ClipQuery(target.name, JOINED, [first, second])


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return overlap / union if union > 0 else 0.0


def found(query: ClipQuery, answer: ClipAnswer) -> bool:
    """Whether the answer names every source of the clip (module doc); for an outside clip,
    whether it says "no match"."""
    if not query.sources:
        return answer.match is False
    if not answer.match:
        return False
    segments = answer.segments if query.kind == JOINED else answer.segments[:1]
    return all(any(Path(s.video).name == source.video
                   and iou((s.start, s.end), (source.start, source.end)) >= MIN_IOU
                   for s in segments) for source in query.sources)


def evaluate(index: Index, queries: list[ClipQuery], folder: Path) -> dict:
    outcomes = []
    for query in queries:
        start = time.perf_counter()
        answer = index.search_clip(folder / query.file)
        outcomes.append({"file": query.file, "kind": query.kind, "found": found(query, answer),
                         "seconds": time.perf_counter() - start,
                         "duration": answer.duration, "answer": answer.to_json()})
    kinds = [*KINDS, JOINED, OUTSIDE]
    table = {}
    for kind in kinds:
        chosen = [o for o in outcomes if o["kind"] == kind]
        if chosen:
            table[kind] = {"clips": len(chosen),
                           "found": sum(o["found"] for o in chosen) / len(chosen),
                           "seconds_median": statistics.median(o["seconds"] for o in chosen)}
    inside = [o for o in outcomes if o["kind"] != OUTSIDE]
    outside = [o for o in outcomes if o["kind"] == OUTSIDE]
    return {"kinds": table, "outcomes": outcomes,
            "inside_found": sum(o["found"] for o in inside) / max(1, len(inside)),
            "outside_clips": len(outside),
            "outside_no_match": sum(o["found"] for o in outside),
            "seconds_median": statistics.median(o["seconds"] for o in outcomes)}


def report(results: dict, meta: dict) -> str:
    lines = ["# Clip queries", "",
             f"Generated {meta['date']} on {meta['machine']}; CNN {meta['inference']}. "
             f"Command: `{meta['command']}`", "",
             "A clip is found when its best segment is from its video with IoU ≥ 0.5 against "
             "the true stretch (joined clips: both sources); an outside clip when it is "
             "answered \"no match\".", "",
             "| kind | clips | found | median s per query |", "|---|---|---|---|"]
    for kind, row in results["kinds"].items():
        lines.append(f"| {kind} | {row['clips']} | {row['found']:.3f} | "
                     f"{row['seconds_median']:.2f} |")
    lines += ["", f"Clips from indexed videos found: {results['inside_found']:.3f}; median "
              f"query {results['seconds_median']:.2f} s (sampling, CNN, search, alignment).",
              f"Outside clips answered \"no match\": {results['outside_no_match']} of "
              f"{results['outside_clips']}.", ""]
    return "\n".join(lines)


def run(corpus: Path, index_dir: Path, out: Path, seed: int, command: str) -> dict:
    videos = corpus_videos(corpus)
    with Index.open(index_dir) as index:
        indexed = {Path(v.path).name for v in index.videos()}
        queries = make_clips(videos, indexed, out / "clips", seed)
        results = evaluate(index, queries, out / "clips")
        meta = {**index_meta(index, command), "seed": seed}
    results["meta"] = meta
    (out / "clips-results.json").write_text(json.dumps(results, indent=1))
    (out / "clips.md").write_text(report(results, meta))
    return results
