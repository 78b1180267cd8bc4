"""Searching while `frameseek index` writes: readers only ever see whole videos; a second writer
on the same index is refused at once with a clear message."""

from __future__ import annotations

import subprocess
import threading
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek import cli
from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM
from frameseek.index import Index
from frameseek.store.base import StoreError
from frameseek.store.embedded import DATABASE, EmbeddedStore
from tests.conftest import frame_at
from tests.robustness.conftest import SAMPLE_FPS, IndexState, index_command, read_state


def subset_sums(counts: list[int]) -> set[int]:
    return {sum(chosen) for size in range(len(counts) + 1)
            for chosen in combinations(counts, size)}


def wait_for_index(directory: Path, writer: subprocess.Popen[str]) -> None:
    """Until the writer has created the index and recorded its configuration."""
    while writer.poll() is None:
        if (directory / DATABASE).exists():
            try:
                store = EmbeddedStore(directory)
            except StoreError:
                pass  # the writer is still creating it
            else:
                configured = store.get_config() is not None
                store.close()
                if configured:
                    return
        time.sleep(0.05)
    raise AssertionError("the writer ended before creating the index")


class Reader(threading.Thread):
    """Searches in a loop until told to stop, recording how many key frames each search saw and
    which videos its answers came from."""

    def __init__(self, index: Index, query: Path | tuple[np.ndarray, np.ndarray],
                 pause: float) -> None:
        super().__init__(daemon=True)
        self.index, self.query, self.pause = index, query, pause
        self.seen: list[int] = []
        self.answered_from: set[str] = set()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                # One SELECT, hence one consistent snapshot of the key frames.
                vectors = self.index.store.vectors()
                self.seen.append(len(vectors))
                matches = (self.index.search(self.query, top=5) if isinstance(self.query, Path)
                           else self.index.search_features(*self.query, top=5))
                self.answered_from.update(m.video for m in matches)
            except BaseException as exc:  # any failure is what this test looks for
                self.errors.append(exc)
                return
            time.sleep(self.pause)


@pytest.mark.timeout(600)
def test_readers_see_only_whole_videos_and_a_second_writer_is_refused(
    tmp_path: Path, clips: list[Path], clean_state: IndexState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "index"
    query = tmp_path / "query.png"
    Image.fromarray(frame_at(clips[1], 100)[0]).save(query)
    writer = subprocess.Popen(index_command(directory, clips), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    wait_for_index(directory, writer)
    index = Index.open(directory)  # one Index shared by the threads, as the server shares it
    # Cheap searches with a fixed vector, many times a second; and full searches from an image
    # (decode, CNN, coarse-to-fine) at the pace a person sends them.
    rng = np.random.default_rng(0)
    fixed = (rng.random(INDEX_DIM, dtype=np.float32), rng.random(DESCRIPTOR_DIM, dtype=np.float32))
    readers = [Reader(index, query, pause=0.5)]
    readers += [Reader(index, fixed, pause=0.02) for _ in range(2)]
    for reader in readers:
        reader.start()

    # While the writer is between videos (one reported done, more to go), start a second writer.
    assert writer.stdout is not None
    first_done = writer.stdout.readline()
    assert "key frames (compression" in first_done
    status = cli.main(["index", str(clips[0]), "--index", str(directory), "--sample-fps",
                       SAMPLE_FPS, "--quiet"])
    refusal = capsys.readouterr().err
    assert status == cli.EXIT_ERROR == 1
    assert "is being written by another frameseek process" in refusal

    writer.communicate()
    for reader in readers:
        reader.stop.set()
        reader.join()
    index.close()

    assert writer.returncode == 0
    assert read_state(directory) == clean_state  # neither readers nor refused writer changed it
    whole = subset_sums([len(frames) for frames in clean_state.keyframes.values()])
    for reader in readers:
        assert not reader.errors, reader.errors
        assert set(reader.seen) <= whole, f"partial videos seen: {sorted(set(reader.seen))}"
        assert reader.seen == sorted(reader.seen)  # videos only ever appear, never vanish
        assert reader.answered_from <= set(clean_state.keyframes)
    seen = {count for reader in readers for count in reader.seen}
    assert len(seen) >= 2, "the readers never overlapped the writer"
