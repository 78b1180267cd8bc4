"""Files written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameseek.files import write_atomically


def test_a_file_is_written_whole_under_its_name(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    write_atomically(target, lambda path: path.write_bytes(b"weights"))
    assert target.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_two_writers_of_one_file_never_share_a_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    seen: list[Path] = []

    def inner(path: Path) -> None:
        seen.append(path)
        path.write_bytes(b"inner")

    def outer(path: Path) -> None:
        seen.append(path)
        path.write_bytes(b"outer")
        write_atomically(target, inner)  # a second writer, while the first is mid-write

    write_atomically(target, outer)
    assert seen[0] != seen[1] and all(p.name.endswith(".partial") for p in seen)
    assert target.read_bytes() == b"outer"  # the last rename wins, whole
