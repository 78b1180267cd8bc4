"""What a search answers: matched key frames (`Match`), the verdict on the query as a whole
(`Verdict`), and the videos with every moment the picture appears in them (`VideoResult`).

Plain data, imported by the stages that produce them (frameseek/index.py, frameseek/localize.py)
and by those that show them (the command line, the server), so that none of these imports
another for its types."""

from __future__ import annotations

from dataclasses import dataclass

from frameseek.verdict import MATCH_INLIERS


def similarity(distance: float) -> float:
    """The cosine of two unit-length descriptors at this L2 distance: |a - b|² = 2 - 2 cos. For an
    index of the paper's mean descriptors (not unit length) it orders as the distance does, on no
    fixed scale."""
    return 1.0 - distance * distance / 2.0


@dataclass(frozen=True)
class Match:
    video: str
    time: float
    frame: int
    distance: float
    keyframe_id: int
    segments: list[tuple[float, float]]
    # `time` and `frame` are the moment found; these are the matched key frame's own, and the
    # span of its segments that the moment lies in (see frameseek/localize.py).
    keyframe_time: float = 0.0
    keyframe_frame: int = 0
    segment: tuple[float, float] = (0.0, 0.0)
    refined: bool = False
    # Geometric inliers between the query and this key frame (frameseek/verify.py); None where
    # the key frame was not verified.
    inliers: int | None = None
    # The part of the query (top, bottom, left, right) whose descriptor found this key frame;
    # None for the whole query.
    region: tuple[int, int, int, int] | None = None

    def to_json(self) -> dict:
        return {"video": self.video, "time": round(self.time, 4), "frame": self.frame,
                "distance": round(self.distance, 4), "keyframe_time": round(self.keyframe_time, 4),
                "keyframe_frame": self.keyframe_frame,
                "segment": [round(self.segment[0], 4), round(self.segment[1], 4)],
                "refined": self.refined, "inliers": self.inliers,
                "region": list(self.region) if self.region is not None else None}


@dataclass(frozen=True)
class Verdict:
    """Whether a query shows a video of the collection at all (docs/robust.md, "No match")."""

    match: bool
    similarity: float  # the best key frame's: cosine of the unit-length fine vectors
    threshold: float
    # The most geometric inliers of a verified key frame, and the count that makes a match by
    # itself; None where nothing was verified.
    inliers: int | None = None
    min_inliers: int = MATCH_INLIERS

    def to_json(self) -> dict:
        return {"match": self.match, "similarity": round(self.similarity, 4),
                "threshold": self.threshold, "inliers": self.inliers,
                "min_inliers": self.min_inliers}


@dataclass(frozen=True)
class Moment:
    """One stretch of a video where the picture appears: the frame that shows it best."""

    time: float
    frame: int
    similarity: float  # of the key frame that stands for the stretch
    start: float  # the stretch
    end: float
    keyframe_id: int

    def to_json(self) -> dict:
        return {"time": round(self.time, 4), "frame": self.frame,
                "similarity": round(self.similarity, 4), "start": round(self.start, 4),
                "end": round(self.end, 4)}


@dataclass(frozen=True)
class VideoResult:
    """A matching video, with every distinct moment the picture appears in it, in time order."""

    video: str
    score: float  # its best moment's similarity
    moments: list[Moment]

    @property
    def appearances(self) -> int:
        return len(self.moments)

    @property
    def seconds(self) -> float:
        """How long the picture is on screen in all: the stretches' total duration."""
        return sum(m.end - m.start for m in self.moments)

    def to_json(self) -> dict:
        return {"video": self.video, "score": round(self.score, 4),
                "appearances": self.appearances, "seconds": round(self.seconds, 3),
                "moments": [m.to_json() for m in self.moments]}


@dataclass(frozen=True)
class Answer:
    """One query's answer: the matched key frames, best first, and the matching videos."""

    results: list[Match]
    videos: list[VideoResult]
