"""Decoding: frame counts, exact timestamps (PTS × time base), variable frame rate, containers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from fractions import Fraction
from itertools import accumulate, pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from frameseek.video import Frame, VideoError, format_time, in_background, iter_frames, probe
from tests.conftest import BBB, BIKES


def write_video(path: Path, codec: str, images: list[np.ndarray], pts: list[int],
                time_base: Fraction, rate: Fraction, options: dict[str, str] | None = None
                ) -> None:
    """Encode RGB images with PyAV, each frame stamped with the given presentation time."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        # The encoder's preferred format: 4:2:0, full range for mjpeg.
        stream.pix_fmt = stream.codec_context.codec.video_formats[0].name
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        for image, stamp in zip(images, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = stamp
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def encoder_available(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def bunny_head() -> list[np.ndarray]:
    """The first 48 frames of the bunny clip (a cut at frame 16), as RGB arrays."""
    return [frame.rgb() for frame, _ in zip(iter_frames(BBB), range(48), strict=False)]


@pytest.mark.parametrize(("video", "frames", "rate", "time_base"), [
    (BBB, 1440, 24, Fraction(1, 12288)),
    (BIKES, 250, 25, Fraction(1, 12800)),
])
def test_fixture_frames_have_exact_timestamps(video: Path, frames: int, rate: int,
                                              time_base: Fraction) -> None:
    decoded = list(iter_frames(video))
    assert len(decoded) == frames
    assert [f.number for f in decoded] == list(range(frames))
    for frame in decoded:
        # Frame n is shown at exactly n / rate: the PTS is an integer tick of the time base.
        assert frame.timestamp.time_base == time_base
        assert frame.timestamp.pts * time_base == Fraction(frame.number, rate)
        assert frame.time == float(Fraction(frame.number, rate))


def test_probe_reports_the_container_facts() -> None:
    info = probe(BBB)
    assert (info.width, info.height, info.frames, info.fps) == (320, 180, 1440, 24.0)
    assert info.duration == pytest.approx(60.0)


def test_frame_pixels_are_rgb_and_scaled_on_request() -> None:
    frame = next(iter_frames(BBB))
    full = frame.rgb()
    assert full.shape == (180, 320, 3) and full.dtype == np.uint8
    small = frame.rgb(64, 36)
    assert small.shape == (36, 64, 3)
    # The same picture, only smaller: mean colours agree.
    assert np.abs(full.mean(axis=(0, 1)) - small.mean(axis=(0, 1))).max() < 3


def test_scaled_pixels_are_those_of_pyav_own_conversion() -> None:
    # `rgb` keeps a swscale context per output size and thread from frame to frame, asked here
    # for sizes in turn as indexing does, in this thread and in a decoder thread.
    sizes = [(64, 64), (224, 224), (192, 108), (None, None)]

    def converted(frames: Iterator[Frame]) -> Iterator[tuple[Frame, list[np.ndarray]]]:
        for frame in frames:
            yield frame, [frame.rgb(*size) for size in sizes]

    head = (frame for frame, _ in zip(iter_frames(BIKES), range(30), strict=False))
    for frame, in_thread in in_background(converted(head), 4):
        for (width, height), pixels in zip(sizes, in_thread, strict=True):
            expected = frame._frame.to_ndarray(width=width, height=height, format="rgb24")
            np.testing.assert_array_equal(pixels, expected)
            np.testing.assert_array_equal(frame.rgb(width, height), expected)


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "frameseek-decoder"]


def test_in_background_raises_the_error_of_the_thread_itself() -> None:
    error = VideoError("damaged after frame 4")

    def frames_then_error() -> Iterator[Frame]:
        yield from (frame for frame, _ in zip(iter_frames(BBB), range(5), strict=False))
        raise error

    seen = []
    with pytest.raises(VideoError) as raised:
        for frame in in_background(frames_then_error(), 2):
            seen.append(frame.number)
    assert raised.value is error and seen == [0, 1, 2, 3, 4]
    assert not decoder_threads()


def test_in_background_stops_decoding_when_the_caller_stops() -> None:
    closed = threading.Event()

    def frames() -> Iterator[Frame]:
        try:
            yield from iter_frames(BBB)
        finally:
            closed.set()

    with closing(in_background(frames(), 2)) as decoded:
        assert next(decoded).number == 0
    # The thread has finished the frame in hand and closed the decoder (its container).
    assert closed.is_set() and not decoder_threads()


def test_variable_frame_rate_times_do_not_drift(tmp_path: Path, bunny_head: list[np.ndarray]
                                               ) -> None:
    # 30 fps, then 10 fps, then irregular gaps (in ms): a constant-rate assumption drifts at once.
    time_base = Fraction(1, 1000)
    pts = [round(n * 1000 / 30) for n in range(16)]
    pts += [pts[-1] + 100 * k for k in range(1, 17)]
    gaps = (7, 250, 33, 1000, 41, 41, 5, 400, 17, 90, 3, 700, 60, 8, 1)
    pts += list(accumulate(gaps, initial=pts[-1]))[1:]
    images = bunny_head[: len(pts)]
    path = tmp_path / "vfr.mkv"
    write_video(path, "libx264", images, pts, time_base, Fraction(30))

    decoded = list(iter_frames(path))
    assert len(decoded) == len(pts)
    assert [f.timestamp.pts * f.timestamp.time_base for f in decoded] == [
        p * time_base for p in pts
    ]
    assert decoded[-1].time == pts[-1] / 1000


@pytest.mark.parametrize(("suffix", "codec", "options"), [
    (".mkv", "libx264", {}),
    (".webm", "libvpx", {"deadline": "realtime", "cpu-used": "8"}),  # the default is very slow
    (".avi", "mpeg4", {}),
    (".mpg", "mpeg2video", {}),
    (".mov", "mjpeg", {}),
])
def test_other_containers_decode_with_their_times(tmp_path: Path, bunny_head: list[np.ndarray],
                                                  suffix: str, codec: str,
                                                  options: dict[str, str]) -> None:
    if not encoder_available(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder to make a {suffix} file")
    # One second at 160×90 is enough to check a container, and cheap to encode (libvpx is slow).
    images = [np.ascontiguousarray(image[::2, ::2]) for image in bunny_head[:24]]
    path = tmp_path / f"clip{suffix}"
    write_video(path, codec, images, list(range(len(images))), Fraction(1, 24), Fraction(24),
                options)

    decoded = list(iter_frames(path))
    assert len(decoded) == len(images)
    for frame, original in zip(decoded, images, strict=True):
        # Containers round the time base (webm keeps milliseconds; mpg counts 90 kHz ticks from
        # a start offset), so compare each time to n/24 within half a millisecond, after the
        # file's own start.
        assert frame.time - decoded[0].time == pytest.approx(frame.number / 24, abs=5e-4)
        # And the pixels are the frame that was written, not just any frame.
        error = np.abs(frame.rgb().astype(np.int16) - original.astype(np.int16)).mean()
        assert error < 12, f"frame {frame.number} differs by {error:.1f} on average"


def test_decoding_follows_the_cut(bunny_head: list[np.ndarray]) -> None:
    # The fixture's first shot ends after frame 15: consecutive frames are alike within a shot and
    # very different across the cut, which only holds if frames come out in display order.
    gaps = [np.abs(a.astype(np.int16) - b).mean() for a, b in pairwise(bunny_head)]
    assert int(np.argmax(gaps)) == 15


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError):
        list(iter_frames(junk))
    with pytest.raises(VideoError):
        probe(junk)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "00:00.0"), (33.458, "00:33.5"), (61.3, "01:01.3"), (3725.0, "1:02:05.0"),
    (-1.0, "00:00.0"),
])
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text
