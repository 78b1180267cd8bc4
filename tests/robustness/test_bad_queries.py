"""Bad query images, through `load_image` and through `frameseek search`: a clear one-line error or
a correct answer, never a traceback or a hang."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek import cli
from frameseek.query import QueryError, load_image
from tests.conftest import SAMPLES

QUERY = SAMPLES / "query.jpg"  # frame 803 of the bunny clip, 33.458 s
QUERY_VIDEO, QUERY_TIME = "big_buck_bunny_60s.mp4", 33.458
ORIENTATION = 0x0112

# Where EXIF orientation n puts the picture as stored, from the display picture (EXIF 2.3, 4.6.4:
# the stored 0th row and 0th column are the displayed ... side): the decoder must undo it.
STORED_AS = {
    1: lambda d: d,
    2: np.fliplr,  # top, right
    3: lambda d: np.rot90(d, 2),  # bottom, right
    4: np.flipud,  # bottom, left
    5: lambda d: d.transpose(1, 0, 2),  # left, top
    6: lambda d: np.rot90(d, 1),  # right, top
    7: lambda d: np.fliplr(np.rot90(d, 1)),  # right, bottom
    8: lambda d: np.rot90(d, -1),  # left, bottom
}


def png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write (16-bit RGB) or would write slowly."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def quadrants(height: int = 40, width: int = 60) -> np.ndarray:
    """Red, green, blue and yellow quarters: every flip and turn of it looks different."""
    picture = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    picture[:h, :w], picture[:h, w:] = (255, 0, 0), (0, 255, 0)
    picture[h:, :w], picture[h:, w:] = (0, 0, 255), (255, 255, 0)
    return picture


def jpeg_with_orientation(display: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored = np.ascontiguousarray(STORED_AS[orientation](display))
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def encoded(image: Image.Image, format_: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of awkward query, as files."""
    folder = tmp_path_factory.mktemp("queries")
    photo = Image.open(QUERY)
    ramp16 = (np.arange(64).repeat(64).reshape(64, 64) * 1024).astype(">u2")  # 0 … 64512
    rgb16 = np.zeros((8, 8, 3), ">u2")
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 0xFF00, 0x8000, 0x0100
    red, green = (Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0)))
    alpha = np.zeros((16, 16, 4), np.uint8)
    alpha[:8] = (10, 20, 30, 255)  # top half opaque, bottom half fully transparent
    contents = {
        "empty.jpg": b"",
        "text.jpg": b"this is a note, not a picture\n" * 20,
        "truncated.jpg": QUERY.read_bytes()[: QUERY.stat().st_size // 2],
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG"),
        # 400 million 1-bit pixels in 48 KB: it must be refused from its header, not decoded.
        "huge.png": png(20_000, 20_000, 1, 0, bytes(1 + 20_000 // 8) * 20_000),
        "cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG", quality=95),
        "grey16.png": png(64, 64, 16, 0, b"".join(b"\0" + row.tobytes() for row in ramp16)),
        "rgb16.png": png(8, 8, 16, 2, b"".join(b"\0" + row.tobytes() for row in rgb16)),
        "animated.gif": encoded(red, "GIF", save_all=True, append_images=[green], duration=100),
        "alpha.png": encoded(Image.fromarray(alpha, "RGBA"), "PNG"),
        "rotated.jpg": jpeg_with_orientation(np.asarray(photo), 6),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    (folder / "folder.jpg").mkdir()
    return {name: folder / name for name in [*contents, "folder.jpg", "missing.jpg"]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.jpg", "empty file"),
        ("text.jpg", "not an image"),
        ("truncated.jpg", "damaged image (image file is truncated"),
        ("huge.png", "too many pixels"),
        ("folder.jpg", "is a directory"),
        ("missing.jpg", "cannot read (No such file or directory)"),
    ],
)
def test_unusable_query_gets_a_one_line_error(queries: dict[str, Path], name: str,
                                              reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        load_image(queries[name])
    assert reason in str(caught.value)
    assert str(caught.value).startswith(str(queries[name])) and "\n" not in str(caught.value)


def test_one_pixel_image_decodes(queries: dict[str, Path]) -> None:
    assert load_image(queries["one_pixel.png"]).tolist() == [[[12, 34, 56]]]


def test_cmyk_jpeg_decodes_to_the_same_picture(queries: dict[str, Path]) -> None:
    original = load_image(QUERY).astype(int)
    cmyk = load_image(queries["cmyk.jpg"]).astype(int)
    assert cmyk.shape == original.shape
    assert np.abs(cmyk - original).mean() < 6


def test_16_bit_images_keep_their_top_8_bits(queries: dict[str, Path]) -> None:
    grey = load_image(queries["grey16.png"])
    assert grey.shape == (64, 64, 3)
    assert grey[:, 0, 0].tolist() == [(level * 1024) >> 8 for level in range(64)]
    assert load_image(queries["rgb16.png"])[0, 0].tolist() == [0xFF, 0x80, 0x01]


def test_animated_gif_gives_its_first_frame(queries: dict[str, Path]) -> None:
    pixels = load_image(queries["animated.gif"])
    assert pixels.shape == (32, 32, 3) and pixels[16, 16].tolist() == [255, 0, 0]


def test_transparent_areas_become_white(queries: dict[str, Path]) -> None:
    pixels = load_image(queries["alpha.png"])
    assert pixels[0, 0].tolist() == [10, 20, 30] and pixels[-1, -1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_orientation_is_honoured(orientation: int) -> None:
    display = quadrants()
    pixels = load_image(jpeg_with_orientation(display, orientation))
    assert pixels.shape == display.shape
    assert np.abs(pixels.astype(int) - display).mean() < 8


@pytest.mark.timeout(300)
def test_cli_answers_or_explains_every_query(
    queries: dict[str, Path], sample_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [QUERY, *queries.values()]
    status = cli.main(["search", *map(str, paths), "--index", str(sample_index), "--json",
                       "--top", "3"])
    out, err = capsys.readouterr()

    answers = {Path(answer["query"]).name: answer["results"]
               for answer in map(json.loads, out.splitlines())}
    errors = {Path(line.split(": ")[1]).name: line for line in err.splitlines()}
    assert "Traceback" not in err
    assert all(line.startswith("frameseek: ") for line in errors.values())
    assert sorted([*answers, *errors]) == sorted(path.name for path in paths)
    assert set(errors) == {"empty.jpg", "text.jpg", "truncated.jpg", "huge.png", "folder.jpg",
                           "missing.jpg"}
    assert status == cli.EXIT_ERROR
    assert all(answers.values())
    # The same photo, in CMYK or turned on its side with an EXIF flag, finds the same moment.
    for name in ("query.jpg", "cmyk.jpg", "rotated.jpg"):
        best = answers[name][0]
        assert Path(best["video"]).name == QUERY_VIDEO, name
        assert abs(best["time"] - QUERY_TIME) < 1.0, name
