"""Shared fixtures: the bundled sample videos, and one real index of them built once per run."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.index import Index, IndexConfig
from frameseek.keyframes import Sampler
from frameseek.video import iter_frames

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
BBB = SAMPLES / "videos" / "big_buck_bunny_60s.mp4"
BIKES = SAMPLES / "videos" / "bikes.mp4"
CARPHONE = Path(__file__).parent / "data" / "carphone.mp4"
ARTIFACTS = Path(os.environ.get("FRAMESEEK_TEST_ARTIFACTS", ROOT / "artifacts"))


@pytest.fixture(scope="session")
def sample_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of samples/videos, so tests may index it without touching the repo."""
    target = tmp_path_factory.mktemp("videos")
    for video in (BBB, BIKES):
        shutil.copy(video, target / video.name)
    return target


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, sample_videos: Path) -> Path:
    """An index of the two sample videos, built once with the default parameters. Read only:
    tests that change an index copy this directory first."""
    directory = tmp_path_factory.mktemp("index") / "index"
    with Index.create(directory) as index:
        report = index.add([sample_videos])
    assert len(report.added) == 2, report.skipped
    return directory


def frame_at(video: Path, number: int) -> tuple[np.ndarray, float]:
    """The RGB pixels and time of one decoded frame."""
    for frame in iter_frames(video):
        if frame.number == number:
            return frame.rgb(), frame.time
    raise IndexError(f"{video} has no frame {number}")


def sampled_frames(video: Path, fps: float = IndexConfig.sample_fps) -> list[int]:
    """The numbers of the frames indexing gives the CNN: those the coverage guarantee is about."""
    sampler = Sampler(fps)
    return [f.number for f in iter_frames(video) if sampler.take(f.time)]


@pytest.fixture(scope="session")
def recurring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of one real encoded video in which the carphone clip's first two seconds play
    twice, 5 s apart, with three seconds of bikes between."""
    from tests.test_video import write_video  # a test module's helper: imported when used

    carphone = [frame.rgb() for frame in iter_frames(CARPHONE)][:60]
    size = (carphone[0].shape[1], carphone[0].shape[0])
    bikes = [np.asarray(Image.fromarray(frame.rgb()).resize(size))
             for frame in iter_frames(BIKES)][:90]
    images = carphone + bikes + carphone
    folder = tmp_path_factory.mktemp("recurring")
    write_video(folder / "recurring.mp4", "mpeg4", images, list(range(len(images))),
                Fraction(1, 30), Fraction(30), {"b": "3000000"})  # near-lossless
    with Index.create(folder / "index") as index:
        assert len(index.add([folder / "recurring.mp4"]).added) == 1
    return folder
