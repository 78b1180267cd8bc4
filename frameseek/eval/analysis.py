"""One decoding pass per video that gathers everything every method and every θ needs.

The CNN is by far the dearest step (~0.25 s per sampled frame), so it runs once per video and its
pool5 maps are cached: the 512-d descriptor and 64-d index (Ours, DFSP, exact), the flattened
pool5 (DF), the 7×7 local features (DFSE) and the per-shot max-pool (DFTA) all derive from them.
Colour-histogram distances over every frame are kept too, so the θ sweep reruns only the m rule
and k-means. Frames are sampled exactly as `keyframes.KeyFrameExtractor` samples them, so the key
frames chosen here are the ones `frameseek index` stores (a test checks this).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image

from frameseek.eval.corpus import detect_cuts
from frameseek.features import FeatureExtractor, mean_pool_channels, mean_pool_spatial
from frameseek.index import IndexConfig, content_id
from frameseek.keyframes import (
    HISTOGRAM_SIZE,
    THUMBNAIL_WIDTH,
    Sampler,
    color_histogram,
    count_clusters,
    select_keyframes,
)
from frameseek.video import iter_frames

CACHE_VERSION = 1
GREY_SIZE = 32  # LBTT compares pixel intensities of a 32×32 grey frame


@dataclass
class VideoAnalysis:
    """A video's per-frame histogram distances and its sampled frames' features."""

    path: str
    frames: int
    duration: float
    distances: np.ndarray  # (frames-1,) L2 distance of adjacent colour histograms (Algorithm 1)
    cut_distances: np.ndarray  # (frames-1,) total-variation distance, for shot cuts (DFTA)
    numbers: np.ndarray  # (S,) frame number of each sample
    times: np.ndarray  # (S,) its time in seconds
    pool5: np.ndarray  # (S, 512, 7, 7) float16: DF and DFSE inputs
    descriptors: np.ndarray  # (S, 512) float32, from the float32 maps
    index: np.ndarray  # (S, 64) float32
    grey: np.ndarray  # (S, 32, 32) uint8: LBTT input
    thumbnails: list[bytes]  # (S,) small JPEGs
    seconds: float  # wall time of the pass (decode, histograms, CNN)
    cpu_seconds: float  # CPU time of the same, all threads

    def select(self, config: IndexConfig, theta: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the samples Algorithm 1 keeps, as `KeyFrameExtractor.extract` chooses them,
        and every sample's cluster label."""
        m = self.clusters(theta if theta is not None else config.theta)
        cap = max(1, int(len(self.descriptors) / config.samples_per_cluster))
        return select_keyframes(self.descriptors, min(m, cap), config.seed)

    def clusters(self, theta: float) -> int:
        """m of Algorithm 1 steps 1-5 (before the sampling cap)."""
        return count_clusters(self.distances, theta)

    def shots(self) -> list[tuple[int, int]]:
        """Sample-row ranges [start, end) of each shot (cuts from the histogram distances)."""
        starts = [0, *detect_cuts(self.cut_distances), self.frames]
        ranges = []
        for begin, end in pairwise(starts):
            rows = np.flatnonzero((self.numbers >= begin) & (self.numbers < end))
            if len(rows):
                ranges.append((int(rows[0]), int(rows[-1]) + 1))
        return ranges


def analyse(path: Path, extractor: FeatureExtractor, config: IndexConfig) -> VideoAnalysis:
    """Decode `path` once: histograms of every frame, CNN maps of the sampled frames."""
    start, cpu_start = time.perf_counter(), time.process_time()
    size = extractor.input_size
    distances: list[float] = []
    cut_distances: list[float] = []
    numbers: list[int] = []
    times: list[float] = []
    pending: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    grey: list[np.ndarray] = []
    thumbnails: list[bytes] = []
    previous: np.ndarray | None = None
    sampler = Sampler(config.sample_fps)
    count = 0
    last_time = 0.0
    for frame in iter_frames(path):
        histogram = color_histogram(frame.rgb(HISTOGRAM_SIZE, HISTOGRAM_SIZE))
        if previous is not None:
            distances.append(float(np.linalg.norm(histogram - previous)))
            cut_distances.append(float(0.5 * np.abs(histogram - previous).sum()))
        previous = histogram
        if sampler.take(frame.time):
            numbers.append(frame.number)
            times.append(frame.time)
            rgb = frame.rgb(size, size)
            pending.append(rgb)
            grey.append(grey_image(rgb))
            thumbnails.append(_thumbnail(frame.rgb(THUMBNAIL_WIDTH,
                                                   _thumb_height(frame.width, frame.height))))
            if len(pending) == extractor.batch_size:
                maps.append(extractor.pool5(np.stack(pending)))
                pending.clear()
        count += 1
        last_time = frame.time
    if pending:
        maps.append(extractor.pool5(np.stack(pending)))
    pool5 = np.concatenate(maps)
    descriptors = mean_pool_spatial(pool5)
    return VideoAnalysis(
        path=str(path), frames=count, duration=last_time,
        distances=np.asarray(distances, dtype=np.float32),
        cut_distances=np.asarray(cut_distances, dtype=np.float32),
        numbers=np.asarray(numbers), times=np.asarray(times),
        pool5=pool5.astype(np.float16), descriptors=descriptors,
        index=mean_pool_channels(descriptors), grey=np.stack(grey), thumbnails=thumbnails,
        seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
    )


def grey_image(rgb: np.ndarray) -> np.ndarray:
    """Any RGB array → the 32×32 grey picture LBTT encodes (whole frame, aspect squashed)."""
    image = Image.fromarray(rgb).convert("L").resize((GREY_SIZE, GREY_SIZE),
                                                     Image.Resampling.BOX)
    return np.asarray(image)


def _thumb_height(width: int, height: int) -> int:
    return max(2, round(height * THUMBNAIL_WIDTH / width))


def _thumbnail(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def cached_analysis(path: Path, cache_dir: Path, extractor: FeatureExtractor,
                    config: IndexConfig) -> VideoAnalysis:
    """`analyse`, remembered under `cache_dir` by file content, sampling parameters and the back
    end that computed the maps (an fp32 and a bf16 run never share an entry)."""
    key = (f"{content_id(path)[:24]}-{config.sample_fps}-{extractor.input_size}-"
           f"{extractor.backbone.backend.name}-v{CACHE_VERSION}")
    file = cache_dir / f"{key}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as data:
            return _from_arrays(str(path), data)
    result = analyse(path, extractor, config)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".tmp.npz")
    np.savez(partial, **_to_arrays(result))
    partial.replace(file)  # a killed run never leaves half a cache entry
    return result


def _to_arrays(a: VideoAnalysis) -> dict[str, np.ndarray]:
    lengths = np.array([len(t) for t in a.thumbnails])
    return {
        "meta": np.array([a.frames, a.duration, a.seconds, a.cpu_seconds]),
        "distances": a.distances, "cut_distances": a.cut_distances, "numbers": a.numbers,
        "times": a.times,
        "pool5": a.pool5, "descriptors": a.descriptors, "index": a.index, "grey": a.grey,
        "thumbnail_lengths": lengths,
        "thumbnails": np.frombuffer(b"".join(a.thumbnails), dtype=np.uint8),
    }


def _from_arrays(path: str, d) -> VideoAnalysis:
    blob = d["thumbnails"].tobytes()
    ends = np.cumsum(d["thumbnail_lengths"])
    thumbnails = [blob[e - n : e] for e, n in zip(ends, d["thumbnail_lengths"], strict=True)]
    frames, duration, seconds, cpu_seconds = d["meta"]
    return VideoAnalysis(
        path=path, frames=int(frames), duration=float(duration), distances=d["distances"],
        cut_distances=d["cut_distances"], numbers=d["numbers"], times=d["times"],
        pool5=d["pool5"], descriptors=d["descriptors"], index=d["index"], grey=d["grey"],
        thumbnails=thumbnails, seconds=float(seconds), cpu_seconds=float(cpu_seconds),
    )
