"""Choosing the back end: names, the environment, fallback with one warning line, the start-up
self-check, and failures that stay plain."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from frameseek.backends import (
    AUTO,
    BACKENDS,
    ENV,
    MIN_COSINE,
    BackendError,
    BackendSpec,
    UnknownBackend,
    names,
    requested,
    select,
)
from frameseek.backends import onnxruntime as ort_backends
from frameseek.backends.onnxruntime import OnnxRuntimeBackend
from frameseek.features import VGG16Pool5, self_check_reference


def cannot_compile(model: Path, threads: int) -> OnnxRuntimeBackend:
    raise RuntimeError("Exception from src/plugin.cpp:123:\nno kernel for Conv\n  at frame 7")


class ChannelsShuffled:
    """A real back end whose maps come out with their channels in another order: as wrong as a
    broken precision, and as cheap to run as the real one."""

    precision = "fp32"
    device = "CPU"
    name = "shuffled-fp32"

    def __init__(self, model: Path, threads: int) -> None:
        self._real = OnnxRuntimeBackend(model, threads, "CPU")

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        return self._real(inputs)[:, ::-1]


BROKEN = BackendSpec("broken-fp32", "fp32", "CPU", unavailable=lambda: None, load=cannot_compile)
SHUFFLED = BackendSpec("shuffled-fp32", "fp32", "CPU", unavailable=lambda: None,
                       load=ChannelsShuffled)
ABSENT = BackendSpec("absent-fp32", "fp32", "CPU", unavailable=lambda: "no such device",
                     load=cannot_compile)


def test_names_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert names() == [AUTO, *(spec.name for spec in BACKENDS)]
    assert {"onnxruntime-fp32", "openvino-fp32", "openvino-bf16", "onnxruntime-cuda"} <= \
        set(names())
    monkeypatch.delenv(ENV, raising=False)
    assert requested() == AUTO
    monkeypatch.setenv(ENV, "openvino-fp32")
    assert requested() == "openvino-fp32"
    assert requested("onnxruntime-fp32") == "onnxruntime-fp32"  # a name given wins
    monkeypatch.setenv(ENV, "openvino-int4")
    with pytest.raises(UnknownBackend, match=r"'openvino-int4' \(\$FRAMESEEK_BACKEND\): choose "
                                             r"from auto, onnxruntime-cuda"):
        requested()
    with pytest.raises(UnknownBackend, match="unknown back end 'tpu'"):
        VGG16Pool5(backend="tpu")


def test_the_first_back_end_that_loads_is_used_with_one_warning_line(
        model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="frameseek")
    backend = select(model, 1, self_check_reference(), "broken-fp32",
                     [BROKEN, ort_backends.CPU])
    assert backend.name == "onnxruntime-fp32"
    [record] = caplog.records
    assert record.getMessage() == ("frameseek: broken-fp32 failed to load (Exception from "
                                   "src/plugin.cpp:123:); using onnxruntime-fp32")


def test_a_back_end_that_disagrees_with_the_reference_is_not_used(
        model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="frameseek")
    backend = select(model, 1, self_check_reference(), AUTO, [SHUFFLED, ort_backends.CPU])
    assert backend.name == "onnxruntime-fp32"
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("frameseek: shuffled-fp32 disagrees with the fp32 reference "
                              "(cosine ") and message.endswith("; using onnxruntime-fp32")
    assert f"< {MIN_COSINE['fp32']})" in message


def test_one_line_tells_every_back_end_given_up(
        model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="frameseek")
    backend = select(model, 1, self_check_reference(), "absent-fp32",
                     [ABSENT, BROKEN, ort_backends.CPU])
    assert backend.name == "onnxruntime-fp32"
    [record] = caplog.records
    assert record.getMessage().startswith("frameseek: absent-fp32 is unavailable: no such "
                                          "device; broken-fp32 failed to load (")


def test_auto_skips_what_cannot_run_here_silently(
        model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="frameseek")
    backend = select(model, 1, self_check_reference(), AUTO, [ABSENT, ort_backends.CPU])
    assert backend.name == "onnxruntime-fp32" and not caplog.records


def test_nothing_that_works_is_an_error_naming_each_reason(model: Path) -> None:
    broken_too = replace(BROKEN, name="broken-too-fp32")
    with pytest.raises(BackendError, match=r"no inference back end works: broken-fp32 failed to "
                                           r"load .*; broken-too-fp32 failed to load"):
        select(model, 1, self_check_reference(), AUTO, [BROKEN, broken_too])


def test_auto_picks_a_back_end_that_passes_its_self_check(model: Path) -> None:
    reference = self_check_reference()
    backend = select(model, 2, reference, AUTO)
    assert backend.name in names()
    assert reference.agreement(backend) >= MIN_COSINE[backend.precision]
    assert select(model, 2, reference, "onnxruntime-fp32").name == "onnxruntime-fp32"
