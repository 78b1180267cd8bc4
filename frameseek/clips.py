"""Clip queries: "where is this clip from?" for a few seconds of video, re-encoded, resized, at
another frame rate, cropped or overlaid, or joined from several sources (copy detection).

The clip is sampled at CLIP_FPS; each sample is searched as an image query would be. A sample at
clip time q whose key frame k matches says the clip lies in k's video at an offset t - q, for
some t in one of k's segments: an interval of offsets per segment. The offset that the most
samples agree on (the deepest point of their intervals: a Hough vote over time, exact rather
than binned) is a segment of the clip aligned with that video. Its samples are set aside and the
vote repeated, so that a clip joining two sources answers two segments. The offset is then made
exact by localising the segment's samples to their frames (frameseek/localize.py) and taking
the median.

A segment needs MIN_SUPPORT agreeing samples; the clip is a match when its best segment's
samples are, on average, at or above the image verdict's threshold. A featureless sample (a
black or white frame of a fade) votes for nothing: such frames are in every video, and two of
them made a clip of the film match a slide show's black first frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frameseek.keyframes import Sampler
from frameseek.results import Match, similarity
from frameseek.video import VideoError, iter_frames, probe

CLIP_FPS = 2.0
MAX_CLIP_S = 120.0  # longer queries are refused: a clip query is seconds, not a film
KEYFRAMES_PER_SAMPLE = 20
MIN_SUPPORT = 2
SEGMENTS = 5
# A sample whose grey levels spread less than this (standard deviation, 0-255) shows no picture.
# Fades to black measured 0-1.4 on the corpus; a real frame's are tens.
FEATURELESS_STD = 4.0


def featureless(rgb: np.ndarray) -> bool:
    """Whether a sample is too flat to say anything about where the clip is from."""
    step = max(1, min(rgb.shape[:2]) // 64)  # a 64-px grid is plenty to see a picture
    return float(rgb[::step, ::step].mean(axis=2).std()) < FEATURELESS_STD


class ClipError(VideoError):
    """A clip that cannot be a query: undecodable, without video, or too long."""


class ClipTooLong(ClipError):
    """A clip over MAX_CLIP_S."""


@dataclass(frozen=True)
class Sample:
    """One sampled frame of the clip: its time, its trimmed pixels and what it matched."""

    time: float
    pixels: np.ndarray
    matches: list[Match]


@dataclass(frozen=True)
class Segment:
    """A stretch of the clip found in an indexed video: [query_start, query_end] of the clip is
    [start, end] of `video`."""

    video: str
    start: float
    end: float
    query_start: float
    query_end: float
    score: float  # the agreeing samples' mean similarity
    samples: int  # how many agreed

    def to_json(self) -> dict:
        return {"video": self.video, "start": round(self.start, 3), "end": round(self.end, 3),
                "query_start": round(self.query_start, 3),
                "query_end": round(self.query_end, 3), "score": round(self.score, 4),
                "samples": self.samples}


@dataclass(frozen=True)
class ClipAnswer:
    segments: list[Segment]  # best first
    match: bool | None  # None for a pooling without a calibrated threshold
    samples: int
    duration: float

    def to_json(self) -> dict:
        return {"match": self.match, "samples": self.samples,
                "duration": round(self.duration, 3),
                "segments": [s.to_json() for s in self.segments]}


def sample_clip(path: Path, fps: float = CLIP_FPS, max_seconds: float = MAX_CLIP_S
                ) -> list[tuple[float, np.ndarray]]:
    """The clip's frames at `fps` (time from the clip's start, RGB), or ClipError."""
    path = Path(path)
    try:
        info = probe(path)
    except VideoError as exc:
        raise ClipError(str(exc)) from None
    if info.duration > max_seconds:
        raise ClipTooLong(f"{path}: the clip is {info.duration:.0f} s long; clip queries take at "
                        f"most {max_seconds:.0f} s")
    sampler, frames, first = Sampler(fps), [], None
    try:
        for frame in iter_frames(path):
            first = frame.time if first is None else first
            if frame.time - first > max_seconds:
                raise ClipTooLong(f"{path}: the clip runs past {max_seconds:.0f} s; clip queries "
                                f"take at most {max_seconds:.0f} s")
            if sampler.take(frame.time - first):
                frames.append((frame.time - first, frame.rgb()))
    except ClipError:
        raise
    except VideoError as exc:
        raise ClipError(str(exc)) from None
    if not frames:
        raise ClipError(f"{path}: no frame could be decoded")
    return frames


def align(samples: list[Sample], step: float, min_similarity: float | None,
          localise: Callable[[np.ndarray, Match], float]) -> list[Segment]:
    """The clip's segments, best first (module doc). `localise(pixels, match)` is the exact
    time in the match's video that a sample shows."""
    votes = [[m for m in s.matches
              if min_similarity is None or similarity(m.distance) >= min_similarity]
             for s in samples]
    left = set(range(len(samples)))
    segments: list[Segment] = []
    while left and len(segments) < SEGMENTS:
        found = _strongest(samples, votes, left)
        if found is None:
            break
        video, low, high, agreeing = found
        # Each agreeing sample localised to its frame; a look-alike frame elsewhere in the video
        # (outside the voted range) is left out, and the median of the rest is the offset.
        offsets = [localise(samples[i].pixels, next(m for m in votes[i] if m.video == video))
                   - samples[i].time for i in agreeing]
        inside = [o for o in offsets if low - step <= o <= high + step]
        offset = float(np.median(inside)) if inside else (low + high) / 2
        query_start = min(samples[i].time for i in agreeing)
        query_end = max(samples[i].time for i in agreeing) + step
        score = float(np.mean([_similarity_in(votes[i], video) for i in agreeing]))
        segments.append(Segment(video, max(0.0, query_start + offset), query_end + offset,
                                query_start, query_end, score, len(agreeing)))
        left -= set(agreeing)
    return sorted(segments, key=lambda s: -s.score * s.samples)


def _similarity_in(matches: list[Match], video: str) -> float:
    return max(similarity(m.distance) for m in matches if m.video == video)


def _strongest(samples: list[Sample], votes: list[list[Match]], left: set[int]
               ) -> tuple[str, float, float, list[int]] | None:
    """The video and offset range most samples of `left` agree on, and those samples; None
    when no offset has MIN_SUPPORT of them."""
    spans: dict[str, list[tuple[float, float, int, float]]] = {}
    for i in sorted(left):
        for match in votes[i]:
            for start, end in match.segments:
                spans.setdefault(match.video, []).append(
                    (start - samples[i].time, end - samples[i].time, i, similarity(match.distance)))
    best: tuple[int, float, str, float, float, list[int]] | None = None
    for video, found in spans.items():
        lows, highs, owners, weights = (np.array(c) for c in zip(*found, strict=True))
        # Every stretch between two consecutive interval ends has one depth: the number of
        # distinct samples whose intervals hold its middle; and one strength: the sum over those
        # samples of the best similarity among their key frames that put the clip there.
        edges = np.unique(np.concatenate([lows, highs]))
        if len(edges) == 1:
            edges = np.repeat(edges, 2)
        middles = (edges[:-1] + edges[1:]) / 2
        inside = (lows[None, :] <= middles[:, None]) & (middles[:, None] <= highs[None, :])
        ids, first = np.unique(owners, return_index=True)  # spans are grouped by sample
        holds = np.logical_or.reduceat(inside, first, axis=1)
        strength = np.maximum.reduceat(np.where(inside, weights[None, :], -np.inf), first,
                                       axis=1)
        depth = holds.sum(axis=1)
        strength = np.where(holds, strength, 0.0).sum(axis=1)
        point = int(np.lexsort((strength, depth))[-1])
        if depth[point] < MIN_SUPPORT:
            continue
        if best is None or (int(depth[point]), float(strength[point])) > best[:2]:
            best = (int(depth[point]), float(strength[point]), video, float(edges[point]),
                    float(edges[point + 1]), [int(i) for i in ids[holds[point]]])
    if best is None:
        return None
    return best[2], best[3], best[4], best[5]
