"""The exact moment, measured: an Ours variant's top result before and after `Localizer.refine`.

The eval index is written from the cached analysis pass (methods.build_ours), which keeps no
signature track; the tracks are built here as `frameseek index` builds them (TrackBuilder over
every decoded frame) and cached by content, so a rerun decodes nothing. Each query reuses its
cached CNN features: only the search and the refinement run, and the refinement is timed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from frameseek.eval.methods import TOP, Ours, QueryInput
from frameseek.eval.queries import SETS, Query
from frameseek.index import Index
from frameseek.localize import (
    GreyQuery,
    LocalisationSample,
    Track,
    build_track,
    localisation_metrics,
)

log = logging.getLogger(__name__)


def add_tracks(index: Index, cache: Path) -> int:
    """Give every video in the index its signature track; returns the tracks' stored bytes."""
    if index.tracks is None:
        raise ValueError("localisation needs an index on disk (it keeps tracks beside it)")
    cache.mkdir(parents=True, exist_ok=True)
    stored = 0
    for record in index.videos():
        cached = cache / f"{record.content_id[:24]}.npz"
        if cached.exists():
            track = Track.from_bytes(cached.read_bytes())
        else:
            track = build_track(Path(record.path))
            cached.write_bytes(track.to_bytes())
            log.info("track of %s: %d entries", Path(record.path).name, len(track))
        index.tracks.put(record.path, record.content_id, track)
        stored += len(track.to_bytes())
    return stored


def sample(ours: Ours, query: Query, features: QueryInput) -> LocalisationSample:
    """One query's top result without and with refinement, and the time refinement took."""
    matches, pixels = ours.matches(features, TOP)
    start = time.perf_counter()
    refined = ours.index.localizer.refine(GreyQuery(pixels), matches)
    seconds = time.perf_counter() - start
    if not matches:
        return LocalisationSample(False, query.time, 0.0, 0.0, seconds)
    return LocalisationSample(matches[0].video == query.video, query.time, matches[0].time,
                              refined[0].time, seconds)


def evaluate(ours: Ours, queries: list[Query], inputs: list[QueryInput], cache: Path) -> dict:
    """Per query set, `localisation_metrics` of one Ours variant's top results; and the tracks'
    size."""
    track_bytes = add_tracks(ours.index, cache)
    sample(ours, queries[0], inputs[0])  # warm-up: loads the first track, first-call costs
    samples = [sample(ours, q, i) for q, i in zip(queries, inputs, strict=True)]
    minutes = sum(v.duration for v in ours.index.videos()) / 60
    return {
        "sets": {s: localisation_metrics([x for x, q in zip(samples, queries, strict=True)
                                          if q.set == s]) for s in SETS},
        "track_bytes": track_bytes,
        "track_bytes_per_minute": track_bytes / minutes if minutes else 0.0,
    }
