"""Query images: a path, bytes, a PIL image or an array → RGB uint8, or a one-line error."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # above this a "photo" is a decompression bomb or not worth decoding

ImageInput = str | Path | bytes | Image.Image | np.ndarray


class QueryError(ValueError):
    """The query is not an image frameseek can search with; the message says why, in one line."""


def load_image(source: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a query image to an (H, W, 3) uint8 RGB array, EXIF rotation applied."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except IsADirectoryError as exc:
            raise QueryError(f"{path}: is a directory, not an image") from exc
        except OSError as exc:
            raise QueryError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        return _decode(data, max_pixels, str(path))
    return _decode(source, max_pixels, "query")


def _decode(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    if not data:
        raise QueryError(f"{name}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise QueryError(
                    f"{name}: {image.width}×{image.height} pixels is over the limit of "
                    f"{max_pixels:,}"
                )
            image.load()
    except QueryError:
        raise
    except UnidentifiedImageError as exc:
        raise QueryError(f"{name}: not an image (no image format recognised)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fires inside Image.open, before our check sees the size.
        raise QueryError(f"{name}: too many pixels ({str(exc).splitlines()[0][:120]})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise QueryError(f"{name}: damaged image ({str(exc).splitlines()[0][:100]})") from exc
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as they look in a viewer or on a page.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits rather than clipping everything to white.
        levels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray((levels >> 8).astype(np.uint8))
    return _from_array(np.asarray(image.convert("RGB")))


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise QueryError(f"query array of shape {array.shape} is not an RGB image")
    if min(array.shape[:2]) < 1:
        raise QueryError("query image is empty")
    if array.dtype != np.uint8:
        raise QueryError(f"query array must be uint8 RGB, not {array.dtype}")
    return np.ascontiguousarray(array[..., :3])
