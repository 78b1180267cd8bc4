"""The embedded store keeps float16 descriptors, derives the 64-d index, reads schema-1 rows."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np

from frameseek.features import LEGACY_MEAN, pooling_named
from frameseek.index import Index
from frameseek.keyframes import KeyFrame
from frameseek.query import load_image
from frameseek.search import CoarseToFine
from frameseek.store.base import Vectors
from frameseek.store.embedded import DATABASE, ROW_FILE_KEY, EmbeddedStore

ROOT = Path(__file__).resolve().parents[2]


def test_descriptors_are_stored_as_float16_and_the_index_is_derived(sample_index: Path) -> None:
    db = sqlite3.connect(sample_index / DATABASE)
    sizes = db.execute("SELECT DISTINCT length(descriptor), length(index_vector) FROM keyframes")
    assert sizes.fetchall() == [(1024, 0)]
    store = EmbeddedStore(sample_index)
    vectors = store.vectors()
    pooling = pooling_named(store.get_config()["pooling"])
    store.close()
    assert vectors.descriptors.dtype == np.float16
    np.testing.assert_array_equal(
        vectors.index, pooling.coarse(vectors.descriptors.astype(np.float32)))


def test_schema_1_float32_rows_are_read_at_full_precision(sample_index: Path,
                                                          tmp_path: Path) -> None:
    shutil.copytree(sample_index, tmp_path / "index")
    db = sqlite3.connect(tmp_path / "index" / DATABASE)
    first = db.execute("SELECT id FROM keyframes ORDER BY id LIMIT 1").fetchone()[0]
    old = np.linspace(0, 3, 512, dtype=np.float32) + np.float32(1e-4)  # not a float16 value
    pooling = pooling_named("mean")  # the only pooling schema 1 knew
    db.execute("UPDATE keyframes SET descriptor = ?, index_vector = ? WHERE id = ?",
               (old.tobytes(), pooling.coarse(old[None])[0].tobytes(), first))
    db.execute("UPDATE meta SET value = json_set(value, '$.pooling', ?) WHERE key = 'config'",
               (LEGACY_MEAN,))
    db.execute("DELETE FROM meta WHERE key = ?", (ROW_FILE_KEY,))  # schema 1 had no row file
    db.commit()
    db.close()
    store = EmbeddedStore(tmp_path / "index")
    vectors = store.vectors()
    store.close()
    assert vectors.descriptors.dtype == np.float32
    np.testing.assert_array_equal(vectors.descriptors[0], old)
    np.testing.assert_array_equal(vectors.index[0], pooling.coarse(old[None])[0])
    with Index.open(tmp_path / "index") as index:  # the old name of the paper's pooling
        assert index.config.pooling == "mean"


def test_float16_descriptors_change_search_results_only_among_near_ties(sample_index: Path
                                                                        ) -> None:
    """A float32 collection (the CNN's own output for every key frame's thumbnail) and the same
    collection rounded to float16 as the store keeps it, queried with the sample query and with
    every key frame: the best match is the same, and at every rank of the top 12 the key frame
    found with float16 is as near the query (in float32) as the exact one, to 0.1%: float16 can
    only swap key frames whose distances tie to that precision."""
    with Index.open(sample_index) as index:
        ids = index.store.vectors().ids
        extractor = index.extractor
        pixels = np.stack([extractor.resize(load_image(index.store.thumbnail(int(i))))
                           for i in ids])
        query = index.embed(ROOT / "samples" / "query.jpg")
    features = extractor.transform(pixels)
    full = Vectors(ids, features.index, features.descriptors)
    half16 = features.descriptors.astype(np.float16)
    half = Vectors(ids, extractor.pooling.coarse(half16.astype(np.float32)), half16)
    assert not np.array_equal(half16.astype(np.float32), features.descriptors)  # it did round
    exact, compact = (CoarseToFine(v, "Flat", candidates=len(ids)) for v in (full, half))
    row = {int(i): r for r, i in enumerate(ids)}
    queries = [(query.index[0], query.descriptors[0]),
               *zip(features.index, features.descriptors, strict=True)]
    for index_vector, descriptor in queries:
        truth = exact.search(index_vector, descriptor)
        found = compact.search(index_vector, descriptor)
        assert found[0].keyframe_id == truth[0].keyframe_id
        found_in_float32 = [float(np.linalg.norm(features.descriptors[row[h.keyframe_id]]
                                                 - descriptor)) for h in found]
        np.testing.assert_allclose(found_in_float32, [h.distance for h in truth], rtol=1e-3)


def test_ids_are_not_reused_after_a_removal(tmp_path: Path, sample_index: Path) -> None:
    """A removed video's key-frame ids never come back, so id-keyed URLs stay truthful."""
    copy = tmp_path / "index"
    shutil.copytree(sample_index, copy)
    store = EmbeddedStore(copy)
    try:
        video = store.videos()[-1]
        before = set(store.vectors().ids.tolist())
        removed_max = int(max(before))
        keyframes = [
            KeyFrame(frame=0, time=0.0, descriptor=np.ones(512, np.float32),
                     index=np.ones(64, np.float32), segments=[(0.0, 0.5)], thumbnail=b"")
        ]
        store.remove_video(video.path)
        store.add_video(replace(video, path="again.mp4", id=None), keyframes)
        new_ids = set(store.vectors().ids.tolist()) - before
        assert new_ids and min(new_ids) > removed_max
    finally:
        store.close()
