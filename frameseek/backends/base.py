"""What every inference back end is: the VGG16 graph cut at pool5 (an ONNX file from
frameseek/features.py, which owns the cut and the preprocessing), run on one device at one
precision. Back ends differ in speed and in the last bits of their floats, never in meaning: each
is held against onnxruntime fp32's maps (`Reference`) at start-up and in the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from frameseek.backends.hardware import cpu_model

# The least cosine between a back end's pool5 maps and onnxruntime fp32's, per image, for it to
# be used: bf16 keeps 8 bits of mantissa, so its maps agree less closely, still far closer than
# any two different images do (OpenVINO bf16 on AVX512-BF16: ≥ 0.9998 on the tests' references
# and on video frames; docs/performance.md). fp32 back ends differ only in summation order.
MIN_COSINE = {"fp32": 0.9999, "bf16": 0.999}


class Backend(Protocol):
    """A loaded back end: preprocessed images in, pool5 maps out."""

    name: str  # what --backend and FRAMESEEK_BACKEND call it, e.g. "openvino-bf16"
    precision: str  # a key of MIN_COSINE
    device: str  # "CPU" or "CUDA"

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32, preprocessed, any N, H and W → (N, 512, H/32, W/32) float32.
        Safe to call from several threads at once."""
        ...


class BackendError(RuntimeError):
    """No back end could run the model."""


class UnknownBackend(ValueError):
    """A back end name that frameseek does not have (a usage error at the command line)."""


def _always(model: Path, threads: int) -> bool:
    return True


@dataclass(frozen=True)
class BackendSpec:
    """A back end before loading: what it is, whether it can run here, and how to load it."""

    name: str
    precision: str
    device: str
    # Why it cannot run on this machine (a missing package, device or instruction set), or None.
    unavailable: Callable[[], str | None]
    # (the cut model's ONNX file, threads) → a loaded back end; raises if it cannot compile.
    load: Callable[[bytes, int], Backend]
    # Whether automatic selection takes it when it is available: a back end that is only faster
    # on some hardware measures here, given the model and threads.
    preferred: Callable[[bytes, int], bool] = _always


def pool5_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, the cosine of two stacks of pool5 maps (or of descriptors), flattened."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class Reference:
    """Preprocessed inputs and the pool5 maps onnxruntime fp32 computed for them."""

    inputs: np.ndarray  # (N, H, W, 3) float32
    pool5: np.ndarray  # (N, 512, H/32, W/32) float32

    def agreement(self, backend: Backend) -> float:
        """The worst image's cosine between the back end's maps and the reference's."""
        return float(pool5_cosine(backend(self.inputs), self.pool5).min())


def describe(backend: Backend) -> dict[str, str]:
    """What `info` and the benchmarks print beside their figures."""
    return {"name": backend.name, "precision": backend.precision, "device": backend.device,
            "cpu": cpu_model()}


def summary(backend: Backend) -> str:
    return f"{backend.name} ({backend.precision} on {backend.device}; CPU {cpu_model()})"
