"""Shared fixtures: the bundled sample videos, and one real index of them built once per run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from frameseek.index import Index, IndexConfig
from frameseek.keyframes import Sampler
from frameseek.video import iter_frames

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
BBB = SAMPLES / "videos" / "big_buck_bunny_60s.mp4"
BIKES = SAMPLES / "videos" / "bikes.mp4"
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
