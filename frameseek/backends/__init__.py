"""Inference back ends: the same VGG16 pool5 maps computed by onnxruntime (CPU, CUDA) or
OpenVINO (CPU fp32, bf16), chosen for the hardware at hand (frameseek/backends/selection.py)."""

from frameseek.backends.base import (
    MIN_COSINE,
    Backend,
    BackendError,
    BackendSpec,
    Reference,
    UnknownBackend,
    describe,
    pool5_cosine,
    summary,
)
from frameseek.backends.hardware import cpu_model, usable_cpus
from frameseek.backends.selection import (
    AUTO,
    BACKENDS,
    ENV,
    add_option,
    names,
    requested,
    select,
)

__all__ = [
    "AUTO", "BACKENDS", "ENV", "MIN_COSINE", "Backend", "BackendError", "BackendSpec", "Reference",
    "UnknownBackend", "add_option", "cpu_model", "describe", "names", "pool5_cosine",
    "requested", "select", "summary", "usable_cpus",
]
