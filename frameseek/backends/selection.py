"""Which back end runs the model: the one asked for (`--backend`, $FRAMESEEK_BACKEND) or the
fastest one this machine offers, held against the fp32 reference before it is used.

Automatic selection tries, in this order, those that can run here: a CUDA GPU; OpenVINO bf16
where the CPU runs bf16 natively and faster; OpenVINO fp32 (as fast as onnxruntime's or faster,
docs/performance.md); onnxruntime fp32, which always works. A back end that cannot be loaded,
or whose maps disagree with the reference, gives way to the next one in that order, with one
warning line that says why.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from frameseek.backends import onnxruntime, openvino
from frameseek.backends.base import (
    MIN_COSINE,
    Backend,
    BackendError,
    BackendSpec,
    Reference,
    UnknownBackend,
)

AUTO = "auto"
ENV = "FRAMESEEK_BACKEND"
BACKENDS: tuple[BackendSpec, ...] = (onnxruntime.CUDA, openvino.BF16, openvino.FP32,
                                     onnxruntime.CPU)

log = logging.getLogger("frameseek")


def names(backends: Sequence[BackendSpec] = BACKENDS) -> list[str]:
    """Every name --backend accepts."""
    return [AUTO, *(spec.name for spec in backends)]


def requested(name: str | None = None, backends: Sequence[BackendSpec] = BACKENDS) -> str:
    """The back end asked for: `name`, else $FRAMESEEK_BACKEND, else auto."""
    name = name or os.environ.get(ENV) or AUTO
    if name not in names(backends):
        source = "" if name != os.environ.get(ENV) else f" (${ENV})"
        raise UnknownBackend(f"unknown back end {name!r}{source}: choose from "
                             f"{', '.join(names(backends))}")
    return name


def add_option(parser: argparse.ArgumentParser) -> None:
    """`--backend NAME` for the commands that run the CNN; the command line puts it into
    $FRAMESEEK_BACKEND, so that every extractor of the process and the workers it starts follow
    it."""
    parser.add_argument("--backend", choices=names(), metavar="NAME",
                        help=f"inference back end: {', '.join(names())} (default: ${ENV}, else "
                             "auto: the fastest this machine offers)")


def select(model: Path, threads: int, reference: Reference, name: str | None = None,
           backends: Sequence[BackendSpec] = BACKENDS) -> Backend:
    """Load the back end `name` asks for (see `requested`), or the first that works after it."""
    name = requested(name, backends)
    refused: list[str] = []
    for spec in _candidates(name, model, threads, backends, refused):
        try:
            backend = spec.load(model, threads)
            agreement = reference.agreement(backend)
        except Exception as exc:  # any runtime's own errors: the next back end may still work
            refused.append(f"{spec.name} failed to load ({_first_line(exc)})")
            continue
        if agreement < MIN_COSINE[spec.precision]:
            refused.append(f"{spec.name} disagrees with the fp32 reference (cosine "
                           f"{agreement:.6f} < {MIN_COSINE[spec.precision]})")
            continue
        if refused:
            log.warning("frameseek: %s; using %s", "; ".join(refused), spec.name)
        return backend
    raise BackendError("no inference back end works: " + "; ".join(refused))


def _candidates(name: str, model: Path, threads: int, backends: Sequence[BackendSpec],
                refused: list[str]) -> Iterator[BackendSpec]:
    """The back end asked for, then those after it in automatic order that can run here and are
    worth it; why one cannot run is added to `refused` where it was asked for by name."""
    start = 0
    if name != AUTO:
        asked = next(spec for spec in backends if spec.name == name)
        reason = asked.unavailable()
        if reason is None:
            yield asked
        else:
            refused.append(f"{name} is unavailable: {reason}")
        start = backends.index(asked) + 1
    for spec in backends[start:]:
        if spec.unavailable() is not None:
            continue
        try:
            worth_it = spec.preferred(model, threads)
        except Exception as exc:  # a measurement that could not run: as good as a failed load
            refused.append(f"{spec.name} failed to load ({_first_line(exc)})")
            continue
        if worth_it:
            yield spec


def _first_line(exc: Exception) -> str:
    """Runtimes raise messages of many lines (OpenVINO's carry a C++ trace): the first says it."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
