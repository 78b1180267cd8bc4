"""onnxruntime: the CPU back end any shape runs on, and the CUDA one only where it can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from frameseek.backends import onnxruntime as ort_backends
from frameseek.backends.onnxruntime import CUDA_PROVIDER, OnnxRuntimeBackend


def test_cpu_back_end_takes_any_batch_and_size(model: Path) -> None:
    backend = OnnxRuntimeBackend(model, 1, "CPU")
    assert (backend.name, backend.precision, backend.device) == ("onnxruntime-fp32", "fp32", "CPU")
    assert backend(np.zeros((2, 96, 160, 3), np.float32)).shape == (2, 512, 3, 5)


def test_cuda_is_unavailable_without_its_provider() -> None:
    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (tests/backends/test_agreement.py "
                    "holds it to the reference)")
    reason = ort_backends.CUDA.unavailable()
    assert reason is not None and ("onnxruntime-gpu" in reason or "no NVIDIA driver" in reason)


def test_cuda_without_a_driver_is_refused_before_onnxruntime_loads(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ort_backends, "NVIDIA_DRIVER", (tmp_path / "no-driver",))
    assert ort_backends.CUDA.unavailable() == f"no NVIDIA driver (no {tmp_path / 'no-driver'})"
