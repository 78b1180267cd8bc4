"""Synthetic videos written into an index the way `frameseek index` writes them (the video's
transaction, then the search structure maintained), with rules small enough that a few seconds
of writing trains, folds and retrains the IVF. Run as a process of its own to be killed:

    python -m tests.robustness.grow_index DIR VIDEOS
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from frameseek.index import Index
from frameseek.keyframes import KeyFrame
from frameseek.searchindex import Rules, SearchIndex
from frameseek.store.base import VideoRecord

PER_VIDEO = 400
# Trains at 2,000 live key frames, folds every 1,000, retrains at 4,000, 8,000, ...
RULES = Rules(flat_limit=2_000, fold_rows=1_000, fold_fraction=0.0)


def path(number: int) -> str:
    return f"synthetic/{number:04d}.mp4"


def descriptors(number: int) -> np.ndarray:
    """Video `number`'s key frames: the same on every run, so that a resumed run writes what a
    clean one does."""
    rng = np.random.default_rng(number)
    return np.maximum(rng.standard_normal((PER_VIDEO, 512), dtype=np.float32), 0)


def search_index(index: Index, rules: Rules = RULES) -> SearchIndex:
    return SearchIndex(index.store, rules=rules)


def grow(directory: Path, videos: int, rules: Rules = RULES) -> None:
    """Add videos 0 … videos-1, skipping those already in the index (a resumed run)."""
    with Index.open(directory, create=True) as index:
        structure = search_index(index, rules)
        for number in range(videos):
            if index.store.find_video(path(number)) is not None:
                continue
            keyframes = [KeyFrame(frame=i, time=i / 25, descriptor=d,
                                  index=np.zeros(64, np.float32), segments=[(i / 25, i / 25)],
                                  thumbnail=b"jpeg")
                         for i, d in enumerate(descriptors(number))]
            record = VideoRecord(path(number), f"{number:064x}", 1, PER_VIDEO / 25, PER_VIDEO,
                                 64, 36, 25.0, PER_VIDEO)
            index.store.add_video(record, keyframes)
            print(f"{path(number)}: {structure.maintain() or 'added'}", flush=True)


if __name__ == "__main__":
    grow(Path(sys.argv[1]), int(sys.argv[2]))
