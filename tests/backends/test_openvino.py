"""OpenVINO: the precision asked for is the one compiled, one compiled model serves every input
size, threads may share it, and bf16's speed measurement is made once and kept."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from frameseek.backends import openvino as ov_backends
from frameseek.backends import pool5_cosine
from frameseek.backends.hardware import cpu_flags, native_bf16
from frameseek.backends.openvino import PROBE_FILE, OpenVINOBackend
from frameseek.features import preprocess
from tests.test_features import reference_inputs


def backend_or_skip(model: Path, precision: str) -> OpenVINOBackend:
    spec = ov_backends.BF16 if precision == "bf16" else ov_backends.FP32
    reason = spec.unavailable()
    if reason is not None:
        pytest.skip(f"{spec.name} cannot run here: {reason}")
    return OpenVINOBackend(model, 2, precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_precision_asked_for_is_the_one_compiled(model: Path, precision: str) -> None:
    backend = backend_or_skip(model, precision)
    compiled = backend._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert compiled == ov_backends.OPENVINO_PRECISION[precision]


def test_one_compiled_model_serves_every_batch_and_size(model: Path) -> None:
    backend = backend_or_skip(model, "fp32")
    assert backend(np.zeros((1, 96, 160, 3), np.float32)).shape == (1, 512, 3, 5)
    assert backend(np.zeros((3, 64, 64, 3), np.float32)).shape == (3, 512, 2, 2)
    assert backend(np.zeros((2, 224, 224, 3), np.float32)).shape == (2, 512, 7, 7)


def test_threads_may_share_one_backend(model: Path) -> None:
    backend = backend_or_skip(model, "fp32")
    images = preprocess(reference_inputs())
    alone = [backend(image[None]) for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: backend(images[i % 2][None]), range(8)))
    for i, maps in enumerate(together):
        assert (pool5_cosine(maps, alone[i % 2]) > 0.99999).all()


def test_bf16_speed_measurement_is_kept_per_cpu(model: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if native_bf16(cpu_flags()) != "avx512":
        pytest.skip("measured only on CPUs with AVX512-BF16 and no AMX (AMX: bf16 always, "
                    "no bf16 instructions: never)")
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path))
    preferred = ov_backends._bf16_preferred(model, 2)
    [(key, speed_up)] = json.loads((tmp_path / PROBE_FILE).read_text()).items()
    assert "| 2 threads" in key and preferred == (speed_up >= ov_backends.BF16_MIN_SPEED_UP)
    # Kept: a verdict written there is read back instead of measuring again.
    (tmp_path / PROBE_FILE).write_text(json.dumps({key: 1.0}))
    assert ov_backends._bf16_preferred(model, 2) is False
    (tmp_path / PROBE_FILE).write_text(json.dumps({key: 3.0}))
    assert ov_backends._bf16_preferred(model, 2) is True
    # A cache that cannot be written costs a measurement, nothing else.
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    assert ov_backends._bf16_preferred(model, 2) in (True, False)
