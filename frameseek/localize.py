"""The exact moment: refine a match's time from its key frame to the frame the query shows.

A key frame stands for the stretch of video in its k-means cluster (its `segments`), often a second
or more, not always contiguous. To name the moment, each video gets a *signature track* at index
time: a tiny grey thumbnail (FINE_GRID cells) of one frame every 1/TRACK_FPS seconds, with the
frame's number and exact time, compressed and kept in `tracks.sqlite` beside the index (under a
tenth of its size). The moment is found on a coarser GRID (each cell the mean of FINE² fine ones),
where a crop or a rescaled copy still covers whole cells; the fine thumbnails tell where else
in the video the picture shows unchanged. At query time, for the best match of each of the
top few videos:

1. *Placement*: where the query lies inside the frame (it may be a crop, and is often rescaled).
   Found once per match by normalised cross-correlation of the query over the key frame's stored
   thumbnail at several scales; cheap (about 64 × 36 pixels).
2. *Signature*: the query is drawn onto the track's grid at that placement, each fully covered
   cell averaged; cells it does not cover are left out.
3. *Search*: the track entries inside the match's segments (plus MARGIN_S either side) are scored
   by normalised correlation over the covered cells, so brightness and contrast changes cancel.
   The best entry is the refined moment.

No frame is decoded and no CNN runs at query time when a track exists. An index built before
tracks existed still refines: the spans are then decoded (seeking to the stream key frame before
each, at FINE_GRID resolution) to build the same thumbnails on the fly, at the cost of decoding.
"""

from __future__ import annotations

import io
import sqlite3
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

from frameseek.results import Match, Moment, VideoResult, similarity
from frameseek.store.base import StoreError
from frameseek.video import Frame, Timestamp, VideoError, iter_frames

if TYPE_CHECKING:
    from frameseek.store.base import Store, Tracks

TRACK_FPS = 8.0
GRID = (16, 9)  # cells across, down: every video is drawn onto the same 16:9 grid
FINE = 2  # fine cells across (and down) a GRID cell in a track's thumbnails
FINE_GRID = (GRID[0] * FINE, GRID[1] * FINE)
MARGIN_S = 0.5  # one sample step at the default sample_fps: frames between two samples' spans
PLACEMENT_WIDTH = 64  # the key frame thumbnail is matched against the query at this width
QUERY_WIDTH = 2 * PLACEMENT_WIDTH
SCALES = np.round(np.arange(0.45, 0.99, 0.05), 2)  # crop or inset width / whole width tried
TIE_RATIO = 2.0
MIN_CELLS = 12  # fewer covered cells than this and the query is too small to localise
MIN_CORRELATION = 0.5  # below this the best frame is no real likeness, and the time stays put
# How much better (in Fisher's z, which spreads out correlations near 1) another key frame's
# segments must match to be preferred over the best match's own.
SIBLING_MARGIN = 0.25
# Two stretches of one video this close are one appearance of the picture, not two: a shot cut
# in two clusters by k-means, or the frames between two samples' spans (MARGIN_S).
APPEARANCE_GAP_S = MARGIN_S
# A frame of a matched video shows the picture unchanged when its fine thumbnail, over the
# cells the query covers, lies within this many grey levels (mean absolute difference, 0-255)
# of the best moment's frame: the measure of the recurrence eval's truth
# (docs/eval/recurring.md). Compared within the video, frame with frame, so that a damaged query
# (a screenshot, a phone photo) still finds where its picture comes back.
UNCHANGED_LEVELS = 3.0
TRACKS_FILE = "tracks.sqlite"
CACHED_TRACKS = 64


def grey(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 → luma as float32 (BT.601), the quantity the track stores."""
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def query_grey(rgb: np.ndarray) -> np.ndarray:
    """The query's luma, shrunk first to at most QUERY_WIDTH wide: nothing later looks finer,
    and a phone photo's 12 megapixels would otherwise cost more than the whole search."""
    image = Image.fromarray(rgb)
    if image.width > QUERY_WIDTH:
        height = max(1, round(image.height * QUERY_WIDTH / image.width))
        image = image.resize((QUERY_WIDTH, height), Image.Resampling.BOX, reducing_gap=2.0)
    return grey(np.asarray(image))


class GreyQuery:
    """A query picture as the localiser compares it with frames (`query_grey`), and its
    signatures over each key frame it was placed on, made once: refining a match and finding
    its video's moments place the query over the same key frame."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.pixels = query_grey(rgb)
        self._signatures: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def signatures(self, keyframe_id: int, draw: Callable[[], tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The signatures over one key frame: drawn by `draw` the first time only."""
        if keyframe_id not in self._signatures:
            self._signatures[keyframe_id] = draw()
        return self._signatures[keyframe_id]


def frame_thumbnail(frame: Frame) -> np.ndarray:
    """One frame's track entry: its luma shrunk by swscale to FINE_GRID cells, as uint8.
    swscale's shrinking filter averages an area much like the box filter the query's cells
    get, and is the thumbnail the recurrence eval's truth is measured on."""
    return np.round(grey(frame.rgb(*FINE_GRID))).astype(np.uint8)


def coarse(fine: np.ndarray) -> np.ndarray:
    """(N, FINE_GRID[1], FINE_GRID[0]) thumbnails → (N, GRID[1], GRID[0]) signatures, float32."""
    return fine.reshape(len(fine), GRID[1], FINE, GRID[0], FINE).mean(axis=(2, 4),
                                                                      dtype=np.float32)


# -- the track ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """Signatures of one video's frames, sampled every 1/fps seconds, in time order."""

    frames: np.ndarray  # (N,) int32 frame numbers
    times: np.ndarray  # (N,) float64 exact presentation times
    thumbnails: np.ndarray  # (N, FINE_GRID[1], FINE_GRID[0]) uint8 luma

    def __len__(self) -> int:
        return len(self.frames)

    @cached_property
    def signatures(self) -> np.ndarray:
        """(N, GRID[1], GRID[0]) float32: the coarse grid the moment is found on."""
        return coarse(self.thumbnails)

    def to_bytes(self) -> bytes:
        """An .npz archive, as `np.load` reads it, compressed with LZMA: on the eval corpus 14%
        smaller than `np.savez_compressed`'s deflate, which keeps the tracks within a tenth of
        the index."""
        buffer = io.BytesIO()
        # Successive thumbnails differ little, so deltas along time compress far better.
        deltas = np.diff(self.thumbnails, axis=0, prepend=np.zeros_like(self.thumbnails[:1]))
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_LZMA) as archive:
            for name, values in (("frames", self.frames), ("times", self.times),
                                 ("deltas", deltas)):
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(values))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Track:
        with np.load(io.BytesIO(data)) as arrays:
            thumbnails = np.cumsum(arrays["deltas"], axis=0, dtype=np.uint8)
            if thumbnails.shape[1:] == (GRID[1], GRID[0]):
                # Written before tracks held fine thumbnails: each cell stands for its FINE².
                thumbnails = thumbnails.repeat(FINE, axis=1).repeat(FINE, axis=2)
            return cls(arrays["frames"], arrays["times"], thumbnails)

    def within(self, spans: Iterable[tuple[float, float]]) -> np.ndarray:
        """Rows whose time lies in any of the spans."""
        keep = np.zeros(len(self), dtype=bool)
        for start, end in spans:
            keep |= (self.times >= start) & (self.times < end)
        return np.flatnonzero(keep)


def _track_of(frames: list[int], times: list[float], thumbnails: list[np.ndarray]) -> Track:
    shape = (0, FINE_GRID[1], FINE_GRID[0])
    return Track(np.asarray(frames, dtype=np.int32), np.asarray(times, dtype=np.float64),
                 np.stack(thumbnails) if thumbnails else np.zeros(shape, dtype=np.uint8))


class TrackBuilder:
    """Passes frames through unchanged while keeping one signature every 1/fps seconds, so the
    track is built during the decode that indexing does anyway."""

    def __init__(self, fps: float = TRACK_FPS) -> None:
        self.step = 1.0 / fps
        self._frames: list[int] = []
        self._times: list[float] = []
        self._thumbnails: list[np.ndarray] = []

    def observe(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        next_time: float | None = None
        for frame in frames:
            # On a fixed time grid, so 25 fps still gives 8 entries a second, not 6.25; a jump in
            # time restarts the grid rather than sampling every frame to catch up.
            if next_time is None:
                next_time = frame.time
            if frame.time >= next_time - 1e-3:
                next_time = max(next_time + self.step, frame.time + self.step / 2)
                self._frames.append(frame.number)
                self._times.append(frame.time)
                self._thumbnails.append(frame_thumbnail(frame))
            yield frame

    def track(self) -> Track:
        return _track_of(self._frames, self._times, self._thumbnails)


def build_track(path: Path) -> Track:
    """A whole video's track, decoded for it alone: for videos indexed before tracks existed."""
    builder = TrackBuilder()
    for _ in builder.observe(iter_frames(path)):
        pass
    return builder.track()


class TrackStore:
    """Tracks by video path in their own SQLite file beside the index, so any vector store can
    sit next to them. A track whose content id differs from the video's is stale and ignored."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / TRACKS_FILE
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tracks (path TEXT PRIMARY KEY,"
                " content_id TEXT NOT NULL, data BLOB NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a frameseek track file ({exc})") from exc
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], Track] = OrderedDict()

    def put(self, path: str, content_id: str, track: Track) -> None:
        with self._lock, self._db:
            self._forget(path)
            self._db.execute("INSERT OR REPLACE INTO tracks(path, content_id, data) VALUES (?,?,?)",
                             (path, content_id, track.to_bytes()))

    def get(self, path: str, content_id: str) -> Track | None:
        key = (path, content_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            row = self._db.execute("SELECT data FROM tracks WHERE path = ? AND content_id = ?",
                                   key).fetchone()
            if row is None:
                return None
            track = Track.from_bytes(row[0])
            self._cache[key] = track
            if len(self._cache) > CACHED_TRACKS:
                self._cache.popitem(last=False)
            return track

    def remove(self, path: str) -> None:
        with self._lock, self._db:
            self._forget(path)
            self._db.execute("DELETE FROM tracks WHERE path = ?", (path,))

    def _forget(self, path: str) -> None:
        for key in [key for key in self._cache if key[0] == path]:
            del self._cache[key]

    def close(self) -> None:
        self._db.close()


def decode_track(path: Path, spans: list[tuple[float, float]]) -> Track:
    """Signatures of every frame in the spans, decoding only from the stream key frame before each
    span to its end: the fallback for videos indexed without a track."""
    frames: list[int] = []
    times: list[float] = []
    thumbnails: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = stream.time_base
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            for start, end in _merged(spans):
                # Times are pts × time base, as indexing reports them.
                container.seek(int(max(start, 0.0) / base), stream=stream, backward=True)
                for decoded in container.decode(stream):
                    if decoded.pts is None:
                        continue
                    stamp = Timestamp(decoded.pts, base)
                    if stamp.seconds >= end:
                        break
                    if stamp.seconds >= start:
                        frame = Frame(round(stamp.seconds * rate), stamp, decoded)
                        frames.append(frame.number)
                        times.append(frame.time)
                        thumbnails.append(frame_thumbnail(frame))
    except (OSError, av.error.FFmpegError, IndexError) as exc:
        raise VideoError(str(exc).splitlines()[0][:120]) from exc
    return _track_of(frames, times, thumbnails)


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# -- the query ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the query lies in the frame, as fractions of the frame's width and height."""

    x: float
    y: float
    width: float
    height: float
    score: float  # normalised correlation with the reference key frame, -1..1


FULL_FRAME = Placement(0.0, 0.0, 1.0, 1.0, 0.0)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float grey image → another size, area-averaged when shrinking (PIL's box filter)."""
    pil = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((max(1, width), max(1, height)), Image.Resampling.BOX))


def _normalised(values: np.ndarray) -> np.ndarray | None:
    centred = values - values.mean()
    norm = float(np.sqrt((centred**2).sum()))
    return centred / norm if norm > 1e-6 else None


class _Sliding:
    """Normalised cross-correlation of templates at every position inside one image. The image's
    spectrum and integral images are computed once and shared by every template tried."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.spectrum = np.fft.rfft2(image)
        self.integral = self._integral(image)
        self.integral_squares = self._integral(image**2)

    @staticmethod
    def _integral(image: np.ndarray) -> np.ndarray:
        return np.pad(image, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)

    @staticmethod
    def _window_sums(integral: np.ndarray, height: int, width: int) -> np.ndarray:
        return (integral[height:, width:] - integral[:-height, width:]
                - integral[height:, :-width] + integral[:-height, :-width])

    def best(self, template: np.ndarray) -> tuple[int, int, float] | None:
        """(row, col, score) of the template's best position, None where it does not fit."""
        height, width = template.shape
        if height > self.image.shape[0] or width > self.image.shape[1] or min(height, width) < 2:
            return None
        kernel = _normalised(template)
        if kernel is None:
            return None
        # Circular correlation equals the linear one at the valid positions kept here.
        products = np.fft.irfft2(self.spectrum * np.fft.rfft2(kernel[::-1, ::-1],
                                                              self.image.shape),
                                 self.image.shape)[height - 1:, width - 1:]
        sums = self._window_sums(self.integral, height, width)
        energy = (self._window_sums(self.integral_squares, height, width)
                  - sums**2 / (height * width))
        scores = products / np.sqrt(np.maximum(energy, 1e-6))
        row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
        return int(row), int(col), float(scores[row, col])


def candidate_placements(query: np.ndarray, reference: np.ndarray) -> list[Placement]:
    """Where the grey `query` may lie in the grey `reference` frame: the whole frame; for each
    scale in SCALES, the best position of the query shrunk to that share of the frame's width
    (a crop); and of the frame shrunk to that share of the query's width (a screenshot or a photo
    of a screen, the frame inside a larger picture). Aspect ratios are kept. The track decides
    between them: the reference is a key frame, not the query's own frame."""
    ref_height = max(1, round(PLACEMENT_WIDTH * reference.shape[0] / reference.shape[1]))
    ref = _resize(reference, PLACEMENT_WIDTH, ref_height).astype(np.float64)
    query_height = max(1, round(PLACEMENT_WIDTH * query.shape[0] / query.shape[1]))
    small_query = _resize(query, PLACEMENT_WIDTH, query_height).astype(np.float64)
    found = [FULL_FRAME]
    in_reference, in_query = _Sliding(ref), _Sliding(small_query)
    for scale in SCALES:
        width = round(scale * PLACEMENT_WIDTH)
        crop = in_reference.best(_resize(small_query, width,
                                         round(width * query_height / PLACEMENT_WIDTH)))
        if crop is not None:
            row, col, score = crop
            found.append(Placement(col / PLACEMENT_WIDTH, row / ref_height,
                                   width / PLACEMENT_WIDTH,
                                   width * query_height / PLACEMENT_WIDTH / ref_height, score))
        inset = in_query.best(_resize(ref, width, round(width * ref_height / PLACEMENT_WIDTH)))
        if inset is not None:
            row, col, score = inset
            frame_height = width * ref_height / PLACEMENT_WIDTH
            found.append(Placement(-col / width, -row / frame_height, PLACEMENT_WIDTH / width,
                                   query_height / frame_height, score))
    return found


def query_signature(query: np.ndarray, placement: Placement, detail: int = 8
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The grey query drawn onto the track grid at `placement` (clipped to the frame): the cell
    values, and which cells it covers entirely."""
    covered = covered_cells(placement, detail)
    width, height = GRID[0] * detail, GRID[1] * detail
    drawn = _resize(query, round(placement.width * width), round(placement.height * height))
    x0, y0 = round(placement.x * width), round(placement.y * height)
    canvas = np.zeros((height, width), dtype=np.float32)
    left, top = max(0, x0), max(0, y0)
    right, bottom = min(width, x0 + drawn.shape[1]), min(height, y0 + drawn.shape[0])
    if right > left and bottom > top:
        canvas[top:bottom, left:right] = drawn[top - y0:bottom - y0, left - x0:right - x0]
    cells = canvas.reshape(GRID[1], detail, GRID[0], detail).mean(axis=(1, 3))
    return cells, covered


def covered_cells(placement: Placement, detail: int = 8) -> np.ndarray:
    """The grid cells that the query at `placement` covers entirely, as `query_signature` draws
    it, from the geometry alone: no drawing, so placements covering too few cells to be used
    cost nothing more."""
    width, height = GRID[0] * detail, GRID[1] * detail
    drawn_width = max(1, round(placement.width * width))
    drawn_height = max(1, round(placement.height * height))
    x0, y0 = round(placement.x * width), round(placement.y * height)
    # Covered: the cell's pixel span lies inside the drawn span on both axes.
    starts_x, starts_y = np.arange(GRID[0]) * detail, np.arange(GRID[1]) * detail
    across = (starts_x >= x0) & (starts_x + detail <= x0 + drawn_width)
    down = (starts_y >= y0) & (starts_y + detail <= y0 + drawn_height)
    return down[:, None] & across[None, :]


def correlations(signatures: np.ndarray, cells: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Normalised correlation of each track signature (N, H, W) with each of P query signatures
    (P, H, W), over the cells each one covers (P, H, W bool): an (N, P) array. Three matrix
    products serve every placement at once."""
    values = signatures.reshape(len(signatures), -1).astype(np.float32)
    masks = covered.reshape(len(covered), -1).astype(np.float32)
    queries = cells.reshape(len(cells), -1).astype(np.float32) * masks
    counts = np.maximum(masks.sum(axis=1), 1.0)
    queries -= masks * (queries.sum(axis=1) / counts)[:, None]
    queries /= np.maximum(np.sqrt((queries**2).sum(axis=1)), 1e-6)[:, None]
    # einsum rather than BLAS: for matrices this small, BLAS threads cost more than the work.
    sums = np.einsum("nc,pc->np", values, masks)
    energy = np.maximum(np.einsum("nc,pc->np", values**2, masks) - sums**2 / counts, 1e-6)
    return np.einsum("nc,pc->np", values, queries) / np.sqrt(energy)


def _fisher(correlation: np.ndarray | float) -> np.ndarray:
    return np.arctanh(np.clip(correlation, -0.999999, 0.999999))


def evidence(correlation: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Correlations over different numbers of cells made comparable: Fisher's z times sqrt(n-3),
    so a small crop hypothesis that correlates a little better by chance does not beat the
    whole frame. `cells` broadcasts against `correlation` (one count per placement)."""
    return _fisher(correlation) * np.sqrt(np.maximum(cells - 3, 1))


def _widened(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(start - MARGIN_S, end + MARGIN_S) for start, end in spans]


def _best_entry(track: Track, rows: np.ndarray, cells: np.ndarray, covered: np.ndarray
                ) -> tuple[int | None, float]:
    """The track row most like the query over every placement's signature, and its correlation.
    Placements are compared by `evidence`, which weighs how many cells each one covers."""
    if not len(rows) or not len(cells):
        return None, -1.0
    found = correlations(track.signatures[rows], cells, covered)
    scores = evidence(found, covered.reshape(len(covered), -1).sum(axis=1))
    best, placement = np.unravel_index(int(np.argmax(scores)), scores.shape)
    # A still shot leaves a run of entries as alike as the best (the remainder 1 - r within
    # TIE_RATIO of the best's): answer the middle of the run, not whichever edge noise favours.
    residual = 1.0 - found[:, placement]
    alike = residual <= TIE_RATIO * residual[best] + 1e-6
    first = last = best
    while first > 0 and alike[first - 1] and rows[first - 1] == rows[first] - 1:
        first -= 1
    while last < len(rows) - 1 and alike[last + 1] and rows[last + 1] == rows[last] + 1:
        last += 1
    middle = (first + last) // 2
    return int(rows[middle]), float(found[middle, placement])


# -- refinement ------------------------------------------------------------------------------


def segment_of(time: float, segments: list[tuple[float, float]]) -> tuple[float, float]:
    """The span containing `time`, else the nearest one stretched to reach it."""
    if not segments:
        return (time, time)
    for start, end in segments:
        if start <= time < end:
            return (start, end)
    start, end = min(segments, key=lambda s: min(abs(s[0] - time), abs(s[1] - time)))
    return (min(start, time), max(end, time))


def _holding(matches: Sequence[Match], time: float) -> Match | None:
    """The first of `matches` whose key frame's segments hold `time`."""
    return next((m for m in matches if any(a <= time < b for a, b in m.segments)), None)


def unchanged(track: Track, row: int, covered: np.ndarray) -> np.ndarray:
    """Which of the track's frames show the frame at `row` unchanged (UNCHANGED_LEVELS) over the
    GRID cells `covered`: a boolean per row."""
    mask = covered.repeat(FINE, axis=0).repeat(FINE, axis=1).reshape(-1)
    thumbnails = track.thumbnails.reshape(len(track), -1)
    reference = thumbnails[row]
    # |a - b| in uint8 and an integer sum: a third of the time of float32 on a film's track.
    differences = np.maximum(thumbnails, reference) - np.minimum(thumbnails, reference)
    return differences[:, mask].sum(axis=1, dtype=np.uint32) <= UNCHANGED_LEVELS * mask.sum()


def _unchanged_appearances(track: Track, cells: np.ndarray, covered: np.ndarray,
                           found: list[Moment], matches: list[Match]) -> list[Moment]:
    """The stretches of the track that show the best of `found` unchanged (`unchanged`, over the
    cells the query covers at the placement that fits its frame best), a moment each.

    A stretch holding moments of `found` is shown by the most similar of them; one holding none
    by its middle frame, whichever key frame's segment holds it: k-means may have put it in a
    cluster whose key frame does not show the picture, so no CNN similarity would bring it. A
    moment of `found` whose frame is not unchanged is dropped: its key frame is the same scene
    but not the picture. Each stretch runs from its first unchanged frame to the next frame of
    the track, so its length is how long the picture stays on screen."""
    found_rows = [int(np.argmin(np.abs(track.times - m.time))) for m in found]
    anchor = found_rows[max(range(len(found)), key=lambda i: found[i].similarity)]
    at_anchor = correlations(track.signatures[anchor:anchor + 1], cells, covered)[0]
    placement = int(np.argmax(evidence(at_anchor, covered.reshape(len(covered), -1).sum(axis=1))))
    rows = np.flatnonzero(unchanged(track, anchor, covered[placement]))
    weakest = min(m.similarity for m in found)
    moments = []
    for run in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1):
        start = float(track.times[run[0]])
        end = float(track.times[min(run[-1] + 1, len(track) - 1)])
        inside = [m for m, row in zip(found, found_rows, strict=True) if run[0] <= row <= run[-1]]
        if inside:
            shown = max(inside, key=lambda m: m.similarity)
        else:
            row = int(run[len(run) // 2])
            holder = _holding(matches, float(track.times[row]))
            shown = Moment(float(track.times[row]), int(track.frames[row]),
                           weakest if holder is None else similarity(holder.distance),
                           start, end, (holder or matches[0]).keyframe_id)
        moments.append(replace(shown, start=start, end=end))
    return moments


def _one_per_appearance(moments: list[Moment]) -> list[Moment]:
    """Moments whose stretches touch (within APPEARANCE_GAP_S) merged into one, the stretch
    their union and the moment the most similar one's; in time order."""
    merged: list[Moment] = []
    for moment in sorted(moments, key=lambda m: m.start):
        if merged and moment.start <= merged[-1].end + APPEARANCE_GAP_S:
            last = merged[-1]
            best = last if last.similarity >= moment.similarity else moment
            merged[-1] = replace(best, start=last.start, end=max(last.end, moment.end))
        else:
            merged.append(moment)
    return merged


class Localizer:
    """Refines matches to the moment; one per open index, safe to share between threads."""

    def __init__(self, store: Store, tracks: Tracks | None) -> None:
        self.store = store
        self.tracks = tracks

    def refine(self, query: GreyQuery, matches: list[Match], videos: int = 3) -> list[Match]:
        """`matches` with the first match of each of the first `videos` distinct videos moved to
        its refined moment; every other match keeps its key frame's time.

        The moment is sought in the segments of all of that video's matches in the list, not
        only the first: the best key frame by CNN distance is now and then from another shot."""
        refined = list(matches)
        order = list(dict.fromkeys(m.video for m in matches))[:videos]
        for video in order:
            siblings = [m for m in matches if m.video == video]
            position = matches.index(siblings[0])
            refined[position] = self.refine_one(query, siblings)
        return refined

    def refine_one(self, query: GreyQuery, siblings: list[Match]) -> Match:
        """The first of one video's matches moved to its moment, reporting the key frame whose
        segment holds that moment.

        The first match's own segments are searched first; the other matches' segments win only
        with a clearly better likeness (SIBLING_MARGIN), since each one searched is one more
        chance of a look-alike moment elsewhere in the video."""
        first = siblings[0]
        own = _widened(first.segments)
        others = _widened([span for m in siblings[1:] for span in m.segments])
        track = self._track(first, own + others)
        if track is None:
            return first
        cells, covered = self._signatures(query, first)
        row, correlation = _best_entry(track, track.within(own), cells, covered)
        if len(others):
            other_row, other_correlation = _best_entry(track, track.within(others), cells,
                                                       covered)
            if _fisher(other_correlation) > _fisher(correlation) + SIBLING_MARGIN:
                row, correlation = other_row, other_correlation
        if row is None or correlation < MIN_CORRELATION:
            return first  # no frame looks like the query: the key frame's time is the safer answer
        time = float(track.times[row])
        holder = _holding(siblings, time) or first
        # The evidence for the match (distance, inliers, the region found in) stays the first's.
        return replace(holder, distance=first.distance, inliers=first.inliers,
                       region=first.region, time=time, frame=int(track.frames[row]),
                       segment=segment_of(time, holder.segments), refined=True)

    def appearances(self, query: GreyQuery, matches: list[Match]) -> VideoResult:
        """Every distinct moment of one video that shows the query. `matches` are that video's
        key frames that match the query, best first.

        Each segment of each key frame is one candidate stretch: its best track entry is the
        moment, and a stretch where no frame correlates with the query (MIN_CORRELATION) is
        none, since a key frame stands for every frame of its k-means cluster, not all of which
        show the picture. Without a track the key frame's own segment keeps its own time (the
        key frame itself matched). With a track, only the moments that show the best one's
        frame unchanged are kept, and the rest of the track gives the picture's other
        appearances (`_unchanged_appearances`). Stretches that touch or lie within
        APPEARANCE_GAP_S of each other are one appearance, shown by its most similar moment."""
        first = matches[0]
        track = self._track(first, _widened([span for m in matches for span in m.segments]))
        cells, covered = self._signatures(query, first) if track is not None else (None, None)
        found: list[Moment] = []
        for match in matches:
            score = similarity(match.distance)
            for start, end in match.segments:
                row, correlation = (None, -1.0) if track is None else _best_entry(
                    track, track.within(_widened([(start, end)])), cells, covered)
                if row is not None and correlation >= MIN_CORRELATION:
                    time, frame = float(track.times[row]), int(track.frames[row])
                elif track is None and start <= match.keyframe_time <= end:
                    time, frame = match.keyframe_time, match.keyframe_frame
                else:
                    continue
                found.append(Moment(time, frame, score, min(start, time), max(end, time),
                                    match.keyframe_id))
        if track is not None and found:
            found = _unchanged_appearances(track, cells, covered, found, matches)
        moments = _one_per_appearance(found)
        best = max((m.similarity for m in moments), default=similarity(first.distance))
        return VideoResult(first.video, best, moments)

    def _signatures(self, query: GreyQuery, match: Match) -> tuple[np.ndarray, np.ndarray]:
        """The query drawn onto the track grid at each placement found over `match`'s
        thumbnail: the cells' values and which cells it covers, one row per placement."""
        def draw() -> tuple[np.ndarray, np.ndarray]:
            drawn = [query_signature(query.pixels, placement)
                     for placement in self._placements(query.pixels, match)
                     if covered_cells(placement).sum() >= MIN_CELLS]
            cells = np.array([c for c, _ in drawn]).reshape(-1, GRID[1], GRID[0])
            covered = np.array([m for _, m in drawn], dtype=bool).reshape(-1, GRID[1], GRID[0])
            return cells, covered

        return query.signatures(match.keyframe_id, draw)

    def _placements(self, query: np.ndarray, match: Match) -> list[Placement]:
        thumbnail = self.store.thumbnail(match.keyframe_id)
        if not thumbnail:
            return [FULL_FRAME]
        try:
            image = Image.open(io.BytesIO(thumbnail))
            # JPEG decodes straight to grey at a reduced scale: a fraction of a full decode.
            image.draft("L", (PLACEMENT_WIDTH, PLACEMENT_WIDTH))
            thumbnail_grey = np.asarray(image.convert("L"), dtype=np.float32)
        except OSError:  # a damaged thumbnail: the query is placed as the whole frame
            return [FULL_FRAME]
        return candidate_placements(query, thumbnail_grey)

    def _track(self, match: Match, window: list[tuple[float, float]]) -> Track | None:
        record = self.store.find_video(match.video)
        if record is None:
            return None
        if self.tracks is not None:
            track = self.tracks.get(record.path, record.content_id)
            if track is not None:
                return track
        try:
            return decode_track(Path(record.path), window)
        except VideoError:
            return None  # the video moved or was deleted since indexing: keep the key frame time


# -- evaluation -----------------------------------------------------------------------------

TOLERANCES_S = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class LocalisationSample:
    """One query's top result, before and after refinement."""

    correct: bool  # the top result is from the query's video
    true_time: float
    keyframe_time: float  # the top result's time without refinement
    refined_time: float
    refine_seconds: float  # what refinement added to the query


def localisation_metrics(samples: list[LocalisationSample]) -> dict[str, dict]:
    """Per mode ("key frame", "refined"): the share of queries whose top result is the right video
    within each of TOLERANCES_S of the true time (a wrong video counts as a miss), the median
    error over right-video results, and the added latency (zero for "key frame")."""
    correct = [s for s in samples if s.correct]
    added_ms = np.array([s.refine_seconds for s in samples]) * 1000
    table = {}
    for mode, moment in (("key frame", "keyframe_time"), ("refined", "refined_time")):
        errors = np.array([abs(getattr(s, moment) - s.true_time) for s in correct])
        row: dict[str, float | int | None] = {
            "queries": len(samples),
            "correct_video": len(correct) / len(samples) if samples else 0.0,
        }
        for tolerance in TOLERANCES_S:
            row[f"within_{tolerance:g}s"] = (
                float(np.count_nonzero(errors <= tolerance + 1e-6)) / len(samples)
                if samples else 0.0)
        row["median_error_s"] = float(np.median(errors)) if len(errors) else None
        refined = mode == "refined" and len(samples)
        row["added_ms_median"] = float(np.median(added_ms)) if refined else 0.0
        row["added_ms_p95"] = float(np.percentile(added_ms, 95)) if refined else 0.0
        table[mode] = row
    return table
