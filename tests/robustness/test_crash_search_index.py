"""`kill -9` while the persistent search structure is written: while videos are added to it
(its first training, recent-file rewrites, folds, retrains) and while `frameseek optimize`
retrains it. After every kill the index opens, holds only whole videos, finds each of them with
its persistent IVF, and the rerun resumes to what a clean run gives."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from frameseek.index import Index
from frameseek.searchindex import OPTIMIZE_LOCK, IvfSearcher, Rules
from tests.robustness import grow_index
from tests.robustness.conftest import frameseek_command, read_state
from tests.robustness.test_crash_safety import kill

VIDEOS = 30  # 12,000 key frames: trained at 2,000, retrained at 4,000 and 8,000, folded between


def grow_command(directory: Path) -> list[str]:
    return [sys.executable, "-m", "tests.robustness.grow_index", str(directory), str(VIDEOS)]


def assert_whole_and_found(directory: Path) -> int:
    """Whole videos only, each found by its own key frames through the IVF; how many."""
    state = read_state(directory)
    assert all(len(frames) == grow_index.PER_VIDEO for frames in state.keyframes.values())
    with Index.open(directory) as index:
        index.search_index = grow_index.search_index(index)
        persistent = isinstance(index.searcher(), IvfSearcher)
        total = len(state.keyframes) * grow_index.PER_VIDEO
        assert persistent or total < grow_index.RULES.flat_limit
        # Random descriptors pool to 64-d vectors that say little: the exhaustive search of a
        # small collection re-ranks all of them, the IVF ranks on the 512-d itself.
        candidates = 100 if persistent else max(total, 1)
        for path in state.keyframes:
            number = int(Path(path).stem)
            for row in (0, grow_index.PER_VIDEO - 1):
                best = index.search_features(np.zeros(64, np.float32),
                                             grow_index.descriptors(number)[row], top=1,
                                             candidates=candidates)
                assert best[0].video == path and best[0].distance < 1e-2
    return len(state.keyframes)


@pytest.mark.timeout(600)
def test_kill_9_while_adding_to_a_persistent_index_loses_nothing_and_resumes(
    tmp_path: Path
) -> None:
    directory = tmp_path / "index"
    done = 0
    # Kills after a few videos, then at times that fall in writing, training, folding.
    for events in (3, 5, 9, 10, 17, 21):
        process = subprocess.Popen(grow_command(directory), stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        for _ in range(events - done):
            if not process.stdout.readline():
                break
        time.sleep(0.05 * events % 0.3)
        kill(process)
        found = assert_whole_and_found(directory)
        assert found >= done, "a finished video was lost"
        done = found
    assert done < VIDEOS, "the kills should have left work to resume"
    resumed = subprocess.run(grow_command(directory), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert assert_whole_and_found(directory) == VIDEOS


LARGE = 150  # 60,000 key frames: above the product's flat limit, so `optimize` trains


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("grown") / "index"
    grow_index.grow(directory, LARGE, Rules())
    return directory


@pytest.mark.timeout(600)
def test_kill_9_during_optimize_keeps_the_previous_generation_serving(
    tmp_path: Path, grown: Path
) -> None:
    directory = tmp_path / "index"
    shutil.copytree(grown, directory)
    with Index.open(directory) as index:
        before = index.store.get_meta("search_index")
    command = frameseek_command("optimize", "--index", directory)
    named = set(before["files"].values()) | {"search.lock"}
    mid_write = 0
    for seconds in (0.0, 0.2, 0.5, 1.0, 1.5):  # after it says it starts
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        assert process.stdout is not None and "optimizing" in process.stdout.readline()
        time.sleep(seconds)
        finished_early = process.poll() is not None
        if not finished_early:
            kill(process)
        # A kill just after the commit, or a run that finished, leaves the new generation.
        with Index.open(directory) as index:
            named |= set(index.store.get_meta("search_index")["files"].values())
        if finished_early:
            break  # later moments would only repeat this one
        # Files no manifest names: the kill fell while the next generation was being written.
        mid_write += any(p.name not in named for p in (directory / "search").iterdir())
        assert assert_whole_and_found(directory) == LARGE
    assert mid_write, "no kill fell while optimize was writing"
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"over {LARGE * grow_index.PER_VIDEO} key frames" in finished.stdout
    assert assert_whole_and_found(directory) == LARGE
    with Index.open(directory) as index:
        after = index.store.get_meta("search_index")
    assert after["files"]["base"] != before["files"]["base"]
    # What the kills left is gone: the folder holds the new generation and, for readers that
    # were opening it, the one it replaced.
    left = {p.name for p in (directory / "search").iterdir()}
    assert left <= {"search.lock", OPTIMIZE_LOCK, *after["files"].values(), *named}
    assert sum(name.startswith("base-") for name in left) <= 2, sorted(left)
