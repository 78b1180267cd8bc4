"""The `frameseek` console script, run as a user runs it: exit codes, output contracts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.index import IndexConfig
from frameseek.verify import RANK_INLIERS
from frameseek.video import iter_frames
from tests.conftest import BBB, BIKES, SAMPLES, frame_at, sampled_frames

CARPHONE = Path(__file__).parent / "data" / "carphone.mp4"
RESULT_FIELDS = {"video": str, "time": float, "frame": int, "distance": float}


def frameseek(*args: str | Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("frameseek")
    assert script is not None, "the frameseek console script is not installed (pip install -e .)"
    return subprocess.run([script, *map(str, args)], capture_output=True, text=True, timeout=600,
                          check=False)


def assert_one_line_error(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 1, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frameseek: "), run.stderr
    assert "Traceback" not in run.stderr


def test_search_json_contract(sample_index: Path, sample_videos: Path, tmp_path: Path) -> None:
    # A sampled frame: the coverage guarantee makes it a match whatever k-means drew.
    bikes_frame, bikes_time = frame_at(BIKES, sampled_frames(BIKES)[8])
    second = tmp_path / "bikes frame.png"  # a space in the name: paths are kept as given
    Image.fromarray(bikes_frame).save(second)
    query = SAMPLES / "query.jpg"

    run = frameseek("search", query, second, "--index", sample_index, "--top", "4", "--json")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2  # one JSON object per query per line, nothing else on stdout
    answers = [json.loads(line) for line in lines]
    assert [a["query"] for a in answers] == [str(query), str(second)]
    for answer in answers:
        assert answer["match"] is True and answer["similarity"] >= answer["threshold"], answer
        results = answer["results"]
        assert len(results) == 4
        for result in results:
            for name, kind in RESULT_FIELDS.items():
                assert isinstance(result[name], kind), (name, result)
        # Verified key frames first, most inliers first, then the rest nearest first.
        verified = [r for r in results if (r["inliers"] or 0) >= RANK_INLIERS]
        assert results[:len(verified)] == verified
        assert [r["inliers"] for r in verified] == sorted((r["inliers"] for r in verified),
                                                          reverse=True)
        rest = [r["distance"] for r in results[len(verified):]]
        assert rest == sorted(rest)
    # Videos are named as they were indexed; the query photo is bunny frame 803, in the shot of
    # frames 754-953; the bikes frame comes from its own video.
    bunny, bikes = answers[0]["results"][0], answers[1]["results"][0]
    assert bunny["video"] == str(sample_videos / BBB.name)
    assert 754 / 24 <= bunny["time"] < 954 / 24
    assert bunny["time"] == pytest.approx(bunny["frame"] / 24, abs=1e-4)
    assert bikes["video"] == str(sample_videos / BIKES.name)
    assert abs(bikes["time"] - bikes_time) < 2.0


def test_search_prints_a_readable_ranking(sample_index: Path) -> None:
    run = frameseek("search", SAMPLES / "query.jpg", "--index", sample_index, "--top", "2")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"{SAMPLES / 'query.jpg'}:"
    assert lines[1].lstrip().startswith("1. ") and BBB.name in lines[1]
    assert lines[2].lstrip().startswith("2. ")
    assert " 00:3" in lines[1]  # mm:ss.s, in the 31-40 s shot
    assert lines[3] == "  where it appears:" and len(lines) == 5  # one video, its moments
    # The query's still shot, and (how often depends on the last grey level) the shot before it.
    assert BBB.name in lines[4] and " appearance" in lines[4] and "00:33" in lines[4]

    strict = frameseek("search", SAMPLES / "query.jpg", "--index", sample_index, "--top", "2",
                       "--min-similarity", "0.9999")
    assert strict.returncode == 0, strict.stderr
    verdict = strict.stdout.splitlines()[1]
    assert verdict.startswith("  no match: ") and verdict.endswith("below 1.00; nearest anyway:")
    # The nearest key frames still listed; no video is where the picture appears.
    assert strict.stdout.splitlines()[2:] == lines[1:3]


def test_a_non_image_query_is_one_line_on_stderr(sample_index: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    run = frameseek("search", text, "--index", sample_index, "--json")
    assert_one_line_error(run)
    assert str(text) in run.stderr
    assert run.stdout == ""

    missing = frameseek("search", tmp_path / "absent.png", "--index", sample_index)
    assert_one_line_error(missing)


def test_a_missing_index_is_one_line_on_stderr(tmp_path: Path) -> None:
    run = frameseek("search", SAMPLES / "query.jpg", "--index", tmp_path / "nowhere")
    assert_one_line_error(run)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    query, index = SAMPLES / "query.jpg", tmp_path / "index"
    assert frameseek("search", query).returncode == 2  # no --index
    assert frameseek("frobnicate").returncode == 2
    for bad in (["search", query, "--top", "0"], ["search", query, "--candidates", "-5"],
                ["index", BIKES, "--sample-fps", "0"], ["index", BIKES, "--theta", "-1"],
                ["index", BIKES, "--theta", "many"]):
        run = frameseek(*bad, "--index", index)
        assert run.returncode == 2, bad
        assert "Traceback" not in run.stderr and f"argument {bad[2]}" in run.stderr
    assert not index.exists()  # refused before anything was created


def test_an_unknown_back_end_is_a_usage_error_naming_the_known_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    query, index = SAMPLES / "query.jpg", tmp_path / "index"
    flag = frameseek("search", query, "--index", index, "--backend", "tpu")
    assert flag.returncode == 2 and "argument --backend: invalid choice: 'tpu'" in flag.stderr
    assert "onnxruntime-fp32" in flag.stderr and "Traceback" not in flag.stderr
    monkeypatch.setenv("FRAMESEEK_BACKEND", "tpu")
    for command in (["search", query, "--index", index], ["serve", "--index", index],
                    ["bench", "backends"]):
        run = frameseek(*command)
        assert run.returncode == 2, command
        assert run.stderr == ("frameseek: unknown back end 'tpu' ($FRAMESEEK_BACKEND): choose "
                              "from auto, onnxruntime-cuda, openvino-bf16, openvino-fp32, "
                              "onnxruntime-fp32\n"), command
    assert not index.exists()


def test_corrupt_videos_are_reported_and_skipped(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    junk = videos / "random.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    truncated = videos / "truncated.mp4"
    data = BIKES.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    good = videos / "carphone.mp4"
    shutil.copy(CARPHONE, good)
    index = tmp_path / "index"

    run = frameseek("index", videos, "--index", index, "--quiet")
    assert run.returncode == 3, run
    assert "Traceback" not in run.stderr
    assert "indexed 1 videos (0 unchanged, 2 skipped)" in run.stdout
    assert "120 frames" in run.stdout and "compression ratio" in run.stdout
    skipped = [line for line in run.stdout.splitlines() if line.startswith("skipped ")]
    assert sorted(line.split(":")[0] for line in skipped) == [f"skipped {junk}",
                                                              f"skipped {truncated}"]

    info = frameseek("info", "--index", index, "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert [v["path"] for v in described["videos"]] == [str(good)]
    assert described["frames"] == 120 and described["keyframes"] >= 1
    # The back end that computed the vectors, and the one queries would run on: both automatic.
    assert described["inference"] == [described["backend"]["name"]]
    assert set(described["backend"]) == {"name", "precision", "device", "cpu"}
    text = frameseek("info", "--index", index).stdout
    assert f"vectors computed by: {described['backend']['name']}" in text
    assert f"queries run on: {described['backend']['name']} (" in text

    # The same folder again: the good file is unchanged, the bad ones are still reported.
    again = frameseek("index", videos, "--index", index, "--quiet")
    assert again.returncode == 3
    assert "indexed 0 videos (1 unchanged, 2 skipped)" in again.stdout

    removed = frameseek("remove", good, "--index", index)
    assert removed.returncode == 0 and f"removed {good}" in removed.stdout
    assert_one_line_error(frameseek("remove", good, "--index", index))
    assert json.loads(frameseek("info", "--index", index, "--json").stdout)["videos"] == []


def test_pooling_is_chosen_at_creation_and_kept(tmp_path: Path) -> None:
    """`--pooling mean` makes a paper-pooled index; later runs without the flag keep it, asking
    for the other pooling is a one-line error, and a page-framed query is found (trimmed) and
    answered without a verdict either way."""
    index = tmp_path / "index"
    assert frameseek("index", CARPHONE, BIKES, "--index", index, "--pooling", "mean",
                     "--quiet").returncode == 0
    info = json.loads(frameseek("info", "--index", index, "--json").stdout)
    assert info["config"]["pooling"] == "mean"
    again = frameseek("index", CARPHONE, "--index", index, "--quiet")
    assert again.returncode == 0 and "(1 unchanged" in again.stdout, again
    assert_one_line_error(frameseek("index", CARPHONE, "--index", index, "--pooling", "rmac"))

    frame = next(f for f in iter_frames(CARPHONE) if f.number == 50).rgb()
    # A page colour the clip never shows: with a near-white page, whether the clip's own bright
    # right edge counts as page depends on the decoder's rounding (av and Pillow versions), and
    # the trim then keeps the whole page.
    page = Image.new("RGB", (frame.shape[1] * 3, frame.shape[0] * 3), (255, 0, 255))
    page.paste(Image.fromarray(frame), (frame.shape[1], frame.shape[0]))
    query = tmp_path / "page.png"
    page.save(query)
    answers = {}
    for flags in ((), ("--no-trim",)):
        run = frameseek("search", query, "--index", index, "--top", "1", "--json", *flags)
        assert run.returncode == 0, run.stderr
        answer = json.loads(run.stdout)
        assert answer["match"] is None  # the paper's pooling has no calibrated threshold
        assert len(answer["results"]) == 1
        answers[flags] = answer
    # Trimmed, the query is the frame itself and finds its clip. Untrimmed, the paper's mean
    # over the page is mostly the page (8/9 of it): which clip is nearest is a near-tie that
    # differs between CPUs, so only the trimmed answer is a promise.
    assert answers[()]["results"][0]["video"] == str(CARPHONE)


def test_no_coverage_keeps_the_papers_algorithm_1(tmp_path: Path) -> None:
    """`--no-coverage` records no margin and adds no key frame; by default the margin is kept."""
    for flags, margin in (((), IndexConfig.coverage_margin), (("--no-coverage",), None)):
        index = tmp_path / f"index{len(flags)}"
        assert frameseek("index", CARPHONE, "--index", index, "--quiet", *flags).returncode == 0
        info = json.loads(frameseek("info", "--index", index, "--json").stdout)
        assert info["config"]["coverage_margin"] == margin
        if margin is None:
            assert info["coverage_keyframes"] == 0
