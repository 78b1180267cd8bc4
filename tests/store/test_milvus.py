"""Milvus Lite against the embedded store: the same video gives the same key frames, vectors and
search results; the sample index gives the same top 12, distances and refined moments; at 100k
key frames the default HNSW keeps recall@12 ≥ 0.99; add, replace and remove behave the same; a
half-written video or track stays invisible; a store that cannot serve says so on one line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from frameseek.bench.search import real_descriptors, synthesize
from frameseek.bench.stores import exact, video
from frameseek.cli import main
from frameseek.index import Index
from frameseek.keyframes import KeyFrame
from frameseek.localize import Track
from frameseek.store.base import KeyFrameRecord, StoreError, Vectors
from frameseek.store.milvus import MilvusStore
from frameseek.store.uri import open_store
from tests.conftest import frame_at

QUERY_FRAME = 120  # a frame of bikes.mp4 that is not itself a key frame


def lite_uri(directory: Path) -> str:
    return f"milvus-lite://{directory / 'frameseek.db'}"


def keyframe_table(index: Index) -> list[tuple]:
    """Every key frame as (video, frame, time, segments), in video then time order."""
    ids = [int(i) for i in index.store.vectors().ids]
    rows = [(k.video, k.frame, round(k.time, 4), k.segments) for k in index.store.keyframes(ids)]
    return sorted(rows)


def descriptors_by_frame(index: Index) -> dict[tuple[str, int], np.ndarray]:
    vectors = index.store.vectors()
    records = index.store.keyframes([int(i) for i in vectors.ids])
    return {(r.video, r.frame): row for r, row in zip(records, vectors.descriptors, strict=True)}


def top_results(index: Index, query: np.ndarray, top: int = 5) -> list[tuple[str, int, float]]:
    return [(m.video, m.frame, m.distance)
            for m in index.search(query, top=top, candidates=20, refine=False)]


def assert_same_index(actual: Index, expected: Index, query: np.ndarray) -> None:
    assert keyframe_table(actual) == keyframe_table(expected)
    got, want = descriptors_by_frame(actual), descriptors_by_frame(expected)
    for key, descriptor in want.items():
        np.testing.assert_allclose(got[key], descriptor, rtol=1e-2, atol=1e-2)
    got_top, want_top = top_results(actual, query), top_results(expected, query)
    assert [(v, f) for v, f, _ in got_top] == [(v, f) for v, f, _ in want_top]
    assert [d for *_, d in got_top] == pytest.approx([d for *_, d in want_top], rel=5e-3)


@pytest.fixture(scope="session")
def bikes(sample_videos: Path) -> Path:
    return sample_videos / "bikes.mp4"


@pytest.fixture(scope="session")
def query(bikes: Path) -> np.ndarray:
    return frame_at(bikes, QUERY_FRAME)[0]


@pytest.fixture(scope="session")
def embedded_bikes(sample_index: Path, sample_videos: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the shared sample index, copied, with the bunny removed (incrementally)."""
    directory = tmp_path_factory.mktemp("embedded") / "index"
    shutil.copytree(sample_index, directory)
    with Index.open(directory) as index:
        assert index.remove(sample_videos / "big_buck_bunny_60s.mp4")
    return directory


@pytest.fixture(scope="session")
def lite_bikes(bikes: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """bikes.mp4 indexed into Milvus Lite through the plain (local) path. Read only."""
    uri = lite_uri(tmp_path_factory.mktemp("lite"))
    with Index.create(uri) as index:
        report = index.add([bikes])
    assert [v.path for v in report.added] == [str(bikes)], report.skipped
    return uri


def test_uri_selects_the_store(tmp_path: Path, embedded_bikes: Path) -> None:
    with Index.open(embedded_bikes) as index:
        assert index.directory == embedded_bikes
    with Index.create(lite_uri(tmp_path)) as index:
        assert isinstance(index.store, MilvusStore)
        assert index.directory is None
        assert index.info()["index"] == lite_uri(tmp_path)


@pytest.mark.parametrize("uri, complaint", [
    ("milvus-lite:///tmp/frameseek-not-a-db.txt", "must end in .db"),
    ("milvus:///frameseek", "expected milvus://HOST:PORT/COLLECTION"),
])
def test_malformed_uris_are_refused(uri: str, complaint: str) -> None:
    with pytest.raises(StoreError, match=complaint):
        open_store(uri)


def test_opening_a_missing_collection_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no frameseek index"):
        open_store(lite_uri(tmp_path))


def test_lite_holds_what_the_embedded_store_holds(lite_bikes: str, embedded_bikes: Path,
                                                  query: np.ndarray) -> None:
    with Index.open(lite_bikes) as lite, Index.open(embedded_bikes) as embedded:
        assert_same_index(lite, embedded, query)
        [want] = embedded.videos()
        [got] = lite.videos()
        assert (got.path, got.content_id, got.frames, got.keyframes, got.duration) == (
            want.path, want.content_id, want.frames, want.keyframes, want.duration)
        some_id = int(lite.store.vectors().ids[0])
        assert lite.store.thumbnail(some_id)[:2] == b"\xff\xd8"  # a JPEG, back from base64


def test_a_key_frame_s_own_picture_finds_it_first(lite_bikes: str, bikes: Path) -> None:
    with Index.open(lite_bikes) as index:
        table = keyframe_table(index)
        _, frame, time, _ = table[len(table) // 2]
        [best] = index.search(frame_at(bikes, frame)[0], top=1, refine=False)
    assert (best.video, best.frame, best.time) == (str(bikes), frame, pytest.approx(time))


def test_readding_an_unchanged_video_is_skipped(lite_bikes: str, bikes: Path) -> None:
    with Index.open(lite_bikes) as index:
        report = index.add([bikes])
    assert report.unchanged == [str(bikes)] and not report.added


def _copy_lite(uri: str, tmp_path: Path) -> str:
    source = Path(uri.removeprefix("milvus-lite://"))
    shutil.copytree(source, tmp_path / source.name)  # Milvus Lite 3 keeps a directory
    return lite_uri(tmp_path)


def test_replace_and_remove_leave_no_trace(lite_bikes: str, tmp_path: Path,
                                           query: np.ndarray) -> None:
    uri = _copy_lite(lite_bikes, tmp_path)
    with Index.open(uri) as index:
        store = index.store
        [video] = index.videos()
        vectors = store.vectors()
        records = store.keyframes([int(i) for i in vectors.ids])
        kept = [_keyframe(r, vectors, row) for row, r in enumerate(records)][:3]
        replaced = store.add_video(video, kept)
        assert replaced.keyframes == 3 and replaced.id != video.id
        assert [k.frame for k in store.keyframes([int(i) for i in store.vectors().ids])] == [
            k.frame for k in kept]
        assert {m.frame for m in index.search(query, top=10, refine=False)} <= {
            k.frame for k in kept}
        assert index.remove(video.path)
        assert not index.remove(video.path)
        assert index.videos() == [] and len(store.vectors()) == 0
        assert index.search(query, refine=False) == []


def test_key_frames_of_an_unfinished_write_are_invisible(lite_bikes: str, tmp_path: Path,
                                                         query: np.ndarray) -> None:
    """A writer that died after inserting key frames but before publishing the video row."""
    uri = _copy_lite(lite_bikes, tmp_path)
    with Index.open(uri) as index:
        store: MilvusStore = index.store  # type: ignore[assignment]
        before = top_results(index, query)
        vectors = store.vectors()
        [video] = index.videos()
        orphans = [{"video": video.path, "video_id": video.id ^ 1, "frame": 999_000 + row,
                    "time": 0.0, "segments": "[]",
                    "descriptor": vectors.descriptors[row].astype(np.float32), "thumbnail": ""}
                   for row in range(len(vectors))]
        store._client.insert(store.keyframes_collection, orphans)
        assert len(store.vectors()) == len(vectors)
        assert top_results(index, query) == before  # the exact duplicates never surface


def test_cli_searches_and_removes_through_a_store_uri(lite_bikes: str, bikes: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    uri = _copy_lite(lite_bikes, tmp_path)
    assert main(["info", "--store", uri]) == 0
    assert "1 videos" in capsys.readouterr().out
    query = Path(__file__).resolve().parents[2] / "samples" / "query.jpg"
    assert main(["search", str(query), "--store", uri, "--top", "1", "--json"]) == 0
    assert "bikes.mp4" in capsys.readouterr().out
    assert main(["remove", str(bikes), "--store", uri]) == 0
    assert main(["info", "--store", uri]) == 0
    assert "0 videos" in capsys.readouterr().out


def _keyframe(record: KeyFrameRecord, vectors: Vectors, row: int) -> KeyFrame:
    return KeyFrame(record.frame, record.time, vectors.descriptors[row], vectors.index[row],
                    record.segments, b"")


def copy_into(uri: str, source: Index) -> Index:
    """A Milvus Lite index holding exactly what `source` holds: its videos, key frames (vectors,
    thumbnails) and tracks, written through the store as indexing writes them."""
    target = Index.create(uri, source.config)
    vectors = source.store.vectors()
    records = source.store.keyframes([int(i) for i in vectors.ids])
    for record in source.videos():
        rows = [row for row, r in enumerate(records) if r.video == record.path]
        keyframes = [KeyFrame(records[row].frame, records[row].time, vectors.descriptors[row],
                              vectors.index[row], records[row].segments,
                              source.store.thumbnail(records[row].id) or b"")
                     for row in rows]
        target.tracks.put(record.path, record.content_id,
                          source.tracks.get(record.path, record.content_id))
        target.store.add_video(record, keyframes)
    return target


@pytest.fixture(scope="module")
def lite_samples(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = lite_uri(tmp_path_factory.mktemp("lite-samples"))
    with Index.open(sample_index) as embedded:
        copy_into(uri, embedded).close()
    return uri


DISTANCE_RTOL = 1e-4  # float16 descriptors, float32 arithmetic in either store


def assert_same_top_12(uri: str, sample_index: Path) -> None:
    """Every key frame of the sample index, moved by noise, as a query: the same 12 ids in the
    same order at the same distances from the store at `uri` as from the embedded one (the
    sample index is smaller than the candidates, so both are exact). Two key frames whose
    distances tie within the stores' float rounding (relative 1e-6 happens among near-identical
    key frames) may come in either order, or either be the 12th."""
    rng = np.random.default_rng(0)
    with Index.open(uri) as milvus, Index.open(sample_index) as embedded:
        vectors = embedded.store.vectors()
        milvus_ids = {(r.video, r.frame): r.id for r in milvus.store.keyframes(
            [int(i) for i in milvus.store.vectors().ids])}
        assert len(milvus_ids) == len(vectors) > 12
        for row in range(len(vectors)):
            noise = rng.normal(scale=0.02, size=vectors.descriptors.shape[1])
            descriptor = (vectors.descriptors[row] + noise).astype(np.float32)
            ranked = embedded.search_features(vectors.index[row], descriptor, top=13)
            got = milvus.search_features(vectors.index[row], descriptor)
            want = ranked[:12]
            np.testing.assert_allclose([m.distance for m in got], [m.distance for m in want],
                                       rtol=DISTANCE_RTOL)
            for rank, (w, g) in enumerate(zip(want, got, strict=True)):
                if milvus_ids[(w.video, w.frame)] != g.keyframe_id:
                    neighbours = ranked[max(0, rank - 1):rank] + ranked[rank + 1:rank + 2]
                    assert any(math.isclose(n.distance, w.distance, rel_tol=DISTANCE_RTOL)
                               for n in neighbours), f"query {row}, rank {rank + 1}: not a tie"


def test_the_sample_index_gives_the_embedded_top_12(lite_samples: str, sample_index: Path
                                                    ) -> None:
    assert_same_top_12(lite_samples, sample_index)


def test_refinement_reads_the_track_from_milvus(lite_samples: str, sample_index: Path,
                                                sample_videos: Path) -> None:
    """samples/query.jpg refined to the same moment on both stores, with the videos gone: the
    track comes from the store, nothing is decoded."""
    query = Path(__file__).resolve().parents[2] / "samples" / "query.jpg"
    with Index.open(lite_samples) as lite, Index.open(sample_index) as embedded:
        want = embedded.search(query)
        hidden = sample_videos.with_name(sample_videos.name + "-away")
        sample_videos.rename(hidden)
        try:
            got = lite.search(query)
        finally:
            hidden.rename(sample_videos)
    assert got[0].refined
    assert [(m.video, m.frame, m.time, m.refined) for m in got] == [
        (m.video, m.frame, m.time, m.refined) for m in want]


def test_100k_key_frames_keep_recall_at_12(tmp_path: Path, sample_index: Path) -> None:
    """The default URI (HNSW) at 100,000 synthetic key frames drawn around the sample index's
    descriptors: recall@12 ≥ 0.99 against exact search over the same float16 descriptors."""
    collection = synthesize(real_descriptors(sample_index)[0], 100_000, 50)
    truth = exact(collection)
    with Index.create(lite_uri(tmp_path)) as index, index._writing():
        for first in range(0, 100_000, 10_000):
            part = collection.vectors.descriptors[first : first + 10_000]
            index.put(video(first, part, np.random.default_rng(first), thumbnail_bytes=0))
    with Index.open(lite_uri(tmp_path)) as index:
        found = [{m.frame for m in index.search_features(coarse, query)}
                 for coarse, query in zip(collection.query_index, collection.queries,
                                          strict=True)]
    recall = np.mean([len(f & set(t.tolist())) / 12 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.99


def test_a_track_missing_a_chunk_or_stale_reads_as_absent(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    track = Track(np.arange(2_000, dtype=np.int32), np.arange(2_000) / 8.0,
                  rng.integers(0, 255, (2_000, 18, 32), dtype=np.uint8))
    with Index.create(lite_uri(tmp_path)) as index:
        store: MilvusStore = index.store  # type: ignore[assignment]
        index.tracks.put("a.mp4", "one", track)
        assert index.tracks.get("a.mp4", "other") is None
        with Index.open(lite_uri(tmp_path)) as again:  # nothing cached there
            got = again.tracks.get("a.mp4", "one")
            assert got is not None and np.array_equal(got.signatures, track.signatures)
        chunks = store._client.query(store.tracks_collection, filter='path == "a.mp4"',
                                     output_fields=["key", "chunks"])
        assert len(chunks) == chunks[0]["chunks"] > 1
        store._client.delete(store.tracks_collection, ids=[chunks[-1]["key"]])
    with Index.open(lite_uri(tmp_path)) as again:
        assert again.tracks.get("a.mp4", "one") is None


@pytest.mark.parametrize("query, complaint", [
    ("index=ANNOY", "unknown index 'ANNOY'"),
    ("ef=0", "ef must be a whole number above 0"),
    ("vectors=float16", "Float16Vector which MilvusLite does not support"),
])
def test_a_setting_the_store_cannot_serve_is_one_line(tmp_path: Path, query: str,
                                                      complaint: str,
                                                      capfd: pytest.CaptureFixture) -> None:
    """One line on the real stderr (capfd): no traceback logged by pymilvus either."""
    uri = f"{lite_uri(tmp_path)}?{query}"
    assert main(["index", str(tmp_path / "none.mp4"), "--store", uri]) == 1
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"frameseek: {uri}") and complaint in line


def test_an_unreachable_server_is_one_line(capfd: pytest.CaptureFixture) -> None:
    uri = "milvus://127.0.0.1:9/frameseek"  # the discard port: nothing listens
    assert main(["info", "--store", uri]) == 1
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"frameseek: {uri}: ") and "127.0.0.1:9" in line
