"""Any back end may query and add to any index: an index built on onnxruntime fp32 answers the
same on every back end available here, and records which back ends computed its vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from frameseek.backends import BACKENDS, ENV
from frameseek.index import INFERENCE_KEY, Index
from tests.conftest import frame_at

CARPHONE = Path(__file__).parents[1] / "data" / "carphone.mp4"
AVAILABLE = [spec.name for spec in BACKENDS if spec.unavailable() is None]


def test_an_onnxruntime_index_answers_alike_on_every_back_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "onnxruntime-fp32")
    directory = tmp_path / "index"
    with Index.create(directory) as index:
        index.add([CARPHONE])
        assert index.info()[INFERENCE_KEY] == ["onnxruntime-fp32"]
    queries = [frame_at(CARPHONE, number)[0] for number in (15, 60, 105)]
    answers = {}
    for name in AVAILABLE:
        monkeypatch.setenv(ENV, name)
        with Index.open(directory) as index:  # no ConfigMismatch: the back end is no part of it
            assert index.extractor.backbone.backend.name == name
            answers[name] = [index.search(query, top=3, refine=False)[0] for query in queries]
    for name, best in answers.items():
        for got, want in zip(best, answers["onnxruntime-fp32"], strict=True):
            assert got.keyframe_id == want.keyframe_id, name
            assert got.distance == pytest.approx(want.distance, abs=0.01), name


def test_a_video_added_on_another_back_end_is_recorded_beside_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = next((name for name in AVAILABLE if name != "onnxruntime-fp32"), None)
    if other is None:
        pytest.skip("only onnxruntime-fp32 runs here")
    monkeypatch.setenv(ENV, "onnxruntime-fp32")
    directory = tmp_path / "index"
    with Index.create(directory) as index:
        index.add([CARPHONE])
    shutil.copy(CARPHONE, tmp_path / "carphone-again.mp4")
    monkeypatch.setenv(ENV, other)
    with Index.open(directory) as index:
        index.add([tmp_path / "carphone-again.mp4"])
    with Index.open(directory) as index:
        assert index.info()[INFERENCE_KEY] == ["onnxruntime-fp32", other]
        assert index.store.get_config()[INFERENCE_KEY] == ["onnxruntime-fp32", other]
