"""Seeded query sets: frames taken at random times, saved plain and with one real-world damage.

Random times land on key frames only by chance (about 1 frame in 24-50 is sampled, and only some
samples become key frames), so a query tests whether the index generalises across a shot rather
than whether it remembers its own frames.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from frameseek.video import iter_frames, probe

QUERIES_FILE = "queries.json"
SETS = ("plain", "perturbed")
PLAIN_QUALITY = 90
EDGE_MARGIN_S = 0.25  # keep clear of the very first and last frames, often black or partial


@dataclass(frozen=True)
class Query:
    id: str
    set: str
    file: str  # relative to the query directory
    video: str  # path as the corpus lists it
    time: float
    frame: int
    perturbation: dict  # {"kind": ..., parameters}; {"kind": "none"} for plain


def make_queries(videos: Sequence[Path], out_dir: Path, per_video: int, seed: int
                 ) -> list[Query]:
    """Write both query sets under `out_dir` with a queries.json; reuse them if already there
    for the same videos, count and seed."""
    settings = {"seed": seed, "per_video": per_video, "videos": [str(v) for v in videos]}
    listing = out_dir / QUERIES_FILE
    if listing.exists():
        stored = json.loads(listing.read_text())
        if stored["settings"] == settings:
            return [Query(**q) for q in stored["queries"]]
    queries: list[Query] = []
    for video in videos:
        queries.extend(_video_queries(Path(video), out_dir, per_video, seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps({"settings": settings,
                                   "queries": [asdict(q) for q in queries]}, indent=1))
    return queries


def _video_queries(video: Path, out_dir: Path, per_video: int, seed: int) -> list[Query]:
    # Seeded by name as well, so adding a video to the corpus leaves the others' queries alone.
    rng = np.random.default_rng([seed, zlib.crc32(video.name.encode())])
    duration = probe(video).duration
    low, high = EDGE_MARGIN_S, max(EDGE_MARGIN_S, duration - EDGE_MARGIN_S)
    wanted = sorted(rng.uniform(low, high, per_video))
    frames = _frames_at(video, wanted)
    first_kind = int(rng.integers(len(PERTURBATIONS)))
    queries = []
    for i, (number, time, rgb) in enumerate(frames):
        stem = f"{video.stem}_{i:02d}"
        for set_name in SETS:
            (out_dir / set_name).mkdir(parents=True, exist_ok=True)
            file = f"{set_name}/{stem}.jpg"
            if set_name == "plain":
                data, perturbation = _jpeg(Image.fromarray(rgb), PLAIN_QUALITY), {"kind": "none"}
            else:
                kind = list(PERTURBATIONS)[(first_kind + i) % len(PERTURBATIONS)]
                data, perturbation = PERTURBATIONS[kind](Image.fromarray(rgb), rng)
                perturbation = {"kind": kind, **perturbation}
            (out_dir / file).write_bytes(data)
            queries.append(Query(f"{set_name}/{stem}", set_name, file, str(video), round(time, 4),
                                 number, perturbation))
    return queries


def _frames_at(video: Path, times: Sequence[float]) -> list[tuple[int, float, np.ndarray]]:
    """For each wanted time, the first frame shown at or after it (number, exact time, RGB)."""
    found: list[tuple[int, float, np.ndarray]] = []
    pending = list(times)
    last = None
    for frame in iter_frames(video):
        while pending and frame.time >= pending[0]:
            pending.pop(0)
            found.append((frame.number, frame.time, frame.rgb()))
        if not pending:
            break
        last = frame
    if pending and last is not None:  # a duration longer than the frames: take the last one
        found.extend((last.number, last.time, last.rgb()) for _ in pending)
    return found


# -- perturbations: each takes the frame and the generator, returns JPEG bytes and parameters ---


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _crop(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    area = float(rng.uniform(0.5, 0.8))
    aspect = float(rng.uniform(0.8, 1.25))  # mild change of shape, both sides stay in frame
    width = min(1.0, np.sqrt(area * aspect))
    height = min(1.0, area / width)
    w, h = round(image.width * width), round(image.height * height)
    x = int(rng.integers(0, image.width - w + 1))
    y = int(rng.integers(0, image.height - h + 1))
    return _jpeg(image.crop((x, y, x + w, y + h)), PLAIN_QUALITY), {
        "area": round(width * height, 3), "box": [x, y, w, h]}


def _downscale(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    scale = float(rng.uniform(0.3, 0.5))
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    return _jpeg(image.resize(size, Image.Resampling.BILINEAR), PLAIN_QUALITY), {
        "scale": round(scale, 3)}


def _low_quality(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    quality = int(rng.integers(20, 41))
    return _jpeg(image, quality), {"quality": quality}


def _brightness_contrast(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    brightness, contrast = (float(v) for v in rng.uniform(0.7, 1.3, 2))
    image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness))
    return _jpeg(image.enhance(contrast), PLAIN_QUALITY), {
        "brightness": round(brightness, 3), "contrast": round(contrast, 3)}


def _screenshot(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    """The frame inside a web page: title bar, side text, borders, a light background."""
    share = float(rng.uniform(0.45, 0.7))  # the frame's share of the page width
    width = round(image.width / share)
    height = round(width * 0.62)
    height = max(height, image.height + 80)
    dark = bool(rng.integers(2))
    page = Image.new("RGB", (width, height), (32, 33, 36) if dark else (245, 245, 245))
    draw = ImageDraw.Draw(page)
    ink = (220, 220, 220) if dark else (40, 40, 40)
    draw.rectangle((0, 0, width, 36), fill=(60, 64, 67) if dark else (222, 225, 230))
    draw.text((12, 12), "https://video.example.org/watch?v=frameseek", fill=ink)
    x = int(rng.integers(8, max(9, width - image.width - 8)))
    y = int(rng.integers(44, max(45, height - image.height - 30)))
    draw.rectangle((x - 3, y - 3, x + image.width + 2, y + image.height + 2), fill=(0, 0, 0))
    page.paste(image, (x, y))
    draw.text((x, y + image.height + 8), "Watch the full video - 1,234,567 views", fill=ink)
    for line in range(6):
        tx = x + image.width + 16 if x + image.width + 120 < width else 8
        draw.text((tx, 60 + 18 * line), f"Up next: related clip {line + 1}", fill=ink)
    return _jpeg(page, PLAIN_QUALITY), {"frame_share": round(share, 3), "dark": dark}


def _phone_photo(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    """A photo of a screen: the frame with a bezel, seen slightly askew, a little soft."""
    pad = round(0.08 * image.width)
    screen = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), (12, 12, 14))
    screen.paste(image, (pad, pad))
    angle = float(rng.uniform(-6, 6))
    screen = screen.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False,
                           fillcolor=(70, 60, 50))
    w, h = screen.size
    jitter = rng.uniform(-0.05, 0.05, 8) * np.array([w, h] * 4)
    corners = np.array([0, 0, w, 0, w, h, 0, h], dtype=float) + jitter
    coefficients = _perspective_coefficients(corners, [0, 0, w, 0, w, h, 0, h])
    photo = screen.transform((w, h), Image.Transform.PERSPECTIVE, coefficients,
                             Image.Resampling.BILINEAR, fillcolor=(70, 60, 50))
    photo = ImageEnhance.Brightness(photo.filter(ImageFilter.GaussianBlur(0.8))).enhance(
        float(rng.uniform(0.85, 1.1)))
    return _jpeg(photo, 85), {"angle": round(angle, 2),
                              "corner_jitter": [round(float(j), 1) for j in jitter]}


def _perspective_coefficients(source: Sequence[float], target: Sequence[float]) -> list[float]:
    """PIL's 8 perspective coefficients mapping output corners `target` to input `source`."""
    rows = []
    for (x, y), (u, v) in zip(np.reshape(target, (4, 2)), np.reshape(source, (4, 2)),
                              strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows), np.asarray(source, dtype=float)).tolist()


def _occlusion(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, dict]:
    """A logo box in a corner or a caption bar, covering 10-20% of the frame."""
    cover = float(rng.uniform(0.10, 0.20))
    image = image.copy()
    draw = ImageDraw.Draw(image)
    if rng.integers(2):
        bar = round(image.height * cover)
        draw.rectangle((0, image.height - bar, image.width, image.height), fill=(0, 0, 0))
        draw.text((10, image.height - bar + 4), "BREAKING: caption text over the frame",
                  fill=(255, 255, 0))
        kind = "caption"
    else:
        side = np.sqrt(cover * image.width * image.height)
        w, h = round(side * 1.4), round(side / 1.4)
        x = int(rng.choice([6, image.width - w - 6]))
        y = int(rng.choice([6, image.height - h - 6]))
        draw.rounded_rectangle((x, y, x + w, y + h), radius=8, fill=(200, 20, 40))
        draw.text((x + 8, y + h // 2 - 6), "LOGO TV", fill=(255, 255, 255))
        kind = "logo"
    return _jpeg(image, PLAIN_QUALITY), {"cover": round(cover, 3), "style": kind}


PERTURBATIONS: dict[str, Callable[[Image.Image, np.random.Generator], tuple[bytes, dict]]] = {
    "crop": _crop,
    "downscale": _downscale,
    "jpeg": _low_quality,
    "brightness_contrast": _brightness_contrast,
    "screenshot": _screenshot,
    "phone_photo": _phone_photo,
    "occlusion": _occlusion,
}
