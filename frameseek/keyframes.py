"""Key-frame extraction, the paper's Algorithm 1.

Steps 1-5 count the clusters: m = number of adjacent-frame colour-histogram distances D_j above
θ × mean(D), over *every* frame. Steps 6-11 cluster the frames' deep features with k-means (m
centres) and keep the frame nearest each centre.

Deep features for every frame cost about 0.25 s each on a 2-core CPU (VGG16), so the clustering
runs on frames sampled at `sample_fps`. So that k-means still groups frames rather than returning
every sample, m is capped at samples / `samples_per_cluster`. Each key frame also keeps the time
spans of the samples in its cluster: the stretch of video it stands for.

The clustering always uses the paper's mean-pooled descriptors, whatever pooling the index stores
(frameseek/features.py).

Beyond the paper, a coverage guarantee (`coverage`), so that no frame of an indexed video is
answered "no match", on any machine (k-means is not bit-reproducible across CPUs and library
versions, so which frames it keeps differs between them):
1. Where two adjacent samples are less similar than `coverage` (a fast pan, a cut), the frame
   midway between them is embedded too, and so on recursively: samples come closer where the
   picture moves. These extra samples take no part in k-means, so Algorithm 1's choice is the
   paper's.
2. After k-means, every sample (extra ones included) less similar than `coverage` to every key
   frame of its video becomes a key frame itself (`cover`).

The frames are decoded, and their histograms computed, in a thread of their own that runs ahead
of the CNN (`frameseek.video.in_background`): FFmpeg's decoding and scaling release the GIL, so
the next frames are decoded while a batch of samples goes through the CNN.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

from frameseek.features import FeatureExtractor, Features, mean_pool_spatial
from frameseek.video import Frame, in_background

HISTOGRAM_SIZE = 64  # frames are shrunk to 64×64 for the histogram: colour counts, not detail
HISTOGRAM_BINS = 8  # per channel: 512 cells
HISTOGRAM_GROUP = 8  # images per numpy call (color_histograms)
THUMBNAIL_WIDTH = 192
T = TypeVar("T")
# Decoded frames held between samples, waiting to learn whether their gap needs closing or for
# it to be closed: past this, the batch is embedded and the open gaps closed early (so 4K video
# holds a few gaps, not a batch's worth).
GAP_BYTES = 256 << 20
# The decoder thread hands frames over in chunks of about this many bytes (their histograms
# computed together), up to DECODE_AHEAD chunks ahead: 8 × 16 MB is 96 frames of 720p, the
# 4 s of video a CNN batch of 8 samples spans, so decoding the next batch's frames fits in the
# current batch's forward.
CHUNK_BYTES = 16 << 20
DECODE_AHEAD = 8


def color_histogram(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Joint RGB histogram with `bins`³ cells, normalised to sum 1."""
    return color_histograms(rgb[None], bins)[0]


def color_histograms(rgb: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """`color_histogram` of each of N equal-sized images (N, H, W, 3), a few images per numpy
    call: one call per image costs more than its counting, and at 64×64 a group of 8 is fastest
    (measured: 2.6× faster than one image a call, and bigger groups fall out of the CPU cache)."""
    return np.concatenate([_histogram_group(rgb[i : i + HISTOGRAM_GROUP], bins)
                           for i in range(0, len(rgb), HISTOGRAM_GROUP)])


def _histogram_group(rgb: np.ndarray, bins: int) -> np.ndarray:
    """One bincount for the group: each image's cells offset by its own bins³."""
    quantised = (rgb.reshape(len(rgb), -1, 3) // (256 // bins)).astype(np.int32)
    cells = (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]
    cells += np.arange(len(rgb), dtype=np.int32)[:, None] * bins**3
    counts = np.bincount(cells.ravel(), minlength=len(rgb) * bins**3).astype(np.float32)
    histograms = counts.reshape(len(rgb), bins**3)
    return histograms / histograms.sum(axis=1, keepdims=True)


class Sampler:
    """Which frames go to the CNN: the first frame at or after each 1/`fps` step of time (by
    presentation time, so variable frame rates sample evenly)."""

    def __init__(self, fps: float) -> None:
        self.step = 1.0 / fps
        self._next = -np.inf

    def take(self, time: float) -> bool:
        if time < self._next:
            return False
        self._next = time + self.step
        return True


def count_clusters(distances: np.ndarray, theta: float) -> int:
    """Algorithm 1 steps 3-5: m = #{j : D_j > θ · mean(D)}, and at least one."""
    if len(distances) == 0:
        return 1
    return max(1, int(np.count_nonzero(distances > theta * distances.mean())))


def select_keyframes(
    features: np.ndarray, m: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 steps 6-11: k-means with m centres; per cluster, the member nearest its centre.

    Returns the chosen rows (ascending) and each row's cluster label.
    """
    m = min(m, len(features))
    if m == 1:
        centre = features.mean(axis=0)
        nearest = int(np.argmin(((features - centre) ** 2).sum(axis=1)))
        return np.array([nearest]), np.zeros(len(features), dtype=np.int64)
    # Imported here: scikit-learn takes seconds to import, and only indexing clusters, so every
    # `frameseek search` would otherwise pay for it.
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=m, n_init=1, random_state=seed).fit(features)
    labels = kmeans.labels_
    chosen = []
    for cluster, centre in enumerate(kmeans.cluster_centers_):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            gaps = ((features[members] - centre) ** 2).sum(axis=1)
            chosen.append(int(members[np.argmin(gaps)]))
    order = np.unique(chosen)
    return order, labels


def cover(descriptors: np.ndarray, rows: np.ndarray, labels: np.ndarray, similarity: float
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """The coverage guarantee over unit-length `descriptors`: while some sample's cosine to its
    most similar key frame is below `similarity`, the worst-covered one becomes a key frame.

    Returns the key-frame rows (ascending), the labels with each sample that was uncovered moved
    to the cluster of its most similar key frame (added key frames get new clusters; so their
    segments are the stretches they were added for), and the number added.
    """
    vectors = np.asarray(descriptors, dtype=np.float32)
    chosen = [int(r) for r in rows]
    best = (vectors @ vectors[chosen].T).max(axis=1)
    uncovered = best < similarity
    while True:
        worst = int(np.argmin(best))
        if best[worst] >= similarity:
            break
        chosen.append(worst)
        best = np.maximum(best, vectors @ vectors[worst])
    added = len(chosen) - len(rows)
    if not added:
        return np.asarray(rows), labels, 0
    labels = labels.copy()
    first_new = int(labels.max()) + 1
    labels[chosen[len(rows):]] = np.arange(first_new, first_new + added)
    cluster_of = labels[chosen]
    nearest = np.argmax(vectors[uncovered] @ vectors[chosen].T, axis=1)
    labels[uncovered] = cluster_of[nearest]
    return np.unique(chosen), labels, added


@dataclass(frozen=True)
class KeyFrame:
    frame: int
    time: float
    descriptor: np.ndarray  # (512,)
    index: np.ndarray  # (64,)
    segments: list[tuple[float, float]]  # time spans of the frames this key frame stands for
    thumbnail: bytes  # small JPEG


@dataclass
class KeyFrameResult:
    keyframes: list[KeyFrame]
    frames: int  # every decoded frame
    duration: float
    sampled: int
    clusters_requested: int  # m from the histogram rule, before the sampling cap
    coverage_added: int = 0  # key frames the coverage guarantee added to k-means' choice
    gap_samples: int = 0  # extra samples embedded where adjacent samples differed too much

    @property
    def compression_ratio(self) -> float:
        return 1.0 - len(self.keyframes) / self.frames if self.frames else 0.0


@dataclass
class _Samples:
    """Every frame embedded so far, in the order embedded: the regular samples, each batch
    followed by the extra samples that close its gaps."""

    numbers: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    thumbnails: list[bytes] = field(default_factory=list)
    regular: list[int] = field(default_factory=list)  # positions of the regular samples
    pending: list[np.ndarray] = field(default_factory=list)
    gaps: list[list[Frame]] = field(default_factory=list)  # frames before each pending sample
    # Gaps embedded samples left open (their ends less similar than `coverage`), gathered over
    # batches so that closing them fills the CNN's batches: one or two per batch of samples
    # would each cost a forward at batch 1, about twice as much per image.
    open_gaps: list[tuple[np.ndarray, np.ndarray, list[Frame]]] = field(default_factory=list)
    gap_bytes: int = 0  # held in `gaps` and `open_gaps`
    last: np.ndarray | None = None  # the previous batch's last stored descriptor
    clustering: list[np.ndarray] = field(default_factory=list)  # mean-pooled, for k-means
    features: list[Features] = field(default_factory=list)  # as stored (none with a spill)


class StageTimer:
    """Wall seconds per pipeline stage, for `frameseek bench index`; two clock reads a step, so
    cheap enough to leave on.

    `seconds` are the caller's stages, which add up to at most its wall time ("decode" there is
    the time spent waiting for decoded frames); `decoder_seconds` those of the decoder thread,
    kept apart because they overlap the caller's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.decoder_seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str, *, decoder: bool = False) -> Iterator[None]:
        seconds = self.decoder_seconds if decoder else self.seconds
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds[name] += time.perf_counter() - start

    def timed(self, items: Iterable[T], name: str, *, decoder: bool = False) -> Iterator[T]:
        """`items` (never None), with the time spent producing each one counted as `name`."""
        iterator = iter(items)
        while True:
            with self.stage(name, decoder=decoder):
                item = next(iterator, None)
            if item is None:
                return
            yield item


class KeyFrameExtractor:
    """Algorithm 1 over a stream of frames, feeding sampled frames to the CNN in batches."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        theta: float = 1.4,
        sample_fps: float = 2.0,
        samples_per_cluster: float = 2.0,
        seed: int = 0,
        timer: StageTimer | None = None,
        cluster_size: int | None = None,
        coverage: float | None = None,
    ) -> None:
        """`cluster_size` None clusters the samples' full descriptors (the paper's Algorithm 1).
        A smaller size (e.g. 112) clusters CNN features computed at that input, about 4× cheaper,
        then computes the full-size descriptor for the chosen key frames only, from the samples'
        pixels kept meanwhile in a temporary file (so memory does not grow with the video).

        `coverage`: the cosine of the stored (unit-length) descriptors every sample must reach
        with some key frame (see `cover`); None keeps k-means' choice as it is (the paper)."""
        if sample_fps <= 0 or samples_per_cluster <= 0 or theta < 0:
            raise ValueError(
                f"need sample_fps > 0, samples_per_cluster > 0 and theta >= 0, not {sample_fps}, "
                f"{samples_per_cluster} and {theta}"
            )
        if coverage is not None and cluster_size is not None:
            # The cheaper clustering computes stored descriptors for the key frames only, and
            # coverage needs every sample's.
            raise ValueError("coverage needs every sample's stored descriptor: it cannot be "
                             "combined with cluster_size")
        self.extractor = extractor
        self.timer = timer or StageTimer()
        self.clusterer = extractor
        if cluster_size is not None and cluster_size != extractor.input_size:
            self.clusterer = FeatureExtractor(cluster_size, extractor.batch_size,
                                              extractor.backbone.threads,
                                              backend=extractor.backbone.backend.name)
        self.theta = theta
        self.sample_fps = sample_fps
        self.samples_per_cluster = samples_per_cluster
        self.seed = seed
        self.coverage = coverage

    def extract(
        self, frames: Iterable[Frame], on_frame: Callable[[Frame], None] | None = None
    ) -> KeyFrameResult:
        """Key frames of `frames`, which are iterated in the decoder thread (so whatever they
        do per frame, e.g. `TrackBuilder.observe`, runs there too); `on_frame` is called in the
        caller's thread. Errors raised by `frames` are raised here, as they are."""
        size = self.clusterer.input_size
        full = self.extractor.input_size
        batch = self.extractor.batch_size
        spill = None if self.clusterer is self.extractor else _PixelSpill()
        try:
            return self._extract(frames, on_frame, size, full, batch, spill)
        finally:
            if spill is not None:
                spill.close()

    def _extract(self, frames: Iterable[Frame], on_frame: Callable[[Frame], None] | None,
                 size: int, full: int, batch: int, spill: _PixelSpill | None) -> KeyFrameResult:
        distances: list[np.ndarray] = []
        samples = _Samples()
        sampler = Sampler(self.sample_fps)
        gap: list[Frame] = []
        count = 0
        last_time = 0.0
        decoder = in_background(_with_distances(_chunks(frames, self.timer), self.timer),
                                DECODE_AHEAD)
        with closing(decoder):
            for chunk, chunk_distances in self.timer.timed(decoder, "decode"):
                distances.append(chunk_distances)
                for frame in chunk:
                    if sampler.take(frame.time):
                        samples.regular.append(len(samples.numbers))
                        samples.numbers.append(frame.number)
                        samples.times.append(frame.time)
                        with self.timer.stage("samples"):
                            samples.pending.append(frame.rgb(size, size))
                            if spill is not None:
                                spill.append(frame.rgb(full, full))
                            samples.thumbnails.append(_thumbnail(frame))
                        samples.gaps.append(gap)
                        gap = []
                        if len(samples.pending) == batch or samples.gap_bytes > GAP_BYTES:
                            self._embed(samples)
                    elif self.coverage is not None:
                        # Kept decoded, not converted: most gaps turn out close enough to need
                        # nothing.
                        gap.append(frame)
                        samples.gap_bytes += _decoded_bytes(frame)
                    if on_frame is not None:
                        on_frame(frame)
                count += len(chunk)
                last_time = chunk[-1].time
        self._embed(samples)
        if gap and samples.last is not None:
            # The frames after the last sample have none to their right: the video's last frame
            # becomes one (an extra sample).
            [end] = self._embed_extra(samples, gap[-1:])
            samples.gap_bytes -= _decoded_bytes(gap[-1])
            self._keep_if_open(samples, samples.last, end, gap[:-1])
        if self.coverage is not None:
            self._close(samples, every=True)
        clustering = np.concatenate(samples.clustering)
        m = count_clusters(np.concatenate(distances), self.theta)
        cap = max(1, int(len(clustering) / self.samples_per_cluster))
        with self.timer.stage("kmeans"):
            regular_rows, regular_labels = select_keyframes(clustering, min(m, cap), self.seed)
        # From positions among the regular samples to positions among all embedded ones; the
        # extra samples belong to no cluster until coverage gives them one.
        regular = np.asarray(samples.regular)
        rows = regular[regular_rows]
        labels = np.full(len(samples.numbers), -1, dtype=np.int64)
        labels[regular] = regular_labels
        added = 0
        if spill is None:
            features = _concat(samples.features)
            if self.coverage is not None:
                with self.timer.stage("coverage"):
                    rows, labels, added = cover(features.descriptors, rows, labels,
                                                self.coverage)
            rows = rows[np.argsort(np.asarray(samples.times)[rows], kind="stable")]
            chosen = Features(features.descriptors[rows], features.index[rows])
        else:
            with self.timer.stage("cnn_keyframes"):
                chosen = _concat([self.extractor.transform(spill.read(rows[i : i + batch]))
                                  for i in range(0, len(rows), batch)])
        times = np.asarray(samples.times)
        keyframes = [
            KeyFrame(
                frame=samples.numbers[row],
                time=samples.times[row],
                descriptor=chosen.descriptors[i],
                index=chosen.index[i],
                segments=_spans(times[labels == labels[row]], sampler.step),
                thumbnail=samples.thumbnails[row],
            )
            for i, row in enumerate(rows)
        ]
        return KeyFrameResult(keyframes, count, last_time, len(regular), m, added,
                              len(samples.numbers) - len(regular))

    def _embed(self, samples: _Samples) -> None:
        """CNN over the pending samples: their clustering features and, when they are at the
        stored size, the stored features too, from the same forward pass. The gaps they leave
        open join the others, to be closed a batch at a time."""
        if samples.pending:
            with self.timer.stage("cnn"):
                pool5 = self.clusterer.pool5(np.stack(samples.pending))
                samples.clustering.append(mean_pool_spatial(pool5))
                if self.clusterer is self.extractor:
                    samples.features.append(self.extractor.features(pool5))
            if self.coverage is not None:
                left = samples.last
                for right, gap in zip(samples.features[-1].descriptors, samples.gaps,
                                      strict=True):
                    self._keep_if_open(samples, left, right, gap)
                    left = right
                samples.last = left
            samples.pending.clear()
            samples.gaps.clear()
        if self.coverage is not None:
            self._close(samples)

    def _close(self, samples: _Samples, *, every: bool = False) -> None:
        """Embed the middle frame of open gaps, a whole number of CNN batches of them at a time
        (or all, with `every` or past GAP_BYTES); the halves still open join the others. So
        each gap is halved until it is closed or holds no frame."""
        batch = self.extractor.batch_size
        with self.timer.stage("gaps"):
            while samples.open_gaps:
                held = len(samples.open_gaps)
                take = held if every or samples.gap_bytes > GAP_BYTES else held - held % batch
                if not take:
                    return
                gaps, samples.open_gaps = samples.open_gaps[:take], samples.open_gaps[take:]
                middles = [gap[len(gap) // 2] for _, _, gap in gaps]
                samples.gap_bytes -= sum(_decoded_bytes(m) for m in middles)
                for (a, b, gap), middle in zip(gaps, self._embed_extra(samples, middles),
                                               strict=True):
                    half = len(gap) // 2
                    self._keep_if_open(samples, a, middle, gap[:half])
                    self._keep_if_open(samples, middle, b, gap[half + 1:])

    def _keep_if_open(self, samples: _Samples, left: np.ndarray | None, right: np.ndarray,
                      gap: list[Frame]) -> None:
        """Hold a gap whose two ends are less similar than `coverage` among the open ones; let
        go of the frames of any other."""
        assert self.coverage is not None
        if left is not None and gap and float(left @ right) < self.coverage:
            samples.open_gaps.append((left, right, gap))
        else:
            samples.gap_bytes -= sum(_decoded_bytes(f) for f in gap)

    def _embed_extra(self, samples: _Samples, frames: list[Frame]) -> np.ndarray:
        """Embed frames as extra samples (stored features, no clustering); their descriptors."""
        size = self.extractor.input_size
        features = self.extractor.transform(np.stack([f.rgb(size, size) for f in frames]))
        samples.features.append(features)
        for frame in frames:
            samples.numbers.append(frame.number)
            samples.times.append(frame.time)
            samples.thumbnails.append(_thumbnail(frame))
        return features.descriptors


def _decoded_bytes(frame: Frame) -> int:
    """What a decoded frame holds in memory (4:2:0, the common case)."""
    return frame.width * frame.height * 3 // 2


def _chunks(frames: Iterable[Frame], timer: StageTimer) -> Iterator[list[Frame]]:
    """`frames` (decoded as they are read: the decoder thread's "decode") in lists of about
    CHUNK_BYTES."""
    chunk: list[Frame] = []
    size = 0
    for frame in timer.timed(frames, "decode", decoder=True):
        chunk.append(frame)
        size += _decoded_bytes(frame)
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _with_distances(chunks: Iterable[list[Frame]], timer: StageTimer
                    ) -> Iterator[tuple[list[Frame], np.ndarray]]:
    """Each chunk with the colour-histogram distance D_j of each of its frames to the frame
    before it (none for the first frame of the video), computed in the decoder thread."""
    previous = np.empty((0, HISTOGRAM_BINS**3), dtype=np.float32)  # the last chunk's last one
    for chunk in chunks:
        with timer.stage("histograms", decoder=True):
            small = np.stack([f.rgb(HISTOGRAM_SIZE, HISTOGRAM_SIZE) for f in chunk])
            histograms = np.concatenate([previous, color_histograms(small)])
            distances = np.linalg.norm(np.diff(histograms, axis=0), axis=1)
            previous = histograms[-1:]
        yield chunk, distances


def _concat(parts: list[Features]) -> Features:
    return Features(np.concatenate([f.descriptors for f in parts]),
                    np.concatenate([f.index for f in parts]))


class _PixelSpill:
    """Equal-sized RGB arrays appended to an unnamed temporary file, read back by row."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by extract, in finally)
        self._shape: tuple[int, ...] = ()

    def append(self, pixels: np.ndarray) -> None:
        self._shape = pixels.shape
        self._file.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())

    def read(self, rows: np.ndarray) -> np.ndarray:
        size = int(np.prod(self._shape))
        out = np.empty((len(rows), *self._shape), dtype=np.uint8)
        for i, row in enumerate(rows):
            self._file.seek(int(row) * size)
            out[i] = np.frombuffer(self._file.read(size), dtype=np.uint8).reshape(self._shape)
        return out

    def close(self) -> None:
        self._file.close()


def _spans(times: np.ndarray, step: float) -> list[tuple[float, float]]:
    """Sorted sample times → merged [start, end) spans, each sample covering one step."""
    spans: list[tuple[float, float]] = []
    for t in np.sort(times):
        start, end = float(t), float(t) + step
        if spans and start <= spans[-1][1] + 1e-6:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [(round(a, 3), round(b, 3)) for a, b in spans]


def _thumbnail(frame: Frame) -> bytes:
    height = max(2, round(frame.height * THUMBNAIL_WIDTH / frame.width))
    buffer = io.BytesIO()
    Image.fromarray(frame.rgb(THUMBNAIL_WIDTH, height)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()
