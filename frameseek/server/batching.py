"""Concurrent queries share one CNN forward.

A forward of 8 images costs far less than 8 forwards of one (docs/performance.md), and the
forward is most of a query's time. So the server does not run each query's forward on its own:
every query hands its resized image to one `EmbeddingBatcher`, whose thread takes whatever is
waiting, waits at most `window_s` after the first for more to arrive (up to `max_batch`), runs
one forward on the stack and hands each query its row. While a forward runs the next queries
gather, so under load batches fill without waiting; a query alone waits the window at most.

How many queries wait here is bounded before they arrive: the server admits only so many
searches at once (`Admission`, frameseek/server/limits.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from frameseek.features import Features

log = logging.getLogger("frameseek.server")

DEFAULT_WINDOW_MS = 5.0


@dataclass(frozen=True)
class Embedding:
    """One query's row of a batch's `Features`."""

    index: np.ndarray  # (64,) coarse vector
    descriptor: np.ndarray  # (512,) fine vector


@dataclass(frozen=True)
class _Query:
    image: np.ndarray
    future: Future[Embedding]
    submitted: float  # time.monotonic()


@dataclass
class BatchStats:
    batches: int = 0
    queries: int = 0
    largest: int = 0


class EmbeddingBatcher:
    """One background thread runs `embed_many` on the queries submitted from any thread."""

    def __init__(self, embed_many: Callable[[Sequence[np.ndarray]], Features], window_s: float,
                 max_batch: int) -> None:
        self.embed_many = embed_many
        self.window_s = window_s
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._waiting: queue.SimpleQueue[_Query] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="embedding-batcher", daemon=True).start()

    def submit(self, image: np.ndarray) -> Future[Embedding]:
        """Queue an image already at the extractor's input size."""
        future: Future[Embedding] = Future()
        self._waiting.put(_Query(image, future, time.monotonic()))
        return future

    def _run(self) -> None:
        while True:
            collected = self._collect()
            # A query whose request was given up (the client went away) is cancelled: no forward
            # for it, and no result set on it, which a cancelled future would refuse.
            batch = [query for query in collected if query.future.set_running_or_notify_cancel()]
            if batch:
                self._forward(batch)
                self.stats.batches += 1
                self.stats.queries += len(batch)
                self.stats.largest = max(self.stats.largest, len(batch))

    def _forward(self, batch: list[_Query]) -> None:
        try:
            features = self.embed_many([query.image for query in batch])
        except Exception as exc:  # the queries of the batch get it; the thread lives on
            log.exception("CNN forward of %d queries failed", len(batch))
            for query in batch:
                query.future.set_exception(exc)
            return
        for row, query in enumerate(batch):
            query.future.set_result(Embedding(features.index[row], features.descriptors[row]))

    def _collect(self) -> list[_Query]:
        """The next batch: the oldest waiting query, and whatever arrives within the window
        from its submission (a query that waited through a forward waits no longer)."""
        batch = [self._waiting.get()]
        deadline = batch[0].submitted + self.window_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._waiting.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch
