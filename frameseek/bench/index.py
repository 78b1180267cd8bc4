"""Indexing one video from scratch: wall time, real-time factor, peak memory, time per stage,
and end-to-end query latency (image file in → results out, CNN included) on the new index."""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from frameseek import backends
from frameseek.index import Index, IndexConfig, analyse_video, content_id, keyframe_extractor
from frameseek.keyframes import StageTimer


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(video: Path, config: IndexConfig | None = None, queries: int = 5) -> dict:
    video = Path(video)
    config = config or IndexConfig()
    timer = StageTimer()
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        with Index.create(Path(scratch) / "index", config) as index:
            with timer.stage("model_load"):
                extractor = index.extractor
            keyframes = keyframe_extractor(config, extractor, timer)
            # The product's own path (key frames and localisation track, then one write), so
            # the query latency below is that of a normally built index.
            analysed = analyse_video(video, content_id(video), keyframes)
            with timer.stage("store"):
                index.put(analysed)
            wall = time.perf_counter() - start
            latencies = _query_latencies(index, analysed.keyframes, Path(scratch), queries)
    record = analysed.record
    return {
        "video": str(video),
        "cluster_size": config.cluster_size,
        "pooling": config.pooling,
        "backend": backends.describe(extractor.backbone.backend),
        "video_s": round(record.duration, 3),
        "frames": record.frames,
        "keyframes": record.keyframes,
        "coverage_margin": config.coverage_margin,
        "coverage_keyframes": record.coverage_keyframes,
        "compression_ratio": round(record.compression_ratio, 4),
        "wall_s": round(wall, 3),
        "realtime_factor": round(record.duration / wall, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stages": _rounded(timer.seconds),
        "decoder_thread": _rounded(timer.decoder_seconds),
        "query_ms": latencies,
    }


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in seconds.items()}


def _query_latencies(index: Index, keyframes: list, scratch: Path, count: int) -> dict:
    """Search with JPEG files of the video's own key frames (thumbnails upscaled by the CNN's
    resize, as a photo of a screen would be), timing the whole `Index.search` call."""
    if not count or not keyframes:
        return {}
    times = []
    for i in range(count):
        path = scratch / f"query{i}.jpg"
        path.write_bytes(keyframes[i * len(keyframes) // count].thumbnail)
        Image.open(path).verify()
        start = time.perf_counter()
        index.search(path)
        times.append((time.perf_counter() - start) * 1000)
    return {"median": round(statistics.median(times), 1),
            "p95": round(sorted(times)[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "count": count}
