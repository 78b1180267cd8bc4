"""OpenVINO on the CPU, in fp32 or bf16, the precision always set explicitly: OpenVINO's default
("inference precision" chosen per CPU) would make the same index's queries differ between
machines without saying so.

bf16 runs natively on CPUs with AMX (several times fp32's speed, issue 15) or AVX512-BF16 (only
dot products: faster on some CPUs, not on others). Automatic selection takes it on AMX, and on
AVX512-BF16 when a short measurement, made once per CPU, OpenVINO version and thread count and
kept in the cache directory, finds it clearly faster than fp32.

The model is compiled once with a dynamic shape (batch, height and width): measured as fast as a
model reshaped to each input size, and one compile serves every size. OpenVINO's compiled-model
cache (`CACHE_DIR`) is not used: on the CPU it did not shorten start-up (docs/performance.md).
"""

from __future__ import annotations

import json
import threading
import time
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from frameseek.backends.base import BackendError, BackendSpec
from frameseek.backends.hardware import cache_dir, cpu_flags, cpu_model, native_bf16

if TYPE_CHECKING:
    import openvino

DEVICE = "CPU"
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}
# bf16 must beat fp32 by this factor to be chosen on AVX512-BF16: a near tie is not worth
# bf16's coarser floats.
BF16_MIN_SPEED_UP = 1.25
PROBE_SIZE = 112  # px: bf16's gain here is its gain at 224 px (measured), for a quarter the time
PROBE_ROUNDS = 5
PROBE_FILE = "openvino-bf16-probe.json"


@lru_cache(maxsize=1)
def _openvino() -> ModuleType:
    # Imported when first needed: it takes a while, and a frameseek without it still runs.
    import openvino

    return openvino


@lru_cache(maxsize=1)
def _core() -> openvino.Core:
    return _openvino().Core()


class OpenVINOBackend:
    device = DEVICE

    def __init__(self, model: Path, threads: int, precision: str) -> None:
        self.precision = precision
        self.name = f"openvino-{precision}"
        core = _core()
        # From the file, not from bytes in memory: OpenVINO then maps the weights instead of
        # parsing a copy, a second less of start-up.
        self._compiled = core.compile_model(str(model), DEVICE, {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",  # one forward at a time, on every thread
        })
        # A hint is a request: what OpenVINO compiled is read back, and only that is used.
        compiled = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if compiled != OPENVINO_PRECISION[precision]:
            raise BackendError(f"OpenVINO compiled the model in {compiled}, not {precision}")
        # An infer request holds its buffers and is not safe to share between threads.
        self._requests = threading.local()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        return request.infer({0: np.ascontiguousarray(inputs)})[0]  # a copy, not the buffer


def _no_openvino() -> str | None:
    try:
        _openvino()
    except ImportError:
        return "openvino is not installed (pip install openvino)"
    return None


def _no_bf16() -> str | None:
    missing = _no_openvino()
    if missing:
        return missing
    if native_bf16(cpu_flags()) is None:
        return f"{cpu_model()} has no bf16 instructions (amx_bf16 or avx512_bf16)"
    if "BF16" not in _core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"):
        return f"OpenVINO {_openvino().__version__} does not offer bf16 on {cpu_model()}"
    return None


def bf16_speed_up(model: Path, threads: int) -> float:
    """fp32's time over bf16's for one forward at PROBE_SIZE, best of PROBE_ROUNDS each. The two
    take turns, so that other processes' load weighs on both alike."""
    image = np.zeros((1, PROBE_SIZE, PROBE_SIZE, 3), dtype=np.float32)
    contenders = {p: OpenVINOBackend(model, threads, p) for p in ("fp32", "bf16")}
    best = dict.fromkeys(contenders, float("inf"))
    for backend in contenders.values():
        backend(image)  # the first forward allocates
    for _ in range(PROBE_ROUNDS):
        for precision, backend in contenders.items():
            start = time.perf_counter()
            backend(image)
            best[precision] = min(best[precision], time.perf_counter() - start)
    return best["fp32"] / best["bf16"]


def _read_measurements(path: Path) -> dict:
    try:
        measured = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return measured if isinstance(measured, dict) else {}


def _bf16_preferred(model: Path, threads: int) -> bool:
    if native_bf16(cpu_flags()) == "amx":
        return True
    # The measurement is remembered per CPU, OpenVINO version and thread count: each start-up
    # would otherwise pay for two more compiles and a dozen forwards.
    key = f"{cpu_model()} | openvino {_openvino().__version__} | {threads} threads"
    path = cache_dir() / PROBE_FILE
    measured = _read_measurements(path)
    if not isinstance(measured.get(key), float):
        measured[key] = round(bf16_speed_up(model, threads), 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(measured, indent=1))
        except OSError:
            pass  # measured again next time
    return measured[key] >= BF16_MIN_SPEED_UP


FP32 = BackendSpec("openvino-fp32", "fp32", DEVICE, unavailable=_no_openvino,
                   load=lambda model, threads: OpenVINOBackend(model, threads, "fp32"))
BF16 = BackendSpec("openvino-bf16", "bf16", DEVICE, unavailable=_no_bf16,
                   load=lambda model, threads: OpenVINOBackend(model, threads, "bf16"),
                   preferred=_bf16_preferred)
