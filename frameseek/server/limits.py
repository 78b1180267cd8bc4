"""A per-client rate limit on searches: a token bucket for each client.

A client (a token, or an address where no token is used) may send `burst` searches at once and
`per_minute` a minute on average; past that a search is answered 429 with `Retry-After`, before
its upload is read. This keeps one client from taking the CNN from the others; the bounded CNN
queue (frameseek/server/batching.py) is what protects the server from all of them together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# Forgotten buckets are refilled ones: dropping them changes no answer. Past this many clients
# the full ones are swept, so a flood of addresses cannot grow the table without end.
SWEEP_AT = 10_000


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
