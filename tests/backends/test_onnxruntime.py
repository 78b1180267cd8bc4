"""onnxruntime: the CPU back end any shape runs on, and the CUDA one only where it can run."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from frameseek.backends import onnxruntime as ort_backends
from frameseek.backends.onnxruntime import CUDA_PROVIDER, OnnxRuntimeBackend


def test_cpu_back_end_takes_any_batch_and_size(model: bytes) -> None:
    backend = OnnxRuntimeBackend(model, 1, "CPU")
    assert (backend.name, backend.precision, backend.device) == ("onnxruntime-fp32", "fp32", "CPU")
    assert backend(np.zeros((2, 96, 160, 3), np.float32)).shape == (2, 512, 3, 5)


def test_cuda_is_unavailable_without_its_provider() -> None:
    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (tests/backends/test_agreement.py "
                    "holds it to the reference)")
    assert "onnxruntime-gpu" in ort_backends.CUDA.unavailable()
