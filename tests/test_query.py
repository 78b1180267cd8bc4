"""Query images: every accepted form gives the same RGB pixels; anything else one clear error.

(Damaged, exotic and hostile images are covered in tests/robustness/test_bad_queries.py.)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.query import QueryError, load_image
from tests.conftest import SAMPLES

QUERY = SAMPLES / "query.jpg"


def test_every_form_of_the_same_image_decodes_alike() -> None:
    expected = np.asarray(Image.open(QUERY).convert("RGB"))
    assert expected.shape == (180, 320, 3)
    for form in (QUERY, str(QUERY), QUERY.read_bytes(), Image.open(QUERY), expected):
        pixels = load_image(form)
        assert pixels.dtype == np.uint8 and pixels.shape == expected.shape, type(form)
        np.testing.assert_array_equal(pixels, expected)


def test_grey_and_rgba_arrays_become_rgb() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = load_image(grey)
    assert rgb.shape == (3, 4, 3) and (rgb == grey[..., None]).all()
    rgba = np.dstack([rgb, np.full((3, 4), 7, np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), rgb)


def test_png_with_alpha_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pixels = load_image(buffer.getvalue())
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[1, 1]) == (255, 0, 0)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4, 3), dtype=np.float32),
    np.zeros((4, 4, 2), dtype=np.uint8),
    np.zeros((0, 4, 3), dtype=np.uint8),
    np.zeros(5, dtype=np.uint8),
    b"",
    b"plain text, not a picture",
    QUERY.read_bytes()[:400],  # a JPEG cut short
], ids=["float", "two-channels", "empty-array", "1d", "no-bytes", "text", "truncated-jpeg"])
def test_what_is_not_an_image_gets_one_line(bad: np.ndarray | bytes) -> None:
    with pytest.raises(QueryError) as caught:
        load_image(bad)
    message = str(caught.value)
    assert message and "\n" not in message


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(QueryError, match="cannot read"):
        load_image(tmp_path / "absent.jpg")
