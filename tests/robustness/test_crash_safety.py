"""`kill -9` of `frameseek index` at several moments: the index always opens, answers searches
and holds only whole videos; rerunning the same command resumes and ends as a clean run does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM
from frameseek.index import Index
from frameseek.store.embedded import DATABASE
from tests.robustness.conftest import IndexState, index_command, read_state


def assert_whole_and_searchable(directory: Path, clean: IndexState,
                                before: IndexState) -> IndexState:
    """The index is as it was before the run or has whole videos added, and answers searches."""
    if not (directory / DATABASE).exists():  # killed before the database was created
        assert before.total == 0
        return before
    state = read_state(directory)
    for path, frames in state.keyframes.items():
        assert frames == clean.keyframes[path], f"{path} differs from a clean run's"
    assert set(before.keyframes) <= set(state.keyframes), "a finished video was lost"
    with Index.open(directory) as index:
        vectors = index.store.vectors()
        for row in range(0, len(vectors), max(1, len(vectors) // 3)):
            best = index.search_features(vectors.index[row], vectors.descriptors[row], top=1)
            assert best[0].keyframe_id == vectors.ids[row] and best[0].distance < 1e-3
        if len(vectors) == 0:
            nothing = index.search_features(np.zeros(INDEX_DIM, np.float32),
                                            np.zeros(DESCRIPTOR_DIM, np.float32))
            assert nothing == []
    return state


def start(directory: Path, clips: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(index_command(directory, clips), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def kill_after(process: subprocess.Popen[str], seconds: float) -> None:
    time.sleep(seconds)
    kill(process)


def wait_for_new_video(process: subprocess.Popen[str], known: IndexState) -> str:
    """Read progress until the run reports a video it added (not one it found unchanged)."""
    assert process.stdout is not None
    for line in process.stdout:
        path = line.split(": ", 1)[0]
        if "key frames (compression" in line and path not in known.keyframes:
            return path
    raise AssertionError("the run finished without reporting a new video")


@pytest.mark.timeout(600)
def test_kill_9_at_any_moment_loses_nothing_and_resumes(
    tmp_path: Path, clips: list[Path], clean_state: IndexState
) -> None:
    directory = tmp_path / "index"
    originals, clips = clips, [Path(shutil.copy(clip, tmp_path)) for clip in clips]
    clean_state = IndexState({str(clip): clean_state.keyframes[str(original)]
                              for clip, original in zip(clips, originals, strict=True)})
    state = IndexState({})

    for seconds in (0.5, 2.0):  # while starting up (imports, model load), or in the first video
        kill_after(start(directory, clips), seconds)
        state = assert_whole_and_searchable(directory, clean_state, state)

    process = start(directory, clips)  # the moment a video has been committed
    finished = wait_for_new_video(process, state)
    kill(process)
    state = assert_whole_and_searchable(directory, clean_state, state)
    assert finished in state.keyframes

    process = start(directory, clips)  # part-way through the next video
    wait_for_new_video(process, state)
    kill_after(process, 0.5)
    state = assert_whole_and_searchable(directory, clean_state, state)
    assert 0 < len(state.keyframes) < len(clips), "the kills should have left work to resume"

    resumed = subprocess.run(index_command(directory, clips), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    done = len(state.keyframes)
    assert f"({done} unchanged, 0 skipped)" in resumed.stdout
    assert read_state(directory) == clean_state

    # Unchanged is decided by content, not by dates: touched files are still skipped...
    for clip in clips:
        os.utime(clip, (time.time() + 60, time.time() + 60))
    again = subprocess.run(index_command(directory, clips), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"indexed 0 videos ({len(clips)} unchanged" in again.stdout
    assert read_state(directory) == clean_state

    # ...and a file whose content changed under the same name replaces its old entry.
    shutil.copy(clips[-1], clips[0])
    changed = subprocess.run(index_command(directory, clips), capture_output=True, text=True)
    assert changed.returncode == 0, changed.stderr
    assert f"indexed 1 videos ({len(clips) - 1} unchanged" in changed.stdout
    final = read_state(directory)
    assert final.keyframes[str(clips[0])] == clean_state.keyframes[str(clips[-1])]
    assert final.total == clean_state.total - len(clean_state.keyframes[str(clips[0])]) + len(
        clean_state.keyframes[str(clips[-1])])
