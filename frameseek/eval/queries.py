"""Seeded query sets: frames taken at random times, saved plain, with one real-world damage,
and (the hard set) with `HARD_PER_FRAME` of the damages that brand monitoring, newsrooms and
social reposts produce: the frame as an inset of another picture, a small compressed thumbnail,
a vertical window, a tight crop, a tilted phone photo with moiré and glare, grey and high
contrast, a text block, a stretch, and mixtures of these.

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
SETS = ("plain", "perturbed", "hard")
HARD_PER_FRAME = 2  # hard queries per sampled frame, of different families
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
    # A generator of its own, so that the plain and perturbed sets are those made before the
    # hard set existed.
    hard_rng = np.random.default_rng([seed, zlib.crc32(video.name.encode()), 1])
    first_family = int(hard_rng.integers(len(HARD_FAMILIES)))
    queries = []

    def save(set_name: str, stem: str, data: bytes, perturbation: dict, number: int,
             time: float) -> None:
        (out_dir / set_name).mkdir(parents=True, exist_ok=True)
        file = f"{set_name}/{stem}.jpg"
        (out_dir / file).write_bytes(data)
        queries.append(Query(f"{set_name}/{stem}", set_name, file, str(video), round(time, 4),
                             number, perturbation))

    for i, (number, time, rgb) in enumerate(frames):
        stem = f"{video.stem}_{i:02d}"
        save("plain", stem, _jpeg(Image.fromarray(rgb), PLAIN_QUALITY), {"kind": "none"},
             number, time)
        kind = list(PERTURBATIONS)[(first_kind + i) % len(PERTURBATIONS)]
        data, perturbation = PERTURBATIONS[kind](Image.fromarray(rgb), rng)
        save("perturbed", stem, data, {"kind": kind, **perturbation}, number, time)
        for j in range(HARD_PER_FRAME):
            family = list(HARD_FAMILIES)[(first_family + HARD_PER_FRAME * i + j)
                                         % len(HARD_FAMILIES)]
            data, perturbation = hard_query(Image.fromarray(rgb), family, hard_rng)
            save("hard", f"{stem}_{j}", data, perturbation, number, time)
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


# -- hard families: each takes a frame and the generator, returns the damaged picture and its
# parameters; the query is the picture as JPEG (at the quality a family names, else 90) --------

Damage = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, dict]]


def hard_query(image: Image.Image, family: str, rng: np.random.Generator) -> tuple[bytes, dict]:
    """One hard query of `family` made from `image`: JPEG bytes and {"kind": family, ...}."""
    picture, parameters = HARD_FAMILIES[family](image, rng)
    quality = int(parameters.pop("quality", PLAIN_QUALITY))
    return _jpeg(picture.convert("RGB"), quality), {"kind": family, **parameters,
                                                     "quality": quality}


def _inset(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Picture-in-picture: the frame small, in a corner of a busy larger picture (a studio,
    a reaction video), which no border trimming removes."""
    share = float(rng.uniform(0.28, 0.45))  # the inset's share of the picture's width
    width = max(image.width, 640)
    height = round(width * 9 / 16)
    canvas = _busy_background(width, height, rng)
    w = round(width * share)
    h = max(8, round(w * image.height / image.width))
    margin = round(0.03 * width)
    x = int(rng.choice([margin, width - w - margin]))
    y = int(rng.choice([margin, height - h - margin]))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x - 2, y - 2, x + w + 1, y + h + 1), fill=(250, 250, 250))
    canvas.paste(image.resize((w, h), Image.Resampling.LANCZOS), (x, y))
    return canvas, {"share": round(share, 3), "box": [x, y, w, h]}


def _busy_background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A picture with structure everywhere: smooth colour fields, shapes and lines of text."""
    field = rng.uniform(30, 225, (4, 6, 3)).astype(np.uint8)
    canvas = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(6, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(width // 12, width // 3))
        y1 = y0 + int(rng.integers(height // 12, height // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(2):
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    for line in range(int(rng.integers(2, 5))):
        draw.text((int(rng.integers(0, width // 2)), int(rng.integers(0, height - 12))),
                  f"LIVE - studio segment {line + 1}", fill=(255, 255, 255))
    return canvas.filter(ImageFilter.GaussianBlur(1.0))


def _thumbnail(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A search result's or feed's thumbnail: 96-160 pixels wide, heavily compressed."""
    width = int(rng.integers(96, 161))
    height = max(8, round(width * image.height / image.width))
    return image.resize((width, height), Image.Resampling.BILINEAR), {
        "width": width, "quality": int(rng.integers(15, 36))}


def _vertical(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A phone-shaped repost: a 9:16 (or 3:4) window of the full height, at a random place."""
    aspect = float(rng.choice([9 / 16, 3 / 4]))
    w = min(image.width, round(image.height * aspect))
    x = int(rng.integers(0, image.width - w + 1))
    return image.crop((x, 0, x + w, image.height)), {"aspect": round(aspect, 3),
                                                    "box": [x, 0, w, image.height]}


def _tight_crop(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A small part of the frame (12-30% of its area), any shape near square."""
    area = float(rng.uniform(0.12, 0.30))
    aspect = float(rng.uniform(0.7, 1.4))
    width = min(1.0, np.sqrt(area * aspect))
    height = min(1.0, area / width)
    w, h = max(8, round(image.width * width)), max(8, round(image.height * height))
    x = int(rng.integers(0, image.width - w + 1))
    y = int(rng.integers(0, image.height - h + 1))
    return image.crop((x, y, x + w, y + h)), {"area": round(float(width * height), 3),
                                             "box": [x, y, w, h]}


def _phone_moire(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A photo of a screen held at an angle: bezel, tilt ±15°, perspective ±10% a corner,
    moiré fringes, a glare spot, blur, sensor noise."""
    pad = round(0.06 * image.width)
    screen = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), (10, 10, 12))
    screen.paste(image, (pad, pad))
    angle = float(rng.uniform(-15, 15))
    screen = screen.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True,
                           fillcolor=(80, 70, 60))
    w, h = screen.size
    jitter = rng.uniform(-0.10, 0.10, 8) * np.array([w, h] * 4)
    corners = np.array([0, 0, w, 0, w, h, 0, h], dtype=float) + jitter
    photo = screen.transform((w, h), Image.Transform.PERSPECTIVE,
                             _perspective_coefficients(corners, [0, 0, w, 0, w, h, 0, h]),
                             Image.Resampling.BILINEAR, fillcolor=(80, 70, 60))
    pixels = np.asarray(photo, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(3.0, 7.0))
    theta = float(rng.uniform(0, np.pi))
    strength = float(rng.uniform(0.08, 0.18))
    fringes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period
                     + 0.002 * (xx**2 + yy**2) / max(w, h))
    pixels *= 1 + strength * fringes[..., None]
    gx, gy = float(rng.uniform(0.2, 0.8)) * w, float(rng.uniform(0.2, 0.8)) * h
    radius = float(rng.uniform(0.12, 0.25)) * max(w, h)
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius**2))
    pixels += float(rng.uniform(80, 150)) * glare[..., None]
    pixels += rng.normal(0, 4, pixels.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.4))))
    return photo, {"angle": round(angle, 2), "moire_period": round(period, 2),
                   "moire_strength": round(strength, 3), "glare_radius": round(radius, 1),
                   "quality": int(rng.integers(70, 86))}


def _grey_contrast(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Black and white with the contrast pushed (×1.5-2.2, clipped), as a stylised repost."""
    contrast = float(rng.uniform(1.5, 2.2))
    grey = ImageEnhance.Contrast(image.convert("L")).enhance(contrast)
    return grey.convert("RGB"), {"contrast": round(contrast, 3)}


def _text_block(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A meme-style panel of text over 30-45% of the picture, at its top or bottom."""
    cover = float(rng.uniform(0.30, 0.45))
    image = image.copy()
    draw = ImageDraw.Draw(image)
    panel = round(image.height * cover)
    top = bool(rng.integers(2))
    y0 = 0 if top else image.height - panel
    fill = (255, 255, 255) if rng.integers(2) else (20, 20, 20)
    ink = (0, 0, 0) if fill[0] > 128 else (255, 255, 255)
    draw.rectangle((0, y0, image.width, y0 + panel), fill=fill)
    for line in range(max(1, panel // 18)):
        draw.text((10, y0 + 6 + 18 * line), "when the video is exactly what you needed " * 2,
                  fill=ink)
    return image, {"cover": round(cover, 3), "top": top}


def _stretch(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Resized to another aspect ratio: one side ×0.6-0.8 or ×1.25-1.6."""
    factor = float(rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.25, 1.6)]))
    size = (max(8, round(image.width * factor)), image.height)
    return image.resize(size, Image.Resampling.BILINEAR), {"factor": round(factor, 3)}


# A mixture takes one geometric change, then one or two of the appearance changes, then may
# shrink the result to a thumbnail: the order a repost goes through.
_GEOMETRY = ("inset", "vertical", "tight_crop", "stretch")
_APPEARANCE = ("grey_contrast", "text_block", "phone_moire")


def _mixture(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    steps = [str(rng.choice(_GEOMETRY))]
    steps += [str(k) for k in rng.choice(_APPEARANCE, int(rng.integers(1, 3)), replace=False)]
    if rng.integers(3) == 0:
        steps.append("thumbnail")
    parameters: dict = {"steps": steps}
    quality = PLAIN_QUALITY
    for step in steps:
        image, used = HARD_FAMILIES[step](image, rng)
        quality = min(quality, int(used.pop("quality", PLAIN_QUALITY)))
        parameters[step] = used
    return image, {**parameters, "quality": quality}


HARD_FAMILIES: dict[str, Damage] = {
    "inset": _inset,
    "thumbnail": _thumbnail,
    "vertical": _vertical,
    "tight_crop": _tight_crop,
    "phone_moire": _phone_moire,
    "grey_contrast": _grey_contrast,
    "text_block": _text_block,
    "stretch": _stretch,
    "mixture": _mixture,
}
