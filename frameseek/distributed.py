"""Indexing over a Ray cluster (or a laptop's cores): one task per video, one writer.

Each task hashes, decodes and analyses one video with the same code as `Index.add`
(`analyse_video`) and returns what it computed; the driver writes each finished video to the store
in one `Index.put`, in the order they finish, so a video is in the index whole or not at all and
the store never sees concurrent writers. Unreadable videos are reported as skipped at once (a retry
would fail the same way); any other failure, a crashed worker or a lost node included, is retried
`max_retries` times and then reported, while the other videos go on.

Workers need frameseek installed and the video paths readable at the same names (a shared
filesystem); the store is only touched by the driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from frameseek.index import (
    AddReport,
    AnalysedVideo,
    Index,
    IndexConfig,
    analyse_video,
    content_id,
    feature_extractor,
    find_videos,
    keyframe_extractor,
)
from frameseek.store.base import VideoRecord
from frameseek.video import VideoError, check_file

LOCAL = "local"  # `--ray` without an address: start Ray on this machine


@dataclass(frozen=True)
class Outcome:
    """What a task sends back: the analysed video, or why there is none (None: unchanged)."""

    path: str
    video: AnalysedVideo | None = None
    skipped: str | None = None


def analyse_task(path: str, known_content_id: str | None, config: IndexConfig,
                 threads: int) -> Outcome:
    """The unit of work, run in a Ray worker; `known_content_id` is what the index holds for
    this path, so an unchanged file is recognised without decoding it."""
    try:
        check_file(Path(path))
        identity = content_id(Path(path))
        if identity == known_content_id:
            return Outcome(path)
        features = feature_extractor(config, threads)
        extractor = keyframe_extractor(config, features)
        return Outcome(path, analyse_video(Path(path), identity, extractor))
    except VideoError as exc:
        return Outcome(path, skipped=str(exc))
    except OSError as exc:
        return Outcome(path, skipped=exc.strerror or str(exc))


def index_with_ray(
    index: Index,
    paths: Iterable[str | Path],
    *,
    address: str = LOCAL,
    num_cpus: int | None = None,
    cpus_per_task: int = 1,
    max_retries: int = 2,
    on_done: Callable[[Path, VideoRecord | None, str | None], None] | None = None,
    task: Callable[..., Outcome] = analyse_task,
) -> AddReport:
    """Like `Index.add`, with the analysis spread over Ray workers.

    Uses the Ray session already initialised in this process if there is one; otherwise connects
    to `address` (LOCAL: a new local Ray with `num_cpus` CPUs) and shuts it down at the end.
    `on_done(path, record, reason)` is told each video as it is written or given up.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address == LOCAL:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="warning")
        else:
            ray.init(address=address, logging_level="warning")
    try:
        remote = ray.remote(task).options(num_cpus=cpus_per_task, max_retries=max_retries,
                                          retry_exceptions=True)
        # Enough queued to keep every CPU busy while the driver writes, without holding every
        # finished video of a large archive in the object store at once.
        in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
        report = AddReport()
        start = time.perf_counter()
        waiting = find_videos(paths)
        running: dict = {}
        with index._writing():
            while waiting or running:
                while waiting and len(running) < in_flight:
                    path = waiting.pop(0)
                    known = index.store.find_video(str(path))
                    reference = remote.remote(str(path), known and known.content_id,
                                              index.config, cpus_per_task)
                    running[reference] = path
                (finished,), _ = ray.wait(list(running), num_returns=1)
                path = running.pop(finished)
                record, reason = _write(index, path, finished, report, max_retries)
                if on_done is not None:
                    on_done(path, record, reason)
        report.seconds = time.perf_counter() - start
        return report
    finally:
        if started_here:
            ray.shutdown()


def _write(index: Index, path: Path, finished, report: AddReport, max_retries: int
           ) -> tuple[VideoRecord | None, str | None]:
    import ray

    name = str(path)
    try:
        outcome: Outcome = ray.get(finished)
    except ray.exceptions.RayError as exc:
        lines = str(exc).strip().splitlines()
        reason = f"failed {max_retries + 1} times, last: {lines[-1] if lines else type(exc)}"
        report.skipped[name] = reason
        return None, reason
    if outcome.skipped is not None:
        report.skipped[name] = outcome.skipped
        return None, outcome.skipped
    if outcome.video is None:
        report.unchanged.append(name)
        return index.store.find_video(name), None
    record = index.put(outcome.video)
    report.added.append(record)
    return record, None
