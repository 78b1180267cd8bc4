"""Video decoding with exact presentation timestamps (PyAV).

Frames are decoded one at a time and converted to pixels only when asked, so memory stays flat
however long the video is, and a caller that needs only a small picture never pays for a big one.
"""

from __future__ import annotations

import math
import os
import queue
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv", ".ogg", ".ts",
     ".flv", ".wmv", ".3gp"}
)


# FFmpeg's single-image demuxers (png_pipe, jpeg_pipe, ...): a photo renamed .mp4 is not a video.
_IMAGE_DEMUXER_SUFFIX = "_pipe"


class VideoError(Exception):
    """A file that cannot be decoded as video; the message is one line, fit for a summary."""


@dataclass(frozen=True)
class Timestamp:
    """A presentation time kept exact (PTS × time base) so variable frame rates never drift."""

    pts: int
    time_base: Fraction

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)

    def __str__(self) -> str:
        return format_time(self.seconds)


def format_time(seconds: float) -> str:
    """``mm:ss.s`` (or ``h:mm:ss.s``), the way people quote a moment in a video."""
    minutes, secs = divmod(max(seconds, 0.0), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:04.1f}"
    return f"{minutes:02d}:{secs:04.1f}"


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration: float
    frames: int
    width: int
    height: int
    fps: float


class Frame:
    """One decoded frame: its number in display order, its timestamp, pixels on demand."""

    __slots__ = ("_frame", "number", "timestamp")

    def __init__(self, number: int, timestamp: Timestamp, frame: av.VideoFrame) -> None:
        self.number = number
        self.timestamp = timestamp
        self._frame = frame

    @property
    def time(self) -> float:
        return self.timestamp.seconds

    @property
    def width(self) -> int:
        return self._frame.width

    @property
    def height(self) -> int:
        return self._frame.height

    def rgb(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """Pixels as an (H, W, 3) uint8 RGB array, scaled by FFmpeg's swscale when asked."""
        converted = _reformatter(width, height).reformat(self._frame, width, height, "rgb24")
        return converted.to_ndarray()


# A frame's own reformatter (what `to_ndarray(width=...)` uses) sets up a new swscale context,
# with its own thread pool, for every frame: at 64×64 that costs several times the conversion.
# One reformatter per output size and thread keeps its context from frame to frame (the same
# swscale parameters, so the same pixels); per thread, as a context is not thread-safe.
_this_thread = threading.local()
_REFORMATTERS_PER_THREAD = 16  # output sizes: a few fixed ones, thumbnails by aspect ratio


def _reformatter(width: int | None, height: int | None) -> VideoReformatter:
    if not hasattr(_this_thread, "reformatters"):
        _this_thread.reformatters = {}
    by_size: dict[tuple[int | None, int | None], VideoReformatter] = _this_thread.reformatters
    if (width, height) not in by_size and len(by_size) >= _REFORMATTERS_PER_THREAD:
        by_size.clear()
    return by_size.setdefault((width, height), VideoReformatter())


def check_file(path: Path) -> None:
    """Refuse, with a one-line reason, what cannot be a video file before anything reads it.

    A FIFO or device named like a video would block the first read forever, so only regular
    files pass; an unreadable file is named as such rather than as a damaged video.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise VideoError("no such file (or a broken link)") from exc
    except OSError as exc:
        raise VideoError(f"cannot read ({_reason(exc)})") from exc
    if stat.S_ISDIR(mode):
        raise VideoError("is a directory")
    if not stat.S_ISREG(mode):
        raise VideoError("not a regular file (a pipe, socket or device)")
    if path.stat().st_size == 0:
        raise VideoError("empty file")
    if not os.access(path, os.R_OK):
        raise VideoError("permission denied")


def _open(path: Path) -> av.container.InputContainer:
    check_file(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as exc:
        raise VideoError("permission denied") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"not a readable video ({_reason(exc)})") from exc
    if container.format.name.endswith(_IMAGE_DEMUXER_SUFFIX):
        container.close()
        raise VideoError(f"a still image ({container.format.name.removesuffix('_pipe')}), "
                         "not a video")
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    return container


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).splitlines()[0][:120]


def probe(path: Path) -> VideoInfo:
    """Container-level facts (the frame count may be an estimate where the container has none)."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frames = stream.frames or (math.ceil(duration * fps) if fps else 0)
        return VideoInfo(path, duration, frames, stream.width, stream.height, fps)
    finally:
        container.close()


def iter_frames(path: Path, *, threads: int = 0) -> Iterator[Frame]:
    """Decode every frame in display order, with its exact timestamp.

    Damaged packets are skipped (the decoder resynchronises at the next key frame); a file that
    ends early yields what it holds. A file that yields no frame at all raises `VideoError`.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        time_base = stream.time_base or Fraction(1, 1_000_000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        step = max(1, round(1 / (rate * time_base)))
        number = 0
        last_pts: int | None = None
        for packet in _packets(container, stream):
            try:
                decoded = packet.decode()
            except (av.error.FFmpegError, ValueError):
                continue
            for frame in decoded:
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + step
                if last_pts is not None and pts <= last_pts:
                    # Broken timestamps (seen in damaged files): keep time moving forward.
                    pts = last_pts + step
                last_pts = pts
                yield Frame(number, Timestamp(pts, time_base), frame)
                number += 1
        if number == 0:
            raise VideoError("no decodable frame")
    finally:
        container.close()


def _packets(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.Packet]:
    """Demux, stopping quietly where a truncated file ends; the final empty packet flushes."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except (av.error.FFmpegError, ValueError):
            return
        yield packet


T = TypeVar("T")
_END = object()


class _Failure:
    """An exception raised in the background thread, carried to the caller to raise there."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


def in_background(items: Iterable[T], depth: int) -> Iterator[T]:
    """`items`, produced in a daemon thread up to `depth` ahead of the caller, so that decoding
    (PyAV releases the GIL in FFmpeg) overlaps the caller's work. An exception raised producing
    them is raised here, the same object. Close the generator (`contextlib.closing`) to stop the
    thread when the caller stops early: it then finishes the item in hand and closes `items`.
    """
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                ready.put(item)
                if stop.is_set():
                    return
            ready.put(_END)
        except BaseException as exc:
            ready.put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="frameseek-decoder", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.exception
            yield item
    finally:
        stop.set()
        # Room for the one item the thread may still put before it sees `stop`.
        while not ready.empty():
            ready.get_nowait()
        thread.join()
