"""Indexing one video from scratch: wall time, real-time factor, peak memory, time per stage,
and end-to-end query latency (image file in → results out, CNN included) on the new index."""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from frameseek.index import Index, IndexConfig, content_id
from frameseek.keyframes import KeyFrameExtractor, StageTimer
from frameseek.store.base import VideoRecord
from frameseek.video import iter_frames, probe


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
            keyframes = KeyFrameExtractor(
                extractor, theta=config.theta, sample_fps=config.sample_fps,
                samples_per_cluster=config.samples_per_cluster, seed=config.seed, timer=timer,
                cluster_size=config.cluster_size,
            )
            info = probe(video)
            result = keyframes.extract(iter_frames(video))
            with timer.stage("store"):
                index.store.add_video(VideoRecord(
                    path=str(video), content_id=content_id(video), size=video.stat().st_size,
                    duration=max(result.duration, info.duration), frames=result.frames,
                    width=info.width, height=info.height, fps=info.fps,
                ), result.keyframes)
            wall = time.perf_counter() - start
            latencies = _query_latencies(index, result.keyframes, Path(scratch), queries)
    video_s = max(result.duration, info.duration)
    return {
        "video": str(video),
        "cluster_size": config.cluster_size,
        "video_s": round(video_s, 3),
        "frames": result.frames,
        "sampled": result.sampled,
        "keyframes": len(result.keyframes),
        "wall_s": round(wall, 3),
        "realtime_factor": round(video_s / wall, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stages": {name: round(seconds, 3) for name, seconds in timer.seconds.items()},
        "query_ms": latencies,
    }


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
