"""Fuzzing, bounded for CI: the query decoder and the index reader given random and mutated bytes
must answer with a valid result or their own one-line error, never another exception or a hang."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM
from frameseek.keyframes import KeyFrame
from frameseek.query import MAX_PIXELS, QueryError, load_image
from frameseek.store.base import StoreError, VideoRecord
from frameseek.store.embedded import DATABASE, EmbeddedStore

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def image_seeds() -> list[bytes]:
    """Small valid images in every format Pillow reads here, with EXIF, palettes and frames."""
    gradient = np.linspace(0, 255, 24 * 16 * 3).astype(np.uint8).reshape(24, 16, 3)
    picture = Image.fromarray(gradient)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate on display
    seeds = []
    for format_, image, options in [
        ("PNG", picture, {}),
        ("PNG", picture.convert("RGBA"), {}),
        ("PNG", picture.convert("P"), {"transparency": 0}),
        ("JPEG", picture, {"exif": exif.tobytes()}),
        ("JPEG", picture.convert("CMYK"), {}),
        ("GIF", picture.convert("P"), {"save_all": True,
                                       "append_images": [picture.rotate(90).convert("P")]}),
        ("BMP", picture, {}),
        ("TIFF", picture, {"exif": exif.tobytes()}),
        ("WEBP", picture, {}),
        ("PPM", picture, {}),
        ("ICO", picture, {}),
        ("TGA", picture, {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=format_, **options)
        seeds.append(buffer.getvalue())
    return seeds


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes overwritten, a stretch inserted or deleted, and maybe a cut."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data) - 1))
        del data[at : at + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


def assert_valid_or_query_error(data: bytes) -> None:
    try:
        pixels = load_image(data)
    except QueryError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    assert 1 <= pixels.shape[0] * pixels.shape[1] <= MAX_PIXELS


@pytest.mark.timeout(300)
@FUZZ
@given(st.binary(max_size=4096))
def test_query_decoder_on_random_bytes(data: bytes) -> None:
    assert_valid_or_query_error(data)


@pytest.mark.timeout(300)
@FUZZ
@given(mutated(image_seeds()))
def test_query_decoder_on_mutated_images(data: bytes) -> None:
    assert_valid_or_query_error(data)


def database_seed() -> bytes:
    """A real index database (two videos, their key frames and vectors), as bytes on disk."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder), create=True)
        store.set_config({"backbone": "vgg16", "theta": 1.4})
        for number, name in enumerate(["a.mp4", "b.mp4"]):
            keyframes = [
                KeyFrame(frame, frame / 25, rng.random(DESCRIPTOR_DIM, dtype=np.float32),
                         rng.random(INDEX_DIM, dtype=np.float32), [(frame / 25, frame / 25 + 1)],
                         b"\xff\xd8 not really a jpeg")
                for frame in range(0, 200, 20)
            ]
            store.add_video(VideoRecord(name, f"{number:064x}", 1000, 8.0, 200, 320, 180, 25.0),
                            keyframes)
        store.close()
        return (Path(folder) / DATABASE).read_bytes()


def read_everything(directory: Path) -> None:
    """Every read the search path and the CLI make."""
    store = EmbeddedStore(directory)
    try:
        store.get_config()
        videos = store.videos()
        for video in videos:
            store.find_video(video.path)
        vectors = store.vectors()
        assert vectors.index.shape == (len(vectors), INDEX_DIM)
        assert vectors.descriptors.shape == (len(vectors), DESCRIPTOR_DIM)
        for record in store.keyframes([int(i) for i in vectors.ids]):
            store.thumbnail(record.id)
    finally:
        store.close()


def assert_reads_or_store_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / DATABASE).write_bytes(data)
        try:
            read_everything(Path(folder))
        except StoreError as exc:
            assert "\n" not in str(exc)


DATABASE_SEED = database_seed()


@pytest.mark.timeout(300)
@FUZZ
@given(st.data())
def test_index_reader_on_damaged_database(data: st.DataObject) -> None:
    damaged = bytearray(DATABASE_SEED)
    page = 4096
    for _ in range(data.draw(st.integers(1, 16))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at : at + 4] = data.draw(st.binary(min_size=4, max_size=4))
    if data.draw(st.booleans()):  # a whole page lost, as a crash of a disk can leave it
        at = data.draw(st.integers(0, len(damaged) // page - 1)) * page
        damaged[at : at + page] = bytes(page)
    if data.draw(st.booleans()):
        del damaged[data.draw(st.integers(0, len(damaged))):]
    assert_reads_or_store_error(bytes(damaged))


@pytest.mark.timeout(300)
@FUZZ
@given(st.binary(max_size=8192))
def test_index_reader_on_random_file(data: bytes) -> None:
    assert_reads_or_store_error(data)


def test_the_database_seed_reads_cleanly() -> None:
    """The fuzzing above starts from a database that does read: its failures are the damage's."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / DATABASE).write_bytes(DATABASE_SEED)
        read_everything(Path(folder))
