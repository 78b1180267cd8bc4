"""Indexing over a Ray cluster (or a laptop's cores): decode tasks, CNN actors, one writer.

- **CNN actors** (`Embedder`), one per node (one per GPU where the cluster has GPUs): each loads
  the model once, with the back end its node offers (CUDA on a GPU it is given), and runs the
  forwards of every video decoded on its node. Requests that arrive while a forward runs are
  run together in the next one (`SharedForward`), so batches cross file boundaries.
- **Decode tasks** (`analyse_task`, one CPU each, one per video): hash the file (an unchanged one
  is recognised without decoding), decode it, compute Algorithm 1's histograms, sample, draw
  thumbnails and the localisation track, cluster, with every CNN forward sent to the actor of
  their node. It is `Index.add`'s code (`analyse_video`) with the back end swapped, so the key
  frames are the ones the plain path gives.
- **The driver** writes each finished video to the store in one `Index.put`, in the order they
  finish, so a video is in the index whole or not at all and the store never sees concurrent
  writers.

Why the CNN is not a Ray Data `map_batches` stage: the coverage guarantee
(frameseek/keyframes.py) decides from the CNN's output which further frames of a video to embed
(the frame midway between two samples that differ too much, recursively), so a video's forwards
are not a stream known before the CNN runs, and a Ray Data pipeline only passes data forward.
Actors called from the tasks give what the actor pool would: the model loaded once per actor,
batches across files.

Failures: an unreadable video is reported as skipped at once (a retry would fail the same way);
any other failure, a crashed worker, a dead actor or a lost node included, re-runs the video's
task, `max_retries` times, and then reports it, while the other videos go on. Workers need
frameseek installed and the video paths readable at the same names (a shared filesystem); the
store is only touched by the driver.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frameseek.backends import Backend
from frameseek.features import VGG16Pool5
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
MAX_BATCH = 32  # images per shared forward: a GPU's sweet spot, no slower per image on a CPU
ACTOR_RESTARTS = 3


@dataclass
class _Request:
    inputs: np.ndarray
    output: np.ndarray | None = None
    error: BaseException | None = None


class SharedForward:
    """A back end called from many threads at once: a call that finds it idle runs, in one
    forward, what every caller has waiting (up to `max_batch` images of one size), and each
    caller takes its rows. While a forward runs the next requests gather, so batches fill under
    load without any call waiting on a timer."""

    def __init__(self, backend: Backend, max_batch: int = MAX_BATCH) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.forwards = 0
        self.images = 0
        self._ready = threading.Condition()
        self._waiting: list[_Request] = []
        self._running = False

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        request = _Request(inputs)
        with self._ready:
            self._waiting.append(request)
            while request.output is None and request.error is None:
                if self._running:
                    self._ready.wait()
                    continue
                batch = self._take()
                self._running = True
                self._ready.release()
                try:
                    self._run(batch)
                finally:
                    self._ready.acquire()
                    self._running = False
                    self._ready.notify_all()
        if request.error is not None:
            raise request.error
        assert request.output is not None
        return request.output

    def _take(self) -> list[_Request]:
        """The oldest waiting requests of the first one's image size, up to `max_batch`."""
        first = self._waiting[0]
        batch, size = [], 0
        for request in list(self._waiting):
            if request.inputs.shape[1:] != first.inputs.shape[1:]:
                continue
            if batch and size + len(request.inputs) > self.max_batch:
                break
            batch.append(request)
            size += len(request.inputs)
            self._waiting.remove(request)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            output = self.backend(np.concatenate([request.inputs for request in batch]))
        except Exception as exc:  # every caller of the batch gets it
            for request in batch:
                request.error = exc
            return
        self.forwards += 1
        start = 0
        for request in batch:
            request.output = output[start : start + len(request.inputs)]
            start += len(request.inputs)
        self.images += start


class Embedder:
    """A CNN actor: the model loaded once, its forwards shared by every task that calls it."""

    def __init__(self, threads: int | None = None) -> None:
        self.backbone = VGG16Pool5(threads)
        self.shared = SharedForward(self.backbone.backend)

    def describe(self) -> tuple[str, str, str]:
        backend = self.backbone.backend
        return backend.name, backend.precision, backend.device

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        return self.shared(inputs)

    def stats(self) -> tuple[int, int]:
        """Forwards run, images embedded."""
        return self.shared.forwards, self.shared.images


class RemoteBackend:
    """The `Backend` protocol over the CNN actors, as a decode task holds it: its forwards go
    to one actor of the task's own node (of any node where that one has none), and its name,
    precision and device are that actor's back end's (what the index records)."""

    def __init__(self, actors: dict[str, list[tuple[Any, tuple[str, str, str]]]]) -> None:
        self.actors = actors  # Ray node id → its actors' handles and back ends
        self._chosen: tuple[Any, tuple[str, str, str]] | None = None

    def _actor(self) -> tuple[Any, tuple[str, str, str]]:
        if self._chosen is None:
            import ray

            node = ray.get_runtime_context().get_node_id()
            everyone = [actor for actors in self.actors.values() for actor in actors]
            self._chosen = random.choice(self.actors.get(node, everyone))
        return self._chosen

    @property
    def name(self) -> str:
        return self._actor()[1][0]

    @property
    def precision(self) -> str:
        return self._actor()[1][1]

    @property
    def device(self) -> str:
        return self._actor()[1][2]

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        import ray

        return ray.get(self._actor()[0].forward.remote(inputs))


@dataclass(frozen=True)
class Outcome:
    """What a task sends back: the analysed video, or why there is none (None: unchanged)."""

    path: str
    video: AnalysedVideo | None = None
    skipped: str | None = None


def analyse_task(path: str, known_content_id: str | None, config: IndexConfig,
                 backend: Backend) -> Outcome:
    """The unit of work, run in a Ray worker; `known_content_id` is what the index holds for
    this path, so an unchanged file is recognised without decoding it."""
    try:
        check_file(Path(path))
        identity = content_id(Path(path))
        if identity == known_content_id:
            return Outcome(path)
        extractor = keyframe_extractor(config, feature_extractor(config, backend=backend))
        return Outcome(path, analyse_video(Path(path), identity, extractor))
    except VideoError as exc:
        return Outcome(path, skipped=str(exc))
    except OSError as exc:
        return Outcome(path, skipped=exc.strerror or str(exc))


def start_embedders() -> RemoteBackend:
    """One CNN actor per alive node, or per GPU where the cluster has GPUs, each with its
    node's CPUs as threads; ready (model loaded) when this returns."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors: dict[str, list[Any]] = {}
    for node in (n for n in ray.nodes() if n["Alive"]):
        resources = node["Resources"]
        gpus = int(resources.get("GPU", 0))
        for _ in range(max(gpus, 1)):
            # A CNN actor claims no CPU of Ray's, so that decode tasks fill every CPU; its
            # threads share the node's cores with them, as the plain path's decoder thread and
            # CNN do.
            actor = ray.remote(Embedder).options(
                num_cpus=0, num_gpus=1 if gpus else 0, max_concurrency=64,
                max_restarts=ACTOR_RESTARTS,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(max(1, int(resources.get("CPU", 1))))
            actors.setdefault(node["NodeID"], []).append(actor)
    return RemoteBackend({node: [(actor, ray.get(actor.describe.remote())) for actor in group]
                          for node, group in actors.items()})


def index_with_ray(
    index: Index,
    paths: Iterable[str | Path],
    *,
    address: str = LOCAL,
    num_cpus: int | None = None,
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
        backend = start_embedders()
        remote = ray.remote(task).options(num_cpus=1, max_retries=max_retries,
                                          retry_exceptions=True)
        # Enough queued to keep every CPU busy while the driver writes, without holding every
        # finished video of a large archive in the object store at once.
        in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
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
                                              index.config, backend)
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
