"""The compared methods (paper Tables 5 and 6), all over the same key frames and queries.

Ours searches a real frameseek `Index` on disk (coarse-to-fine); the baselines are exhaustive
searches over their own encodings of the same key frames (DFTA: of the shots containing them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frameseek.eval.analysis import GREY_SIZE, VideoAnalysis, grey_image
from frameseek.eval.encoders import BinaryTests, FisherEncoder, hamming
from frameseek.index import Index, IndexConfig, content_id
from frameseek.keyframes import KeyFrame, _spans
from frameseek.store.base import VideoRecord
from frameseek.video import probe

TOP = 12
CANDIDATES = 100  # Ours: coarse-stage candidates re-ranked on 512-d (frameseek's default)

# Per video: the analysis rows kept as key frames, and every sample's k-means cluster label.
Selection = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Result:
    video: str
    time: float
    start: float  # the span the entry stands for; a key frame's is its own time
    end: float
    keyframe_id: int | None = None  # Ours: the key frame in the index (for its thumbnail)


@dataclass(frozen=True)
class QueryInput:
    """A query image decoded once and through the CNN once; every method takes what it needs."""

    rgb: np.ndarray
    pool5: np.ndarray  # (1, 512, 7, 7) float32
    descriptor: np.ndarray  # (512,)
    index: np.ndarray  # (64,)


@dataclass
class Entries:
    """What each database row stands for."""

    videos: np.ndarray  # (N,) str
    starts: np.ndarray
    ends: np.ndarray
    times: np.ndarray

    def results(self, rows: np.ndarray) -> list[Result]:
        return [Result(str(self.videos[r]), float(self.times[r]), float(self.starts[r]),
                       float(self.ends[r])) for r in rows]


@dataclass
class KeyFrames:
    """The key frames of the whole corpus, with every sample-level input the methods use."""

    entries: Entries
    pool5: np.ndarray  # (N, 512, 7, 7) float16
    descriptors: np.ndarray
    index: np.ndarray
    grey: np.ndarray

    @classmethod
    def select(cls, analyses: list[VideoAnalysis], selection: Selection) -> KeyFrames:
        def gather(field: str) -> np.ndarray:
            return np.concatenate([getattr(a, field)[selection[a.path][0]] for a in analyses])

        times = gather("times")
        videos = np.concatenate([[a.path] * len(selection[a.path][0]) for a in analyses])
        return cls(Entries(videos, times, times, times), gather("pool5"), gather("descriptors"),
                   gather("index"), gather("grey"))


class Method:
    """A searchable database: `search` returns the top entries for one query."""

    name: str
    dimension: str
    uses_cnn = True
    entries: int
    vector_bytes: int  # bytes of one entry's vector
    build_seconds: float = 0.0  # work beyond the shared analysis pass

    def search(self, query: QueryInput, top: int = TOP) -> list[Result]:
        raise NotImplementedError


class Euclidean(Method):
    """Exhaustive L2 search over `vectors`; `encode` turns a query into the same space."""

    def __init__(self, name: str, dimension: str, vectors: np.ndarray, entries: Entries,
                 encode: Callable[[QueryInput], np.ndarray], build_seconds: float = 0.0) -> None:
        self.name, self.dimension = name, dimension
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = np.einsum("ij,ij->i", self.vectors, self.vectors)
        self.meta = entries
        self.encode = encode
        self.entries = len(self.vectors)
        self.vector_bytes = self.vectors.shape[1] * 4
        self.build_seconds = build_seconds

    def search(self, query: QueryInput, top: int = TOP) -> list[Result]:
        q = np.asarray(self.encode(query), dtype=np.float32).ravel()
        distances = self.norms - 2 * (self.vectors @ q)  # + |q|², the same for every row
        rows = np.argsort(distances, kind="stable")[:top]
        return self.meta.results(rows)


class Ours(Method):
    """frameseek itself: a real on-disk `Index`, searched coarse-to-fine."""

    name, dimension = "Ours", "64, 512"

    def __init__(self, index: Index, build_seconds: float) -> None:
        self.index = index
        self.entries = len(index.store.vectors())
        self.vector_bytes = (64 + 512) * 4
        self.build_seconds = build_seconds

    def search(self, query: QueryInput, top: int = TOP) -> list[Result]:
        matches = self.index.search_features(query.index, query.descriptor, top, CANDIDATES)
        return [Result(m.video, m.time, m.time, m.time, m.keyframe_id) for m in matches]


class LBTT(Method):
    """256-bit binary intensity tests per key frame, Hamming distance; no CNN at query time."""

    name, dimension, uses_cnn = "LBTT", "256 bits", False

    def __init__(self, keyframes: KeyFrames, seed: int) -> None:
        start = time.perf_counter()
        self.tests = BinaryTests(GREY_SIZE, seed)
        self.codes = self.tests.encode(keyframes.grey)
        self.build_seconds = time.perf_counter() - start
        self.meta = keyframes.entries
        self.entries = len(self.codes)
        self.vector_bytes = self.codes.shape[1]

    def search(self, query: QueryInput, top: int = TOP) -> list[Result]:
        code = self.tests.encode(grey_image(query.rgb)[None])[0]
        rows = np.argsort(hamming(self.codes, code), kind="stable")[:top]
        return self.meta.results(rows)


def baselines(keyframes: KeyFrames, analyses: list[VideoAnalysis], sample_step: float,
              seed: int) -> list[Method]:
    """Exact 512-d, DFSP, DF, DFSE, DFTA and LBTT over the same key frames."""
    entries = keyframes.entries
    methods: list[Method] = [
        Euclidean("Exact 512-d", "512", keyframes.descriptors, entries, lambda q: q.descriptor),
        Euclidean("DFSP", "64", keyframes.index, entries, lambda q: q.index),
    ]
    start = time.perf_counter()
    flat = keyframes.pool5.reshape(len(keyframes.pool5), -1)
    methods.append(Euclidean("DF", str(flat.shape[1]), flat, entries,
                             lambda q: q.pool5.reshape(-1), time.perf_counter() - start))
    start = time.perf_counter()
    fisher = FisherEncoder(seed)
    codes = fisher.fit(keyframes.pool5.astype(np.float32))
    methods.append(Euclidean("DFSE", str(codes.shape[1]), codes, entries,
                             lambda q: fisher.encode(q.pool5), time.perf_counter() - start))
    start = time.perf_counter()
    shots, shot_entries = shot_maxpool(analyses, sample_step)
    methods.append(Euclidean("DFTA", "512", shots, shot_entries, lambda q: q.descriptor,
                             time.perf_counter() - start))
    methods.append(LBTT(keyframes, seed))
    return methods


def shot_maxpool(analyses: list[VideoAnalysis], sample_step: float) -> tuple[np.ndarray, Entries]:
    """DFTA: per shot, the max over its sampled frames' 512-d descriptors."""
    vectors, videos, starts, ends = [], [], [], []
    for a in analyses:
        for begin, end in a.shots():
            vectors.append(a.descriptors[begin:end].max(axis=0))
            videos.append(a.path)
            starts.append(float(a.times[begin]))
            ends.append(float(a.times[end - 1]) + sample_step)
    starts_ = np.asarray(starts)
    return np.stack(vectors), Entries(np.asarray(videos), starts_, np.asarray(ends), starts_)


def build_ours(directory: Path, analyses: list[VideoAnalysis], selection: Selection,
               config: IndexConfig) -> Ours:
    """Write the chosen key frames into a fresh frameseek index, as `frameseek index` stores
    them (same key frames, vectors, spans and thumbnails), without a second CNN pass."""
    start = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    index = Index.create(directory, config)
    step = 1.0 / config.sample_fps
    for a in analyses:
        rows, labels = selection[a.path]
        path = Path(a.path)
        info = probe(path)
        keyframes = [
            KeyFrame(frame=int(a.numbers[r]), time=float(a.times[r]), descriptor=a.descriptors[r],
                     index=a.index[r], segments=_spans(a.times[labels == labels[r]], step),
                     thumbnail=a.thumbnails[r])
            for r in rows
        ]
        record = VideoRecord(path=a.path, content_id=content_id(path),
                             size=path.stat().st_size, duration=max(a.duration, info.duration),
                             frames=a.frames, width=info.width, height=info.height, fps=info.fps)
        index.store.add_video(record, keyframes)
    return Ours(index, time.perf_counter() - start)
