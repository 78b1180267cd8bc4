"""`frameseek bench scale`: a real on-disk index of N synthetic key frames, opened and searched
as users do (bench/README.md).

The key frames are written through the store, 1000 per video, with descriptors drawn from real
ones (frameseek/bench/search.py) and 4.4 KB incompressible thumbnails (the size of real JPEG
ones), the search structure maintained after each video as `frameseek index` does. Then, in a
fresh process that has never seen the index: the open; the queries one at a time on one thread,
twice (the first pass maps the pages each reads, the second is timed as warm); the resident
memory; and the time until a video written by another process (this one) is found by a search,
with the slowest query answered meanwhile. Given the directory of an index it built before, it
measures that index again instead of building one. A fresh `frameseek search`
process is timed on the sample query, model load included. Recall@12 is against exact search
over the 512-d descriptors, read back from the index's own row file.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import faiss
import numpy as np

from frameseek.bench import THUMBNAIL_BYTES
from frameseek.bench.search import TOP, Synthesizer, real_descriptors
from frameseek.features import INDEX_DIM, pooling_named
from frameseek.index import Index
from frameseek.keyframes import KeyFrame
from frameseek.search import CHUNK
from frameseek.store.base import VideoRecord

PER_VIDEO = 1000
QUERIES = 200
QUERY_IMAGE = Path(__file__).resolve().parents[2] / "samples" / "query.jpg"
NEW_VIDEO = "bench-scale-new.mp4"
GIVE_UP_S = 60.0  # a new video not found by then is reported as never found (null)


def keyframes(descriptors: np.ndarray, rng: np.random.Generator,
              thumbnail_bytes: int = THUMBNAIL_BYTES) -> list[KeyFrame]:
    """One synthetic video's key frames: 25 fps, a key frame every 10 frames."""
    unused = np.zeros(INDEX_DIM, np.float32)  # the store derives the 64-d index itself
    return [KeyFrame(frame=10 * i, time=0.4 * i, descriptor=d, index=unused,
                     segments=[(0.4 * i, 0.4 * i + 0.4)], thumbnail=rng.bytes(thumbnail_bytes))
            for i, d in enumerate(descriptors)]


def video(number: int, count: int, path: str | None = None) -> VideoRecord:
    return VideoRecord(path or f"synthetic/{number:07d}.mp4", f"{number:064x}", size=1,
                       duration=0.4 * count, frames=10 * count, width=640, height=360, fps=25.0,
                       keyframes=count)


def build(directory: Path, count: int, synthesizer: Synthesizer,
          say: Callable[[str], None], thumbnail_bytes: int = THUMBNAIL_BYTES) -> float:
    """Write `count` key frames into a new index at `directory`; the seconds it took."""
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    with Index.create(directory) as index:
        for number, first in enumerate(range(0, count, PER_VIDEO)):
            n = min(PER_VIDEO, count - first)
            index.store.add_video(video(number, n),
                                  keyframes(synthesizer.keyframes(n), rng, thumbnail_bytes))
            done = index.search_index.maintain()
            if done is not None:
                say(f"{first + n} key frames: {done} ({time.perf_counter() - start:.0f} s)")
    return time.perf_counter() - start


def exact_top(directory: Path, queries: np.ndarray) -> np.ndarray:
    """Key-frame ids of the true top 12 of each query, over the index's own descriptors."""
    with Index.open(directory) as index:
        rows = index.store.descriptor_rows()
        best_d = np.full((len(queries), TOP), np.inf, np.float32)
        best_i = np.full((len(queries), TOP), -1, np.int64)
        for start in range(0, len(rows), CHUNK):
            part = np.ascontiguousarray(rows.descriptors[start:start + CHUNK], np.float32)
            d, i = faiss.knn(queries, part, TOP)
            ids = rows.ids(start + i)
            d[ids < 0] = np.inf
            merged_d = np.concatenate([best_d, d], axis=1)
            merged_i = np.concatenate([best_i, ids], axis=1)
            order = np.argsort(merged_d, axis=1)[:, :TOP]
            best_d = np.take_along_axis(merged_d, order, axis=1)
            best_i = np.take_along_axis(merged_i, order, axis=1)
    return best_i


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def probe(directory: Path, queries: np.ndarray, new: np.ndarray,
          connection: multiprocessing.connection.Connection) -> None:
    """The reader, in a fresh process: open, warm queries, memory; then, told when another
    process starts writing a video, search for it until found, timing every query meanwhile."""
    faiss.omp_set_num_threads(1)  # one query per core, as a server answers them
    start = time.perf_counter()
    with Index.open(directory) as index:
        index.searcher()
        open_s = time.perf_counter() - start
        # The coarse vectors as the store derives them: the IVF ignores them, but an exact
        # (small) collection's coarse stage ranks on them.
        coarse = pooling_named(index.config.pooling).coarse
        index_vectors = coarse(queries.astype(np.float32))
        new_index = coarse(new[None].astype(np.float32))[0]
        first_pass = []
        for q in range(len(queries)):  # the first touch of the pages each query reads
            start = time.perf_counter()
            index.search_features(index_vectors[q], queries[q], top=TOP)
            first_pass.append((time.perf_counter() - start) * 1000)
        times, found = [], []
        for q in range(len(queries)):
            start = time.perf_counter()
            matches = index.search_features(index_vectors[q], queries[q], top=TOP)
            times.append((time.perf_counter() - start) * 1000)
            found.append([m.keyframe_id for m in matches])
        rss = _rss_mb()
        connection.send({"open_s": open_s, "cold_ms": first_pass, "warm_ms": times,
                         "found": found, "rss_mb": rss})
        written_at = connection.recv()  # time.monotonic() is one clock for all processes
        slowest = 0.0
        searchable_s = None
        while not (connection.poll() and (searchable_s is not None
                                          or time.monotonic() - written_at > GIVE_UP_S)):
            start = time.monotonic()
            matches = index.search_features(new_index, new, top=1)
            slowest = max(slowest, (time.monotonic() - start) * 1000)
            if searchable_s is None and matches and matches[0].video == NEW_VIDEO:
                searchable_s = time.monotonic() - written_at
        connection.send({"add_video_s": searchable_s, "slowest_query_ms": slowest})


def run(count: int, directory: Path | None = None, source: Path | None = None,
        say: Callable[[str], None] = lambda _line: None,
        thumbnail_bytes: int = THUMBNAIL_BYTES) -> dict:
    if count < PER_VIDEO:
        raise ValueError(f"--keyframes must be at least {PER_VIDEO} (one synthetic video)")
    with ExitStack() as scope:
        if directory is None:
            directory = Path(scope.enter_context(tempfile.TemporaryDirectory())) / "index"
        seeds, _ = real_descriptors(source)
        synthesizer = Synthesizer(seeds)
        queries = synthesizer.queries(QUERIES)
        new = synthesizer.keyframes(PER_VIDEO)
        build_s = None
        if directory.exists():  # measured again (same seeds: the same queries and new video)
            _remove_new_video(directory, count)
        else:
            build_s = round(build(directory, count, synthesizer, say, thumbnail_bytes), 1)
            say(f"built {count} key frames in {build_s:.0f} s")
        truth = exact_top(directory, queries)
        sizes = _sizes(directory, count)
        first_query_s = _first_query(directory)
        reader = _reader(directory, queries, new, truth)
        say(f"queries on first touch of their pages: median {reader.pop('cold_ms_median')} ms; "
            f"slowest query while the new video was written and found: "
            f"{reader.pop('slowest_query_ms'):.1f} ms")
        return {"keyframes": count, "build_s": build_s,
                "thumbnail_bytes": thumbnail_bytes if build_s is not None else None, **sizes,
                "open_s": reader.pop("open_s"), "first_query_s": round(first_query_s, 3),
                **reader}


def _remove_new_video(directory: Path, count: int) -> None:
    """An index this benchmark built before, as it was before its last run's new video."""
    with Index.open(directory) as index:
        index.remove(NEW_VIDEO)
        held = sum(v.keyframes for v in index.videos())
    if held != count:
        raise ValueError(f"{directory} holds {held} key frames, not {count}: give a new "
                         "directory or its own count")


def _sizes(directory: Path, count: int) -> dict:
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    vectors = size(directory / "vectors") + size(directory / "search")
    return {"vector_bytes_per_keyframe": round(vectors / count, 1),
            "disk_bytes_per_keyframe": round(size(directory) / count, 1)}


def _first_query(directory: Path) -> float:
    command = [shutil.which("frameseek") or sys.executable, "search", str(QUERY_IMAGE),
               "--index", str(directory), "--no-refine", "--json"]
    if not command[0].endswith("frameseek"):
        command[1:1] = ["-m", "frameseek.cli"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _reader(directory: Path, queries: np.ndarray, new: np.ndarray, truth: np.ndarray) -> dict:
    """Run `probe` in a fresh process, writing the new video from this one meanwhile."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    reader = context.Process(target=probe, args=(directory, queries, new[0].astype(np.float32),
                                                 theirs))
    reader.start()
    opened = ours.recv()
    with Index.open(directory) as index:
        ours.send(time.monotonic())
        index.store.add_video(video(-1, len(new), NEW_VIDEO),
                              keyframes(new, np.random.default_rng(2)))
        index.search_index.maintain()
    time.sleep(1.0)  # the reader keeps querying through whatever the commit triggers
    ours.send("done")
    added = ours.recv()
    reader.join()
    recall = np.mean([len(set(f) & set(t)) / TOP
                      for f, t in zip(opened["found"], truth.tolist(), strict=True)])
    return {"open_s": round(opened["open_s"], 4),
            "warm_ms_median": round(statistics.median(opened["warm_ms"]), 3),
            "warm_ms_p95": round(float(np.percentile(opened["warm_ms"], 95)), 3),
            "recall_at_12": round(float(recall), 4),
            "add_video_s": (None if added["add_video_s"] is None
                            else round(added["add_video_s"], 3)),
            "rss_mb": round(opened["rss_mb"], 1), "slowest_query_ms": added["slowest_query_ms"],
            "cold_ms_median": round(statistics.median(opened["cold_ms"]), 3)}
