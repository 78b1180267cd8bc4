"""`frameseek bench stores`: the embedded store and Milvus Lite filled with the same synthetic
collection and queried the same way.

The collection is `frameseek bench search`'s (real descriptors of the sample index, drawn
between neighbours plus noise: frameseek/bench/search.py). Each store gets it through
`Index.put`, the write path of `frameseek index` (key frames with 4.4 KB thumbnails, as real
ones weigh, and an empty localisation track), in videos of PER_VIDEO key frames, each
committed whole; then it is opened again and queried through `Index.search_features`, the
path `frameseek search` takes after embedding the image, one query at a time after one warm-up
query. Recall@12 is against exact 512-d search over the same float16 descriptors.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

from frameseek.backends import cpu_model
from frameseek.bench import THUMBNAIL_BYTES
from frameseek.bench.search import TOP, Collection, real_descriptors, synthesize
from frameseek.features import INDEX_DIM, pooling_named
from frameseek.index import AnalysedVideo, Index
from frameseek.keyframes import KeyFrame
from frameseek.localize import TrackBuilder
from frameseek.store.base import VideoRecord
from frameseek.store.milvus import SearchSettings

PER_VIDEO = 1000
FPS = 25.0


def stores(scratch: Path) -> dict[str, tuple[str, Path]]:
    """Name → (location to create, folder whose size is the store's on disk)."""
    return {
        "embedded": (str(scratch / "embedded"), scratch / "embedded"),
        "milvus-lite": (f"milvus-lite://{scratch / 'lite' / 'frameseek.db'}", scratch / "lite"),
    }


def video(first: int, descriptors: np.ndarray, rng: np.random.Generator,
          thumbnail_bytes: int = THUMBNAIL_BYTES) -> AnalysedVideo:
    """Rows first.. of the collection as one video whose key frame numbers are the row numbers,
    so that a match names its row."""
    keyframes = [KeyFrame(frame=first + i, time=(first + i) / FPS, descriptor=d,
                          index=np.zeros(INDEX_DIM, np.float32),  # the stores derive it
                          segments=[((first + i) / FPS, (first + i + 1) / FPS)],
                          thumbnail=rng.bytes(thumbnail_bytes))
                 for i, d in enumerate(descriptors)]
    count = len(descriptors)
    record = VideoRecord(f"synthetic/{first:09d}.mp4", f"{first:064x}", size=1,
                         duration=count / FPS, frames=count, width=320, height=180, fps=FPS,
                         keyframes=count)
    return AnalysedVideo(record, keyframes, TrackBuilder().track(), "synthetic")


def fill(index: Index, collection: Collection) -> float:
    """Write the collection into `index`; the seconds it took."""
    rng = np.random.default_rng(1)
    descriptors = collection.vectors.descriptors
    start = time.perf_counter()
    with index._writing():
        for first in range(0, len(descriptors), PER_VIDEO):
            index.put(video(first, descriptors[first : first + PER_VIDEO], rng))
    return time.perf_counter() - start


def exact(collection: Collection) -> np.ndarray:
    """Rows of each query's true top 12 over the float16 descriptors."""
    flat = faiss.IndexFlatL2(collection.vectors.descriptors.shape[1])
    flat.add(collection.vectors.descriptors.astype(np.float32))
    return flat.search(collection.queries, TOP)[1]


def measure(location: str, folder: Path, collection: Collection, truth: np.ndarray,
            say: Callable[[str], None]) -> dict:
    with Index.create(location) as index:
        fill_s = fill(index, collection)
    say(f"{location}: filled in {fill_s:.1f} s")
    # Opened again, as a searching process opens it.
    with Index.open(location) as index:
        # The coarse vectors as the index derives its own (its pooling's), not the collection's.
        coarse = pooling_named(index.config.pooling).coarse(collection.queries)
        index.search_features(coarse[0], collection.queries[0], TOP)
        times, found = [], []
        for q in range(len(collection.queries)):
            start = time.perf_counter()
            matches = index.search_features(coarse[q], collection.queries[q], TOP)
            times.append((time.perf_counter() - start) * 1000)
            found.append({m.frame for m in matches})
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    recall = [len(rows & set(want.tolist())) / TOP for rows, want in zip(found, truth,
                                                                         strict=True)]
    return {"recall_at_12": round(float(np.mean(recall)), 4),
            "ms_median": round(statistics.median(times), 2),
            "ms_p95": round(float(np.percentile(times, 95)), 2),
            "fill_s": round(fill_s, 1),
            "disk_bytes_per_keyframe": round(size / len(collection.vectors))}


def run(count: int, queries: int = 100, index_dir: Path | None = None,
        names: list[str] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda _line: None)
    real, computed_by = real_descriptors(index_dir)
    collection = synthesize(real, count, queries)
    truth = exact(collection)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (location, folder) in stores(Path(scratch)).items():
            if names is None or name in names:
                results[name] = measure(location, folder, collection, truth, say)
                say(f"{name}: {results[name]}")
    return {"keyframes": count, "queries": queries, "stores": results,
            "milvus_settings": asdict(SearchSettings()),  # the default URI's
            "descriptors_by": computed_by,
            "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(),
                        "load_average": os.getloadavg()}}
