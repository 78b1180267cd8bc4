"""The persistent search structure on a real on-disk index: grown video by video without a
rebuild, removals skipped, the stated rules followed, damage detected and rebuilt, never served,
and a full disk leaving the previous state."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from frameseek.index import Index
from frameseek.searchindex import (
    MANIFEST_KEY,
    OPTIMIZE_LOCK,
    IvfSearcher,
    SearchIndex,
)
from frameseek.store.base import StoreError
from frameseek.store.embedded import ROW_FILE_KEY, VECTOR_FOLDER, EmbeddedStore
from tests.robustness import grow_index

VIDEOS = 12  # 4,800 key frames: trained at 2,000, retrained at 4,000


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("grown") / "index"
    grow_index.grow(directory, VIDEOS)
    return directory


@pytest.fixture
def index(grown: Path, tmp_path: Path) -> Index:
    shutil.copytree(grown, tmp_path / "index")
    opened = Index.open(tmp_path / "index")
    opened.search_index = grow_index.search_index(opened)
    yield opened
    opened.close()


def best(index: Index, number: int, row: int = 0) -> str | None:
    found = index.search_features(np.zeros(64, np.float32), grow_index.descriptors(number)[row],
                                  top=1)
    return found[0].video if found and found[0].distance < 1e-2 else None


def manifest(index: Index) -> dict:
    return index.store.get_meta(MANIFEST_KEY)


def test_a_new_video_is_searchable_at_once_without_rewriting_the_base(index: Index,
                                                                     tmp_path: Path) -> None:
    assert isinstance(index.searcher(), IvfSearcher)
    base = manifest(index)["files"]["base"]
    grow_index.grow(tmp_path / "index", VIDEOS + 1)  # another writer, as `frameseek index` is
    assert best(index, VIDEOS) == grow_index.path(VIDEOS)
    assert manifest(index)["files"]["base"] == base, "one video should not rewrite the base"
    assert manifest(index)["recent"] == (VIDEOS + 1) * grow_index.PER_VIDEO


def test_a_removed_video_is_never_answered(index: Index) -> None:
    assert best(index, 3) == grow_index.path(3)
    index.remove(grow_index.path(3))
    assert best(index, 3) is None
    assert best(index, 4) == grow_index.path(4)


def test_the_rules_train_fold_and_retrain_at_the_stated_sizes(tmp_path: Path) -> None:
    rules, per_video = grow_index.RULES, grow_index.PER_VIDEO
    with Index.open(tmp_path / "index", create=True) as index:
        structure = grow_index.search_index(index)
        assert structure.maintain() is None and manifest(index) is None  # empty: exact
    grow_index.grow(tmp_path / "index", rules.flat_limit // per_video)  # 2,000: trains
    with Index.open(tmp_path / "index") as index:
        trained = manifest(index)
        assert trained["trained_rows"] == rules.flat_limit
        assert trained["factory"] == rules.factory(rules.flat_limit) == "IVF45,SQ4"
    grow_index.grow(tmp_path / "index", 10)  # 4,000 (2× its training, not past it): folds
    with Index.open(tmp_path / "index") as index:
        assert manifest(index)["trained_rows"] == rules.flat_limit
        assert manifest(index)["covered"] == 3200  # folded once the recent part held 1,000+
    grow_index.grow(tmp_path / "index", 11)  # 4,400: past 2×, retrained
    with Index.open(tmp_path / "index") as index:
        assert manifest(index)["trained_rows"] == 11 * per_video
        structure = grow_index.search_index(index)
        for number in (10, 9):  # down to 3,600 live: above half its training, few dead
            index.store.remove_video(grow_index.path(number))
            assert structure.maintain() is None
        for number in range(8, 0, -1):  # down to 400, below half the flat limit: exact again
            index.store.remove_video(grow_index.path(number))
            structure.maintain()
        assert manifest(index) is None
        assert not isinstance(index.searcher(), IvfSearcher)


def test_videos_added_and_removed_while_optimize_trains_are_in_its_generation(
        index: Index, tmp_path: Path) -> None:
    structure = index.search_index
    assert structure is not None
    rows = index.store.descriptor_rows()
    # optimize's two steps, with another writer's work between them: the training and encoding
    # run on the rows as they were; the install under the lock brings them up to date.
    encoded = structure._encoded(rows)
    grow_index.grow(tmp_path / "index", VIDEOS + 2)  # not refused: optimize holds no lock yet
    index.store.remove_video(grow_index.path(0))
    with structure._writing():
        structure._installed(*encoded, rows, index.store.descriptor_rows())
    installed = manifest(index)
    assert installed["covered"] == installed["recent"] == (VIDEOS + 2) * grow_index.PER_VIDEO
    searcher = index.searcher()
    assert isinstance(searcher, IvfSearcher) and not len(searcher.loose)
    assert searcher.base.ntotal == (VIDEOS + 1) * grow_index.PER_VIDEO  # the removed one out
    assert best(index, VIDEOS + 1) == grow_index.path(VIDEOS + 1)
    assert best(index, 0) is None and best(index, 1) == grow_index.path(1)


def test_a_second_optimize_is_refused_while_one_runs(index: Index) -> None:
    structure = index.search_index
    assert structure is not None
    with (structure.folder / OPTIMIZE_LOCK).open("w") as running:
        fcntl.flock(running, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="another optimize is running"):
            structure.optimize()


def test_optimize_of_a_small_collection_keeps_it_exact(grown: Path, tmp_path: Path) -> None:
    shutil.copytree(grown, tmp_path / "index")
    with Index.open(tmp_path / "index") as index:  # the product's rules: 4,800 is small
        assert "exact search" in index.optimize()
        assert manifest(index) is None
        assert best(index, 0) is None or best(index, 0) == grow_index.path(0)


def damage_base(directory: Path, meta: dict) -> None:
    path = directory / "search" / meta["files"]["base"]
    path.write_bytes(path.read_bytes()[:-100])


def damage_recent(directory: Path, meta: dict) -> None:
    (directory / "search" / meta["files"]["recent"]).unlink()


def damage_format(directory: Path, meta: dict) -> None:
    store = EmbeddedStore(directory)
    store.set_meta(MANIFEST_KEY, {**meta, "format": 0})
    store.close()


def swap_base_for_trained(directory: Path, meta: dict) -> None:
    """Another valid FAISS file under the base's name (same size is not needed to be caught)."""
    shutil.copy(directory / "search" / meta["files"]["trained"],
                directory / "search" / meta["files"]["base"])


@pytest.mark.parametrize("damage", [damage_base, damage_recent, damage_format,
                                    swap_base_for_trained])
def test_a_damaged_search_file_is_rebuilt_with_one_line_and_never_served(
    grown: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], damage
) -> None:
    directory = tmp_path / "index"
    shutil.copytree(grown, directory)
    store = EmbeddedStore(directory)
    meta = store.get_meta(MANIFEST_KEY)
    store.close()
    damage(directory, meta)
    with Index.open(directory) as index:
        index.search_index = SearchIndex(index.store, rules=grow_index.RULES)
        capfd.readouterr()
        assert isinstance(index.searcher(), IvfSearcher)
        told = capfd.readouterr().err.strip().splitlines()
        assert len(told) == 1 and "rebuilding the search index" in told[0], told
        assert all(best(index, n, row) == grow_index.path(n)
                   for n in range(VIDEOS) for row in (0, 399))
        assert manifest(index)["files"]["base"] != meta["files"]["base"]


def test_a_damaged_row_file_is_rebuilt_from_the_database(grown: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]
                                                         ) -> None:
    directory = tmp_path / "index"
    shutil.copytree(grown, directory)
    with Index.open(directory) as index:
        before = index.store.vectors()
        ids, descriptors = before.ids.copy(), np.array(before.descriptors)
        row_file = index.store.get_meta(ROW_FILE_KEY)["file"]
    path = directory / VECTOR_FOLDER / row_file
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    capfd.readouterr()
    with Index.open(directory) as index:
        index.search_index = SearchIndex(index.store, rules=grow_index.RULES)
        after = index.store.vectors()
        told = capfd.readouterr().err.strip().splitlines()
        assert len(told) == 1 and "rebuilding" in told[0] and row_file in told[0], told
        np.testing.assert_array_equal(after.ids, ids)
        np.testing.assert_array_equal(after.descriptors, descriptors)
        assert best(index, 5) == grow_index.path(5)  # the IVF of the old file is rebuilt too


FULL_DISK = """
import resource, signal, sys
from frameseek.index import Index
from tests.robustness import grow_index
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with Index.open(sys.argv[1]) as index:
    index.search_index = grow_index.search_index(index)
    try:
        {action}
    except Exception as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
"""


@pytest.mark.parametrize("action", [
    "index.search_index.optimize()",
    f"grow_index.grow(index.directory, {VIDEOS} + 5)",
])
def test_a_full_disk_during_a_write_leaves_the_previous_state(grown: Path, tmp_path: Path,
                                                              action: str) -> None:
    directory = tmp_path / "index"
    shutil.copytree(grown, directory)
    with Index.open(directory) as index:
        before = (json.dumps(manifest(index)), index.store.get_meta(ROW_FILE_KEY))
    # Room for the database's small writes, none for a new search file or a video's rows.
    base = directory / "search" / json.loads(before[0])["files"]["base"]
    limit = base.stat().st_size // 2
    failed = subprocess.run([sys.executable, "-c", FULL_DISK.format(action=action),
                             str(directory), str(limit)], capture_output=True, text=True)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    with Index.open(directory) as index:
        index.search_index = grow_index.search_index(index)
        assert (json.dumps(manifest(index)), index.store.get_meta(ROW_FILE_KEY)) == before
        assert len(index.videos()) == VIDEOS
        assert all(best(index, n) == grow_index.path(n) for n in range(VIDEOS))
        assert not list((directory / "search").glob("*.partial"))


OPTIMIZE = """
import sys
from frameseek.index import Index
from tests.robustness import grow_index
with Index.open(sys.argv[1]) as index:
    index.search_index = grow_index.search_index(index)
    print(index.optimize())
"""


def test_a_reader_keeps_answering_while_another_process_optimizes(index: Index,
                                                                 tmp_path: Path) -> None:
    before = manifest(index)["files"]["base"]
    process = subprocess.Popen([sys.executable, "-c", OPTIMIZE, str(tmp_path / "index")],
                               stdout=subprocess.PIPE, text=True)
    answered = 0
    while process.poll() is None:  # never waits for the writer, never answers wrongly
        number = answered % VIDEOS
        assert best(index, number, row=answered % grow_index.PER_VIDEO) == grow_index.path(number)
        answered += 1
    assert process.returncode == 0 and "trained IVF" in process.stdout.read()
    assert answered > 0
    assert manifest(index)["files"]["base"] != before
    assert all(best(index, n) == grow_index.path(n) for n in range(VIDEOS))  # the new one


def test_a_large_collection_gets_the_compact_code_and_still_finds_every_video(
    tmp_path: Path
) -> None:
    rules = replace(grow_index.RULES, compact_from=grow_index.RULES.flat_limit)
    grow_index.grow(tmp_path / "index", 9, rules)  # 3,600 key frames: trained, then folded
    with Index.open(tmp_path / "index") as index:
        assert manifest(index)["factory"] == "PCA256,IVF45,SQ4"
        assert manifest(index)["covered"] > rules.flat_limit
        index.search_index = grow_index.search_index(index, rules)
        for number in (1, 2, 3):  # 1,200 dead rows: folded out of the base by id
            index.remove(grow_index.path(number))
        assert manifest(index)["removed"] == 3 * grow_index.PER_VIDEO
        assert isinstance(index.searcher(), IvfSearcher)
        for number in (0, 4, 5, 6, 7, 8):
            for row in (0, grow_index.PER_VIDEO - 1):
                assert best(index, number, row) == grow_index.path(number)
        assert best(index, 2) is None
