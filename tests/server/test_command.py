"""`frameseek serve` on the command line: its options, defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameseek.cli import EXIT_ERROR, _parser, main
from frameseek.query import MAX_PIXELS


def test_serve_defaults() -> None:
    args = _parser().parse_args(["serve", "--index", "idx"])
    assert (args.host, args.port, args.max_upload_mb, args.max_pixels) == (
        "127.0.0.1", 8000, 20.0, MAX_PIXELS)


@pytest.mark.parametrize("option", [["--max-upload-mb", "0"], ["--max-upload-mb", "-3"],
                                    ["--max-pixels", "0"], ["--search-threads", "0"]])
def test_serve_refuses_limits_that_are_not_positive(
        option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["serve", "--index", "idx", *option])
    assert exit_.value.code == 2
    assert "must be more than 0" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--batch-window-ms", "-1"], ["--max-queued", "0"]])
def test_serve_refuses_batching_limits_out_of_range(
        option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["serve", "--index", "idx", *option])
    assert exit_.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_serve_batching_window_may_be_zero() -> None:
    args = _parser().parse_args(["serve", "--index", "idx", "--batch-window-ms", "0"])
    assert args.batch_window_ms == 0.0


def test_serve_without_an_index_says_so(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--index", str(tmp_path / "none")]) == EXIT_ERROR
    assert "no frameseek index here" in capsys.readouterr().err
