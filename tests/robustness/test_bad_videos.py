"""Bad video input: each file is indexed as far as it decodes or skipped with a one-line reason,
the good files beside it are indexed, and `frameseek index` lists the skipped ones and exits 3."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from frameseek import cli
from frameseek.index import Index
from frameseek.video import VideoError, iter_frames
from tests.conftest import BBB, BIKES

BBB_FRAMES = 1440
BIKES_FRAMES = 250
# Root reads files whatever their mode (as in CI's containers): there a chmod 000 file is readable.
IS_ROOT = os.geteuid() == 0


def faststart(source: Path, target: Path) -> Path:
    """The same stream with the index (moov) first, as web-ready MP4s are: a cut keeps it."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source),
                    "-c", "copy", "-movflags", "+faststart", str(target)], check=True)
    return target


def cut(source: Path, target: Path, percent: int) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * percent // 100])
    return target


def break_middle(source: Path, target: Path, length: int) -> Path:
    """Overwrite `length` bytes in the middle of the file with noise: damaged packets."""
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + length] = np.random.default_rng(1).bytes(length)
    target.write_bytes(bytes(data))
    return target


def write_audio_only(target: Path) -> Path:
    with av.open(str(target), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(0.2 * tone[None], format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return target


def write_one_frame(target: Path) -> Path:
    with av.open(str(target), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        gradient = np.linspace(0, 255, 64 * 48 * 3).astype(np.uint8).reshape(48, 64, 3)
        frame = av.VideoFrame.from_ndarray(gradient, format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return target


def make_bad_inputs(folder: Path) -> Path:
    """One folder of every kind of bad input, each named like a video."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.mp4").write_bytes(b"")
    (folder / "random_bytes.mp4").write_bytes(np.random.default_rng(0).bytes(100_000))
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "photo.mp4", format="PNG")
    write_audio_only(folder / "audio_only.mp4")
    write_one_frame(folder / "one_frame.mp4")
    denied = shutil.copy(folder / "one_frame.mp4", folder / "no_permission.mp4")
    os.chmod(denied, 0)
    (folder / "folder.mp4").mkdir()
    os.mkfifo(folder / "named_pipe.mp4")  # a read would wait forever for a writer
    (folder / "broken_link.mp4").symlink_to(folder / "gone.mp4")
    for percent in (10, 50, 90):
        cut(BBB, folder / f"bunny_cut{percent}.mp4", percent)
    return folder


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bad_inputs(tmp_path_factory.mktemp("bad_videos"))


@pytest.fixture(scope="module")
def bunny_faststart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return faststart(BBB, tmp_path_factory.mktemp("faststart") / "bunny_faststart.mp4")


def decode(path: Path) -> list[float]:
    return [frame.time for frame in iter_frames(path)]


def assert_skipped(path: Path, reason: str) -> None:
    with pytest.raises(VideoError) as caught:
        decode(path)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and len(message) < 160


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero_bytes.mp4", "empty file"),
        ("random_bytes.mp4", "not a readable video"),
        ("photo.mp4", "a still image (png), not a video"),
        ("audio_only.mp4", "no video stream"),
        ("folder.mp4", "is a directory"),
        ("named_pipe.mp4", "not a regular file"),
        ("broken_link.mp4", "no such file"),
        # This MP4 keeps its index (moov) at the end: any cut loses it, and with it every frame.
        ("bunny_cut10.mp4", "not a readable video"),
        ("bunny_cut50.mp4", "not a readable video"),
        ("bunny_cut90.mp4", "not a readable video"),
    ],
)
def test_undecodable_file_is_refused_with_one_line_reason(bad: Path, name: str,
                                                          reason: str) -> None:
    assert_skipped(bad / name, reason)


@pytest.mark.timeout(60)
def test_unreadable_file_is_refused_unless_running_as_root(bad: Path) -> None:
    path = bad / "no_permission.mp4"
    if IS_ROOT:
        assert len(decode(path)) == 1  # the OS lets root read it: it is a whole 1-frame video
    else:
        assert_skipped(path, "permission denied")


def test_one_frame_video_decodes_its_frame(bad: Path) -> None:
    assert decode(bad / "one_frame.mp4") == [0.0]


@pytest.mark.timeout(60)
def test_truncated_file_decodes_up_to_the_cut(bunny_faststart: Path, tmp_path: Path) -> None:
    whole = decode(bunny_faststart)
    assert len(whole) == BBB_FRAMES
    kept = []
    for percent in (10, 50, 90):
        times = decode(cut(bunny_faststart, tmp_path / f"cut{percent}.mp4", percent))
        assert times == whole[: len(times)]  # the frames before the cut, with their exact times
        # The bit rate varies from scene to scene, but a cut at p % keeps a good part of p %.
        assert 0.5 * percent / 100 * BBB_FRAMES < len(times) < BBB_FRAMES
        kept.append(len(times))
    assert kept == sorted(kept)


@pytest.mark.timeout(60)
def test_broken_middle_decodes_on_both_sides_of_the_damage(tmp_path: Path) -> None:
    times = decode(break_middle(BBB, tmp_path / "bunny_broken.mp4", 20_000))
    gaps = np.diff(times)
    assert np.all(gaps > 0)
    assert BBB_FRAMES // 2 < len(times) < BBB_FRAMES
    assert gaps.max() > 1.0  # the damaged stretch is skipped up to the next key frame...
    assert times[-1] > 59.0  # ...and decoding goes on to the end with true timestamps


@pytest.mark.timeout(300)
def test_cli_indexes_what_it_can_and_lists_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_bad_inputs(tmp_path / "archive")
    for name in ("bunny_cut10.mp4", "bunny_cut90.mp4"):  # one moov-last cut is enough here
        (folder / name).unlink()
    shutil.copy(BIKES, folder / "good.mp4")
    break_middle(BIKES, folder / "good_broken.mp4", 8_000)
    cut(faststart(BIKES, tmp_path / "bikes_faststart.mp4"), folder / "good_cut50.mp4", 50)
    index_dir = tmp_path / "index"

    # The directory named like a video is only a candidate when named: a folder walk skips it.
    status = cli.main(["index", str(folder), str(folder / "folder.mp4"), "--index",
                       str(index_dir), "--sample-fps", "1", "--quiet"])

    out = capsys.readouterr().out
    assert status == cli.EXIT_SKIPPED == 3
    skipped = {line.split(": ", 1)[0].removeprefix("skipped "): line.split(": ", 1)[1]
               for line in out.splitlines() if line.startswith("skipped ")}
    expected_skips = {"zero_bytes.mp4", "random_bytes.mp4", "photo.mp4", "audio_only.mp4",
                      "folder.mp4", "named_pipe.mp4", "broken_link.mp4", "bunny_cut50.mp4"}
    expected_indexed = {"good.mp4", "good_broken.mp4", "good_cut50.mp4", "one_frame.mp4"}
    (expected_indexed if IS_ROOT else expected_skips).add("no_permission.mp4")
    assert {Path(path).name for path in skipped} == expected_skips
    assert all(reason.strip() for reason in skipped.values())
    assert f"{len(expected_indexed)} videos" in out and f"{len(expected_skips)} skipped" in out

    with Index.open(index_dir) as index:
        frames = {Path(v.path).name: v.frames for v in index.videos()}
        assert all(v.keyframes >= 1 for v in index.videos())
    assert set(frames) == expected_indexed
    assert frames["good.mp4"] == BIKES_FRAMES
    assert frames["one_frame.mp4"] == 1
    assert BIKES_FRAMES // 2 < frames["good_broken.mp4"] < BIKES_FRAMES
    assert 0.4 * BIKES_FRAMES < frames["good_cut50.mp4"] < 0.55 * BIKES_FRAMES
