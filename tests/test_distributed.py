"""Ray indexing on a local two-CPU Ray: the same key frames and results as the plain path, into
the embedded store and into Milvus Lite, with one CNN actor whose forwards the decode tasks share;
crashed tasks are retried, failed ones reported, and the other videos still written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import ray

from frameseek.backends import Backend
from frameseek.distributed import Embedder, Outcome, analyse_task, index_with_ray
from frameseek.features import VGG16Pool5, preprocess
from frameseek.index import Index, IndexConfig
from tests.store.test_milvus import (  # the shared fixtures and comparisons
    assert_same_index,
    bikes,
    embedded_bikes,
    lite_uri,
    query,
)

__all__ = ["bikes", "embedded_bikes", "query"]  # fixtures, imported for pytest to find

CRASH_ONCE = "crash-once.mp4"
ALWAYS_FAILS = "always-fails.mp4"


def flaky_task(path: str, known: str | None, config: IndexConfig, backend: Backend) -> Outcome:
    """The real task, behind two injected faults: the worker process dies the first time it is
    given CRASH_ONCE, and ALWAYS_FAILS raises on every attempt."""
    name = Path(path).name
    marker = Path(path + ".crashed")
    if name == CRASH_ONCE and not marker.exists():
        marker.touch()
        os._exit(1)
    if name == ALWAYS_FAILS:
        raise RuntimeError("injected failure")
    return analyse_task(path, known, config, backend)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error",
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(bikes: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """bikes.mp4, plus two files that are not video: one crashes its worker once, one always
    fails."""
    folder = tmp_path_factory.mktemp("ray-faults")
    for name in (CRASH_ONCE, ALWAYS_FAILS):
        (folder / name).write_bytes(b"not a video at all" * 100)
    return [bikes, folder / CRASH_ONCE, folder / ALWAYS_FAILS]


def test_ray_into_the_embedded_store_matches_the_plain_path(
        local_ray, videos: list[Path], embedded_bikes: Path, tmp_path: Path,
        query: np.ndarray) -> None:
    finished: list[tuple[str, str | None]] = []
    with Index.create(tmp_path / "index") as index:
        report = index_with_ray(index, videos, max_retries=1, task=flaky_task,
                                on_done=lambda path, _, reason: finished.append((path.name,
                                                                                   reason)))
    bikes, crash_once, always_fails = (str(v) for v in videos)
    assert [v.path for v in report.added] == [bikes]
    assert set(report.skipped) == {crash_once, always_fails}
    assert "injected failure" in report.skipped[always_fails]
    assert "failed 2 times" in report.skipped[always_fails]
    # Retried after the crash, then skipped for the right reason: it is not a video.
    assert Path(crash_once + ".crashed").exists()
    assert "failed" not in report.skipped[crash_once]
    assert sorted(name for name, _ in finished) == sorted(v.name for v in videos)

    with Index.open(tmp_path / "index") as ray_index, Index.open(embedded_bikes) as reference:
        assert_same_index(ray_index, reference, query)


def test_ray_into_milvus_lite_matches_the_plain_path(
        local_ray, bikes: Path, embedded_bikes: Path, tmp_path: Path,
        query: np.ndarray) -> None:
    with Index.create(lite_uri(tmp_path)) as index:
        report = index_with_ray(index, [bikes])
        assert [v.path for v in report.added] == [str(bikes)]
        again = index_with_ray(index, [bikes])
        assert again.unchanged == [str(bikes)] and not again.added
    with Index.open(lite_uri(tmp_path)) as lite, Index.open(embedded_bikes) as reference:
        assert_same_index(lite, reference, query)



def test_concurrent_forwards_share_batches(local_ray, query: np.ndarray) -> None:
    """Eight callers of one CNN actor, two images each, from threads as decode tasks call it:
    fewer forwards than calls, and every caller gets its own images' pool5 maps."""
    from concurrent.futures import ThreadPoolExecutor

    images = np.stack([np.roll(query[:224, :224], shift, axis=1) for shift in range(16)])
    inputs = preprocess(images)
    actor = ray.remote(Embedder).options(max_concurrency=16).remote(1)
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(lambda i: ray.get(actor.forward.remote(inputs[2 * i:2 * i + 2])),
                                range(8)))
    forwards, embedded = ray.get(actor.stats.remote())
    assert embedded == 16 and forwards < 8
    alone = VGG16Pool5(1, ray.get(actor.describe.remote())[0])(images)
    np.testing.assert_allclose(np.concatenate(outputs), alone, rtol=1e-3, atol=1e-3)
    ray.kill(actor)
