"""What every vector store holds and answers: videos, their key frames, and the vectors."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from frameseek.keyframes import KeyFrame

if TYPE_CHECKING:
    from frameseek.localize import Track


class StoreError(RuntimeError):
    """The store cannot be opened or written as asked; the message says why."""


@dataclass(frozen=True)
class VideoRecord:
    path: str
    content_id: str  # sha256 of the file: the identity that survives renames and touches
    size: int
    duration: float
    frames: int
    width: int
    height: int
    fps: float
    keyframes: int = 0
    id: int | None = None
    # Of `keyframes`, those the coverage guarantee added to k-means' (frameseek/keyframes.py).
    coverage_keyframes: int = 0

    @property
    def compression_ratio(self) -> float:
        return 1.0 - self.keyframes / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class KeyFrameRecord:
    id: int
    video: str
    frame: int
    time: float
    segments: list[tuple[float, float]]


@dataclass(frozen=True)
class Vectors:
    """A consistent snapshot of every key frame's vectors, rows aligned with `ids`."""

    ids: np.ndarray  # (N,) int64 key-frame ids
    index: np.ndarray  # (N, 64) float32
    descriptors: np.ndarray  # (N, 512) float16 as stored (float32 for schema-1 rows)

    def __len__(self) -> int:
        return len(self.ids)


class Store(Protocol):
    def get_config(self) -> dict | None: ...

    def set_config(self, config: dict) -> None: ...

    def add_video(self, video: VideoRecord, keyframes: list[KeyFrame]) -> VideoRecord:
        """Add one video and all its key frames at once, replacing any entry for the same path."""
        ...

    def remove_video(self, path: str) -> bool: ...

    def find_video(self, path: str) -> VideoRecord | None: ...

    def videos(self) -> list[VideoRecord]: ...

    def vectors(self) -> Vectors: ...

    def version(self) -> Hashable:
        """A value that changes whenever any process changes the contents (it may change more
        often): what caches of the store's contents are keyed on."""
        ...

    def keyframes(self, ids: list[int]) -> list[KeyFrameRecord]: ...

    def thumbnail(self, keyframe_id: int) -> bytes | None: ...

    def close(self) -> None: ...


class Tracks(Protocol):
    """Where each video's localisation track (frameseek/localize.py) is kept, by path and
    content: beside an embedded index (`TrackStore`), or in a store every searcher reaches."""

    def put(self, path: str, content_id: str, track: Track) -> None: ...

    def get(self, path: str, content_id: str) -> Track | None:
        """None where there is none for this content (a stale one is never returned)."""
        ...

    def remove(self, path: str) -> None: ...

    def close(self) -> None: ...
