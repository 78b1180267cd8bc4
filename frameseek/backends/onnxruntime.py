"""onnxruntime: fp32 on the CPU (the fallback that always works, and the reference every other
back end is held against) and on a CUDA GPU where onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from frameseek.backends.base import BackendError, BackendSpec

CUDA_PROVIDER = "CUDAExecutionProvider"
# TF32 convolutions (onnxruntime's default on Ampere and later) keep 10 bits of mantissa: not the
# fp32 this back end is named for.
CUDA_OPTIONS = {"use_tf32": "0"}
# An NVIDIA driver shows itself here (Linux; WSL's GPU bridge), before any CUDA library loads.
NVIDIA_DRIVER = (Path("/proc/driver/nvidia/version"), Path("/dev/dxg"))


@lru_cache(maxsize=1)
def _onnxruntime() -> ModuleType:
    # Imported when first needed: a process that runs OpenVINO need not pay for it.
    import onnxruntime

    return onnxruntime


class OnnxRuntimeBackend:
    precision = "fp32"

    def __init__(self, model: Path, threads: int, device: str) -> None:
        self.device = device
        self.name = "onnxruntime-fp32" if device == "CPU" else "onnxruntime-cuda"
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device == "CUDA":
            providers = [(CUDA_PROVIDER, CUDA_OPTIONS), *providers]
        self._session = ort.InferenceSession(str(model), options, providers=providers)
        # Without a usable GPU onnxruntime quietly runs on the CPU instead; that is not this
        # back end.
        if device == "CUDA" and CUDA_PROVIDER not in self._session.get_providers():
            raise BackendError("onnxruntime could not start its CUDA provider")
        self._input = self._session.get_inputs()[0].name

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: inputs})[0]


def _no_cuda() -> str | None:
    # The NVIDIA driver's files first: without them no CUDA runs, and onnxruntime need not load.
    if not any(path.exists() for path in NVIDIA_DRIVER):
        return "no NVIDIA driver (no " + " or ".join(map(str, NVIDIA_DRIVER)) + ")"
    if CUDA_PROVIDER not in _onnxruntime().get_available_providers():
        return "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    return None


CPU = BackendSpec("onnxruntime-fp32", "fp32", "CPU", unavailable=lambda: None,
                  load=lambda model, threads: OnnxRuntimeBackend(model, threads, "CPU"))
CUDA = BackendSpec("onnxruntime-cuda", "fp32", "CUDA", unavailable=_no_cuda,
                   load=lambda model, threads: OnnxRuntimeBackend(model, threads, "CUDA"))
