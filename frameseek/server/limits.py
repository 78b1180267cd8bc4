"""The two limits on searches: a per-client rate, and how many the server works on at once.

A client (a token, or an address where no token is used) may send `burst` searches at once and
`per_minute` a minute on average (a token bucket for each client); past that a search is
answered 429 with `Retry-After`, before its upload is read. This keeps one client from taking
the CNN from the others; `Admission` is what protects the server from all of them together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from frameseek import backends

# Forgotten buckets are refilled ones: dropping them changes no answer. Past this many clients
# the full ones are swept, so a flood of addresses cannot grow the table without end.
SWEEP_AT = 10_000
# Searches in progress at once: one for each CPU the process may use. Each one more adds
# waiting, and little throughput: an admitted search waits for the others in progress. Under 4x
# overload on 2 CPUs (docs/server.md, Overload), 2 keep the answered p95 at 1.5-1.7x the
# unloaded one; 3 answer ~10% more searches at 1.8-2.4x, 4 hardly more than 3 at 2.5x.
DEFAULT_MAX_SEARCHES = backends.usable_cpus()


@dataclass
class _Bucket:
    level: float  # searches the client may send now
    updated: float  # time.monotonic() of `level`


class RateLimiter:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.per_second = per_minute / 60
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Count one search of `client`: 0 if it may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= SWEEP_AT:
                    self._sweep(now)
                bucket = self._buckets[client] = _Bucket(self.burst, now)
            bucket.level = min(self.burst,
                               bucket.level + (now - bucket.updated) * self.per_second)
            bucket.updated = now
            if bucket.level >= 1:
                bucket.level -= 1
                return 0.0
            return (1 - bucket.level) / self.per_second

    def _sweep(self, now: float) -> None:
        self._buckets = {
            client: bucket for client, bucket in self._buckets.items()
            if bucket.level + (now - bucket.updated) * self.per_second < self.burst
        }


class Admission:
    """At most `capacity` searches in progress at once, counted from their arrival (before the
    upload is read) to their answer; one more is refused at once, and answered 503.

    Bounding only the queue for the CNN is not enough: under overload, searches then pile up
    in front of it, reading and decoding uploads, and every answer, refusals included, waits
    for the pile (docs/server.md, Overload). Counted from arrival, an admitted search waits for
    at most `capacity - 1` others, and the uploads held in memory are bounded too.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.refused = 0
        self._in_progress = 0
        self._lock = threading.Lock()

    @property
    def in_progress(self) -> int:
        return self._in_progress

    def admit(self) -> bool:
        """Count one more search in progress, or refuse it (False) when `capacity` are."""
        with self._lock:
            if self._in_progress >= self.capacity:
                self.refused += 1
                return False
            self._in_progress += 1
            return True

    def release(self) -> None:
        """An admitted search has its answer (or its client went away)."""
        with self._lock:
            self._in_progress -= 1
