"""onnxruntime: fp32 on the CPU (the fallback that always works, and the reference every other
back end is held against) and on a CUDA GPU where onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from frameseek.backends.base import BackendError, BackendSpec

CUDA_PROVIDER = "CUDAExecutionProvider"
# TF32 convolutions (onnxruntime's default on Ampere and later) keep 10 bits of mantissa: not the
# fp32 this back end is named for.
CUDA_OPTIONS = {"use_tf32": "0"}


class OnnxRuntimeBackend:
    precision = "fp32"

    def __init__(self, model: bytes, threads: int, device: str) -> None:
        self.device = device
        self.name = "onnxruntime-fp32" if device == "CPU" else "onnxruntime-cuda"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device == "CUDA":
            providers = [(CUDA_PROVIDER, CUDA_OPTIONS), *providers]
        self._session = ort.InferenceSession(model, options, providers=providers)
        # Without a usable GPU onnxruntime quietly runs on the CPU instead; that is not this
        # back end.
        if device == "CUDA" and CUDA_PROVIDER not in self._session.get_providers():
            raise BackendError("onnxruntime could not start its CUDA provider")
        self._input = self._session.get_inputs()[0].name

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: inputs})[0]


def _no_cuda() -> str | None:
    if CUDA_PROVIDER not in ort.get_available_providers():
        return "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    return None


CPU = BackendSpec("onnxruntime-fp32", "fp32", "CPU", unavailable=lambda: None,
                  load=lambda model, threads: OnnxRuntimeBackend(model, threads, "CPU"))
CUDA = BackendSpec("onnxruntime-cuda", "fp32", "CUDA", unavailable=_no_cuda,
                   load=lambda model, threads: OnnxRuntimeBackend(model, threads, "CUDA"))
