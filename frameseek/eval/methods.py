"""The compared methods (paper Tables 5 and 6), all over the same key frames and queries.

Ours searches a real frameseek `Index` on disk (coarse-to-fine); the baselines are exhaustive
searches over their own encodings of the same key frames (DFTA: of the shots containing them).
Ours comes in the variants of issue 8: the paper's pooling ("Ours", the faithful method) or R-MAC,
each with and without trimming the query's borders ("Ours R-MAC + trim" was frameseek's default
before query regions and verification); and R-MAC + trim with query regions and geometric
verification at each effort (frameseek/regions.py, frameseek/verify.py), "default" being what
`frameseek search` does. The R-MAC indexes add the coverage guarantee's key frames to Algorithm
1's, as `frameseek index` does; "Ours" keeps the paper's Algorithm 1 as it is (its pooling has no
match threshold).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from frameseek.eval.analysis import GREY_SIZE, VideoAnalysis, grey_image
from frameseek.eval.encoders import BinaryTests, FisherEncoder, hamming
from frameseek.index import Index, IndexConfig, Match, content_id, coverage_similarity
from frameseek.keyframes import KeyFrame, _spans, cover
from frameseek.regions import EFFORTS, WHOLE, Effort, Region, query_regions
from frameseek.store.base import VideoRecord
from frameseek.video import probe

TOP = 12
TRIMMED = "Ours R-MAC + trim"  # frameseek's default before query regions and verification
VERIFIED = "Ours R-MAC + regions + verify"  # then the effort in brackets
DEFAULT = f"{VERIFIED} (default)"  # what `frameseek index` and `frameseek search` do by default
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
    # The image with uniform borders cut off (borders.trim_borders), and its maps; the same as
    # rgb and pool5 where nothing was trimmed.
    content_rgb: np.ndarray
    content_pool5: np.ndarray
    trim_seconds: float
    # The content's regions beyond the whole for the most thorough effort (a superset of the
    # others'), with their maps and the seconds each one's CNN forward took.
    regions: tuple[Region, ...] = ()
    region_pool5: np.ndarray | None = None
    region_seconds: tuple[float, ...] = ()

    def region_maps(self, regions: list[Region]) -> tuple[np.ndarray, float]:
        """The maps of `regions` (the whole content first), and the CNN seconds of those beyond
        the whole."""
        maps, seconds = [self.content_pool5[0]], 0.0
        for region in regions[1:]:
            i = self.regions.index(region)
            maps.append(self.region_pool5[i])
            seconds += self.region_seconds[i]
        return np.stack(maps).astype(np.float32), seconds


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

    def query_seconds(self, query: QueryInput) -> float:
        """Work before the search beyond decoding and the CNN (none for most methods)."""
        return 0.0


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
    """frameseek itself: a real on-disk `Index`, searched coarse-to-fine, the query pooled the
    index's way, of its trimmed content with `trim`."""

    dimension = "64, 512"

    def __init__(self, name: str, index: Index, trim: bool, build_seconds: float) -> None:
        self.name = name
        self.index = index
        self.trim = trim
        self.entries = len(index.store.vectors())
        self.vector_bytes = (64 + 512) * 4
        self.build_seconds = build_seconds

    def with_index(self, index: Index) -> Ours:
        """The same method over another index (the eval's index without one work)."""
        return type(self)(self.name, index, self.trim, self.build_seconds)

    def matches(self, query: QueryInput, top: int = TOP) -> tuple[list[Match], np.ndarray]:
        """The index's matches for the query, and the pixels its moment is refined with."""
        pool5, rgb = (query.content_pool5, query.content_rgb) if self.trim else (query.pool5,
                                                                                 query.rgb)
        features = self.index.extractor.features(pool5)
        return self.index.search_features(features.index[0], features.descriptors[0], top,
                                          CANDIDATES), rgb

    def search(self, query: QueryInput, top: int = TOP) -> list[Result]:
        return [Result(m.video, m.time, m.time, m.time, m.keyframe_id)
                for m in self.matches(query, top)[0]]

    def query_seconds(self, query: QueryInput) -> float:
        return query.trim_seconds if self.trim else 0.0


class OursVerified(Ours):
    """frameseek's search at one effort: the trimmed query and its regions searched, the best
    candidates verified geometrically against their thumbnails (`Index.search_regions`). The
    regions are found anew per query (their cost is in the search time); their CNN forwards are
    the cached ones, their time added to the query's."""

    def __init__(self, effort: str, index: Index, build_seconds: float) -> None:
        super().__init__(f"{VERIFIED} ({effort})", index, True, build_seconds)
        self.effort_name = effort
        self.effort: Effort = EFFORTS[effort]

    def with_index(self, index: Index) -> OursVerified:
        return OursVerified(self.effort_name, index, self.build_seconds)

    def matches(self, query: QueryInput, top: int = TOP) -> tuple[list[Match], np.ndarray]:
        regions = query_regions(query.content_rgb, self.effort)
        maps, _ = query.region_maps(regions)
        found, region = self.index.search_regions(
            query.content_rgb, regions, self.index.extractor.features(maps), top, CANDIDATES,
            self.effort.verify)
        return found, region.crop(query.content_rgb)

    def query_seconds(self, query: QueryInput) -> float:
        regions = query_regions(query.content_rgb, self.effort)
        return query.trim_seconds + query.region_maps(regions)[1]


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
               config: IndexConfig) -> Index:
    """Write the chosen key frames into a fresh frameseek index, as `frameseek index` stores
    them (same key frames, vectors of the config's pooling, spans and thumbnails), without a
    second CNN pass."""
    shutil.rmtree(directory, ignore_errors=True)
    index = Index.create(directory, config)
    step = 1.0 / config.sample_fps
    coverage = coverage_similarity(config, index.extractor.pooling)
    for a in analyses:
        rows, labels = selection[a.path]
        path = Path(a.path)
        info = probe(path)
        features = index.extractor.features(a.pool5.astype(np.float32))
        added = 0
        if coverage is not None:
            rows, labels, added = cover(features.descriptors, rows, labels, coverage)
        keyframes = [
            KeyFrame(frame=int(a.numbers[r]), time=float(a.times[r]),
                     descriptor=features.descriptors[r], index=features.index[r],
                     segments=_spans(a.times[labels == labels[r]], step),
                     thumbnail=a.thumbnails[r])
            for r in rows
        ]
        record = VideoRecord(path=a.path, content_id=content_id(path),
                             size=path.stat().st_size, duration=max(a.duration, info.duration),
                             frames=a.frames, width=info.width, height=info.height, fps=info.fps,
                             coverage_keyframes=added)
        index.store.add_video(record, keyframes)
    return index


def ours_variants(directory: Path, analyses: list[VideoAnalysis], selection: Selection,
                  config: IndexConfig) -> list[Ours]:
    """The faithful method ("Ours": the paper's pooling, the query as given) first, then
    trimming, R-MAC, and both (frameseek's default); one index per pooling."""
    variants: list[Ours] = []
    for pooling, label in (("mean", "Ours"), ("rmac", "Ours R-MAC")):
        start = time.perf_counter()
        index = build_ours(directory / pooling, analyses, selection,
                           replace(config, pooling=pooling))
        seconds = time.perf_counter() - start
        variants += [Ours(label, index, False, seconds),
                     Ours(f"{label} + trim", index, True, seconds)]
    variants += [OursVerified(effort, variants[-1].index, variants[-1].build_seconds)
                 for effort in EFFORTS]
    return variants


def all_regions(rgb: np.ndarray) -> list[Region]:
    """The regions beyond the whole that any effort searches in `rgb`."""
    return [r for r in query_regions(rgb, EFFORTS["thorough"]) if r.kind != WHOLE]
