"""Coarse-to-fine search on the real sample index: every coarse stage against exact search."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from frameseek.search import DEFAULT_NPROBE, FLAT_LIMIT, CoarseToFine, auto_coarse
from frameseek.store.base import Vectors
from frameseek.store.embedded import EmbeddedStore


@pytest.fixture(scope="module")
def vectors(sample_index: Path) -> Vectors:
    store = EmbeddedStore(sample_index)
    try:
        return store.vectors()
    finally:
        store.close()


def assert_exact_ranking(hits: list, vectors: Vectors, descriptor: np.ndarray, top: int
                         ) -> None:
    """The hits are exact search's top `top`: each hit's distance is its true distance, and the
    distances are the `top` smallest, in order. Ids are not compared by position: two key frames
    at (nearly) the same distance may come in either order, depending on the CPU's rounding."""
    gaps = vectors.descriptors.astype(np.float64) - descriptor
    true = np.sqrt((gaps * gaps).sum(axis=1))
    row = {int(i): r for r, i in enumerate(vectors.ids)}
    assert len(hits) == min(top, len(vectors))
    np.testing.assert_allclose([h.distance for h in hits], np.sort(true)[:top], rtol=1e-4)
    np.testing.assert_allclose([h.distance for h in hits],
                               [true[row[h.keyframe_id]] for h in hits], rtol=1e-4)
    assert len({h.keyframe_id for h in hits}) == len(hits)


def queries(vectors: Vectors) -> tuple[np.ndarray, np.ndarray]:
    """Each key frame's own vectors, nudged so that no query is exactly a stored vector."""
    rng = np.random.default_rng(1)
    descriptors = vectors.descriptors.astype(np.float32)
    descriptors = descriptors + rng.normal(0, 0.05, descriptors.shape).astype(np.float32)
    return vectors.index.copy(), descriptors


def test_auto_is_flat_for_small_and_cells_over_the_descriptors_for_large() -> None:
    assert auto_coarse(FLAT_LIMIT - 1) == "Flat"
    assert auto_coarse(1_000_000) == "IVF1000,SQfp16@512"


@pytest.mark.parametrize("coarse", ["auto", "Flat", "IVF4,Flat", "IVF4,SQfp16@512"])
def test_every_coarse_stage_finds_the_exact_neighbours_when_it_looks_everywhere(
    vectors: Vectors, coarse: str
) -> None:
    searcher = CoarseToFine(vectors, coarse, candidates=len(vectors), nprobe=4)
    index, descriptors = queries(vectors)
    for q in range(0, len(vectors), 7):
        hits = searcher.search(index[q], descriptors[q], top=12)
        assert_exact_ranking(hits, vectors, descriptors[q], 12)


def test_batched_search_answers_as_one_query_at_a_time(vectors: Vectors) -> None:
    searcher = CoarseToFine(vectors, "Flat", candidates=20)
    index, descriptors = queries(vectors)
    batched = searcher.search_batch(index, descriptors, top=5)
    single = [searcher.search(index[q], descriptors[q], top=5) for q in range(len(index))]
    # Distances, not ids: batched and single searches may round differently, so two key frames
    # at the same distance may swap.
    np.testing.assert_allclose([[h.distance for h in hits] for hits in batched],
                               [[h.distance for h in hits] for hits in single], rtol=1e-5)


def test_few_candidates_rank_only_what_the_coarse_stage_returned(vectors: Vectors) -> None:
    searcher = CoarseToFine(vectors, "Flat", candidates=3)
    index, descriptors = queries(vectors)
    hits = searcher.search(index[0], descriptors[0], top=12)
    assert len(hits) == 12  # never fewer than `top` candidates
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_an_ivf_stage_visits_default_nprobe_cells_unless_told_otherwise(vectors: Vectors
                                                                          ) -> None:
    assert CoarseToFine(vectors, "IVF4,SQfp16@512").coarse.nprobe == DEFAULT_NPROBE
    assert CoarseToFine(vectors, "IVF4,SQfp16@512", nprobe=2).coarse.nprobe == 2


def test_cells_holding_fewer_than_top_give_fewer_hits_never_padding(vectors: Vectors) -> None:
    """FAISS pads with -1 when the visited cells hold fewer than `top` key frames: those rows
    must not turn into hits (nor into the key frame at row -1); the rest is the visited cell,
    ranked exactly."""
    searcher = CoarseToFine(vectors, "IVF4,SQfp16@512", nprobe=1)
    ivf = searcher.coarse
    index, descriptors = queries(vectors)
    hits = searcher.search_batch(index[:5], descriptors[:5], top=len(vectors))
    for q, query_hits in enumerate(hits):
        cell = int(ivf.quantizer.search(descriptors[q : q + 1], 1)[1][0, 0])
        rows = faiss.rev_swig_ptr(ivf.invlists.get_ids(cell), ivf.invlists.list_size(cell))
        cell_only = Vectors(vectors.ids[rows], vectors.index[rows], vectors.descriptors[rows])
        assert len(query_hits) == len(rows) < len(vectors)
        assert_exact_ranking(query_hits, cell_only, descriptors[q], len(rows))
        assert all(type(h.keyframe_id) is int and type(h.distance) is float for h in query_hits)


def test_empty_collection_answers_nothing() -> None:
    empty = Vectors(np.zeros(0, np.int64), np.zeros((0, 64), np.float32),
                    np.zeros((0, 512), np.float16))
    searcher = CoarseToFine(empty)
    assert searcher.search(np.zeros(64, np.float32), np.zeros(512, np.float32)) == []
