"""Fixtures for the robustness tests: short distinct videos, the `frameseek index` command that
indexes them, and a clean reference run to compare crashed, resumed and concurrent runs with."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest

from frameseek.index import Index
from tests.conftest import BIKES

# Three encodings of the bikes clip: distinct files (different bytes, hence content identities)
# that each cost a few CNN passes at one sample per second.
CLIP_QUALITIES = (20, 30, 40)
SAMPLE_FPS = "1"


def frameseek_command(*args: str | Path) -> list[str]:
    """The real command line, run with this interpreter so CI's environment is the one tested."""
    return [sys.executable, "-m", "frameseek.cli", *map(str, args)]


def index_command(index: Path, videos: list[Path]) -> list[str]:
    return frameseek_command("index", *videos, "--index", index, "--sample-fps", SAMPLE_FPS,
                             "--quiet")


def reencode(source: Path, target: Path, crf: int) -> Path:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-an",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", str(crf), str(target)],
        check=True,
    )
    return target


@dataclass(frozen=True)
class IndexState:
    """What an index holds, per video: its key frames' frame numbers, in order."""

    keyframes: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(len(frames) for frames in self.keyframes.values())


def read_state(directory: Path) -> IndexState:
    """Open the index as a user would and check it is whole: every key-frame vector belongs to a
    video, each video has exactly the key frames it records, and no key frame appears twice."""
    with Index.open(directory) as index:
        videos = {v.path: v for v in index.videos()}
        vectors = index.store.vectors()
        records = index.store.keyframes([int(i) for i in vectors.ids])
    assert len(records) == len(vectors), "key-frame vectors without a video"
    keyframes: dict[str, list[int]] = {path: [] for path in videos}
    for record in records:
        keyframes[record.video].append(record.frame)
    for path, frames in keyframes.items():
        assert len(frames) == videos[path].keyframes, f"{path}: half-written video"
        assert len(set(frames)) == len(frames), f"{path}: duplicate key frames"
    return IndexState({path: sorted(frames) for path, frames in keyframes.items()})


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [reencode(BIKES, folder / f"bikes_crf{crf}.mp4", crf) for crf in CLIP_QUALITIES]


@pytest.fixture(scope="session")
def clean_state(tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> IndexState:
    """The index an uninterrupted run of `frameseek index` builds from the clips."""
    directory = tmp_path_factory.mktemp("clean") / "index"
    subprocess.run(index_command(directory, clips), check=True, capture_output=True)
    state = read_state(directory)
    assert sorted(state.keyframes) == sorted(map(str, clips))
    return state
