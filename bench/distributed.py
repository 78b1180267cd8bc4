"""Scale-out benchmark: Ray indexing throughput, and search latency on Milvus Lite vs embedded.

    python bench/distributed.py indexing --copies 4          # plain vs Ray with 1 and 2 workers
    python bench/distributed.py search --keyframes 100000 [--index DIR]  # Milvus Lite vs embedded

Indexing: COPIES copies of samples/videos/bikes.mp4 (10 s each) are indexed into a fresh
embedded index by the plain path (`Index.add`, one process, ONNX on every core) and by Ray with 1
and 2 local workers (one CPU and one ONNX thread each). Ray's start-up is timed apart; the Ray
figures include each worker loading the model.

Search: the synthetic collection of `frameseek bench search` (real descriptors of the sample
index, interpolated plus noise; frameseek/bench/search.py) is written into both stores through
`Store.add_video`, in videos of 1000 key frames, and each store is queried through
`Index.search_features`, the path `frameseek search` takes after embedding the image, one query
at a time. Recall@12 is against exact 512-d search over the same collection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from frameseek.bench.search import TOP, Collection, measure, methods, real_descriptors, synthesize
from frameseek.distributed import index_with_ray
from frameseek.index import Index
from frameseek.keyframes import KeyFrame
from frameseek.store.base import VideoRecord

ROOT = Path(__file__).resolve().parents[1]
BIKES = ROOT / "samples" / "videos" / "bikes.mp4"
KEYFRAMES_PER_VIDEO = 1000


def indexing(copies: int, scratch: Path) -> dict:
    import ray

    videos = scratch / "videos"
    videos.mkdir()
    for n in range(copies):
        shutil.copy(BIKES, videos / f"bikes-{n}.mp4")
    results: dict[str, dict] = {}

    def run(name: str, add) -> None:
        with Index.create(scratch / name) as index:
            start = time.perf_counter()
            report = add(index)
            seconds = time.perf_counter() - start
        assert len(report.added) == copies, report.skipped
        duration = sum(v.duration for v in report.added)
        results[name] = {"seconds": round(seconds, 2), "videos_per_min": round(60 * copies /
                         seconds, 2), "realtime_factor": round(duration / seconds, 2)}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)

    run("plain", lambda index: index.add([videos]))
    for workers in (1, 2):
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="error")
        startup = time.perf_counter() - start
        try:
            run(f"ray-{workers}", lambda index: index_with_ray(index, [videos]))
        finally:
            ray.shutdown()
        results[f"ray-{workers}"]["ray_start_s"] = round(startup, 2)
    return {"videos": copies, "video_s_each": 10.0, "results": results}


def _fill(store, collection: Collection) -> float:
    """Write the collection as videos of KEYFRAMES_PER_VIDEO key frames; frame = row number."""
    vectors = collection.vectors
    start = time.perf_counter()
    for first in range(0, len(vectors), KEYFRAMES_PER_VIDEO):
        rows = range(first, min(first + KEYFRAMES_PER_VIDEO, len(vectors)))
        keyframes = [KeyFrame(row, row / 25, vectors.descriptors[row].astype(np.float32),
                              vectors.index[row], [(row / 25, row / 25 + 0.5)], b"")
                     for row in rows]
        video = VideoRecord(f"synthetic/{first:08d}.mp4", f"{first:064d}", 0, len(rows) / 25,
                            len(rows), 320, 180, 25.0)
        store.add_video(video, keyframes)
    return time.perf_counter() - start


def _store_method(location: str, size_of: Path, opened: list[Index]):
    def build(collection: Collection):
        index = Index.create(location)
        opened.append(index)
        fill_s = _fill(index.store, collection)
        print(f"{location}: filled in {fill_s:.1f} s", file=sys.stderr, flush=True)
        # Warm-up: the embedded store loads its snapshot and builds its coarse index here.
        index.search_features(collection.query_index[0], collection.queries[0], TOP)

        def search(query_index: np.ndarray, queries: np.ndarray) -> np.ndarray:
            return np.array([
                [m.frame for m in index.search_features(query_index[q], queries[q], TOP)]
                for q in range(len(queries))
            ])

        size = sum(f.stat().st_size for f in size_of.rglob("*") if f.is_file())
        return search, size / len(collection.vectors)

    return build


def search(count: int, queries: int, scratch: Path, index_dir: Path | None) -> dict:
    collection = synthesize(real_descriptors(index_dir)[0], count, queries)
    truth_result, truth = measure(methods(count)["faiss-flat512"], collection, None)
    stores = {
        "embedded": (str(scratch / "embedded"), scratch / "embedded"),
        "milvus-lite": (f"milvus-lite://{scratch / 'lite' / 'frameseek.db'}", scratch / "lite"),
    }
    results = {"exact-512 (faiss flat, no store)": truth_result.__dict__}
    opened: list[Index] = []
    for name, (location, folder) in stores.items():
        result, _ = measure(_store_method(location, folder, opened), collection, truth)
        results[name] = {k: round(v, 4) for k, v in result.__dict__.items()}
        results[name]["bytes_per_keyframe_on_disk"] = results[name].pop("bytes_per_keyframe")
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    for index in opened:
        index.close()
    return {"keyframes": count, "queries": queries, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["indexing", "search"])
    parser.add_argument("--copies", type=int, default=4, help="copies of bikes.mp4 to index")
    parser.add_argument("--keyframes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--index", type=Path, metavar="DIR",
                        help="take the real descriptors from this index (default: index the "
                             "sample videos first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.part == "indexing":
            figures = indexing(args.copies, Path(scratch))
        else:
            figures = search(args.keyframes, args.queries, Path(scratch), args.index)
    figures["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
