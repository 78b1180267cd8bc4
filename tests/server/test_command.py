"""`frameseek serve` on the command line: its options, defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameseek.cli import EXIT_ERROR, EXIT_USAGE, _parser, main
from frameseek.query import MAX_PIXELS
from frameseek.server.command import is_loopback


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


@pytest.mark.parametrize("option", [["--batch-window-ms", "-1"], ["--max-searches", "0"]])
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


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.org", ""])
def test_hosts_others_may_reach(host: str) -> None:
    assert not is_loopback(host)


def test_serve_refuses_the_network_without_a_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FRAMESEEK_TOKEN", raising=False)
    assert main(["serve", "--index", str(tmp_path), "--host", "0.0.0.0"]) == EXIT_USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line == ("frameseek serve: refusing to let anyone on the network in at 0.0.0.0 "
                    "without a token: set FRAMESEEK_TOKEN or --token-file, or pass "
                    "--allow-anonymous")


@pytest.mark.parametrize("access", [["--allow-anonymous"], ["--token-file", "TOKENS"], []])
def test_serve_lets_the_network_in_with_a_token_or_when_told(
        access: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Past the refusal, it goes on to open the index, which here does not exist."""
    monkeypatch.delenv("FRAMESEEK_TOKEN", raising=False)
    if not access:
        monkeypatch.setenv("FRAMESEEK_TOKEN", "a-token-of-the-team-0123")
    tokens = tmp_path / "tokens"
    tokens.write_text("a-token-in-the-file-0123\n")
    access = [str(tokens) if word == "TOKENS" else word for word in access]
    assert main(["serve", "--index", str(tmp_path / "none"), "--host", "0.0.0.0",
                 *access]) == EXIT_ERROR
    assert "no frameseek index here" in capsys.readouterr().err


def test_serve_refuses_a_bad_token_in_one_line_that_does_not_show_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAMESEEK_TOKEN", "hunter2")
    assert main(["serve", "--index", str(tmp_path)]) == EXIT_USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("frameseek serve: FRAMESEEK_TOKEN, token 1: a token must be 16")
    assert "hunter2" not in line


def test_serve_refuses_a_missing_token_file(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--index", str(tmp_path), "--token-file",
                 str(tmp_path / "none")]) == EXIT_USAGE
    assert "cannot read it" in capsys.readouterr().err


def test_serve_access_and_operations_options() -> None:
    args = _parser().parse_args(["serve", "--index", "idx", "--root-path", "/frameseek/",
                                 "--rate-limit", "0", "--access-log", "json"])
    assert (args.root_path, args.rate_limit, args.access_log) == ("/frameseek", 0.0, "json")
    defaults = _parser().parse_args(["serve", "--index", "idx"])
    assert (defaults.root_path, defaults.rate_limit, defaults.rate_burst, defaults.access_log,
            defaults.allow_anonymous, defaults.token_file) == ("", 60.0, 20, "text", False, None)


@pytest.mark.parametrize("option", [["--root-path", "frameseek"], ["--rate-limit", "-1"],
                                    ["--rate-burst", "0"], ["--media-url-ttl", "0"],
                                    ["--access-log", "xml"]])
def test_serve_refuses_bad_access_and_operations_options(
        option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["serve", "--index", "idx", *option])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {option[0]}: " in error and ("must" in error or "invalid choice" in error)
