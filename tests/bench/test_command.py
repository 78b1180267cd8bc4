"""Tiny real runs of the bench commands: the JSON they print has the documented shape."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from frameseek.backends import MIN_COSINE, names
from frameseek.bench.command import register
from frameseek.bench.search import real_descriptors
from frameseek.search import DEFAULT_NPROBE


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_search_reports_every_method(sample_index: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    report = run(["bench", "search", "--keyframes", "3000", "--queries", "5", "--index",
                  str(sample_index), "--methods", "ours-flat64", "ours-ivf512-fp16", "--json"],
                 capsys)
    assert report["keyframes"] == 3000
    assert set(report["methods"]) == {"ours-flat64", "ours-ivf512-fp16"}
    for method in report["methods"].values():
        assert set(method) >= {"ms_per_query", "p95_ms", "recall_at_12", "bytes_per_keyframe",
                               "build_s"}
        assert 0.0 <= method["recall_at_12"] <= 1.0
        assert method["ms_per_query"] > 0
    # float16 descriptors and float32 64-d index, as the product holds them
    assert report["methods"]["ours-flat64"]["bytes_per_keyframe"] == pytest.approx(1024 + 256,
                                                                                   abs=1)


def test_bench_search_sweeps_nprobe_for_the_ivf_methods_only(
        sample_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run(["bench", "search", "--keyframes", "3000", "--queries", "8", "--index",
                  str(sample_index), "--methods", "ours-flat64", "ours-ivf512-fp16", "--nprobe",
                  "1", "8", "--json"], capsys)
    assert report["nprobe"] == [1, 8]
    assert set(report["methods"]) == {"ours-flat64", "ours-ivf512-fp16 nprobe=1",
                                      "ours-ivf512-fp16 nprobe=8"}
    # More cells visited, every one ranked exactly: never fewer of the true top 12.
    assert report["methods"]["ours-ivf512-fp16 nprobe=8"]["recall_at_12"] >= \
        report["methods"]["ours-ivf512-fp16 nprobe=1"]["recall_at_12"]


def test_bench_search_takes_real_descriptors_from_npz_files(
        sample_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    descriptors, _ = real_descriptors(sample_index)
    files = []
    for part, rows in enumerate(np.array_split(descriptors, 2)):  # as the eval cache: per video
        files.append(tmp_path / f"video{part}.npz")
        np.savez(files[-1], descriptors=rows, times=np.arange(len(rows)))
    report = run(["bench", "search", "--keyframes", "2000", "--queries", "4", "--descriptors",
                  *map(str, files), "--methods", "ours-ivf512-fp16", "--json"], capsys)
    assert report["real_descriptors"] == len(descriptors)
    assert report["descriptors_from"] == [str(f) for f in files]
    assert report["nprobe"] == DEFAULT_NPROBE


def test_bench_search_says_which_descriptor_file_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "search", "--keyframes", "100", "--descriptors",
                              str(tmp_path / "absent.npz")])
    assert args.run(args) == 1
    assert "absent.npz" in capsys.readouterr().err


def test_bench_search_refuses_an_unknown_method(sample_index: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "search", "--keyframes", "100", "--index",
                              str(sample_index), "--methods", "nonsense"])
    assert args.run(args) == 2


def test_bench_index_times_every_stage(sample_videos: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    report = run(["bench", "index", str(sample_videos / "bikes.mp4"), "--queries", "1",
                  "--json"], capsys)
    assert report["video_s"] == pytest.approx(10, abs=0.5)
    assert report["realtime_factor"] == pytest.approx(report["video_s"] / report["wall_s"],
                                                      rel=0.01)
    assert report["peak_rss_mb"] > 0
    assert set(report["stages"]) >= {"decode", "samples", "cnn", "kmeans", "store",
                                     "model_load"}
    assert sum(report["stages"].values()) <= report["wall_s"] * 1.01
    # The decoder thread's own stages overlap those above, each within the wall time.
    assert set(report["decoder_thread"]) == {"decode", "histograms"}
    assert all(s <= report["wall_s"] for s in report["decoder_thread"].values())
    assert report["query_ms"]["count"] == 1
    assert set(report["backend"]) == {"name", "precision", "device", "cpu"}


def test_bench_backends_compares_each_with_the_reference(
        sample_videos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run(["bench", "backends", "--video", str(sample_videos / "bikes.mp4"), "--rounds",
                  "1", "--size", "64", "--backends", "onnxruntime-fp32", "openvino-fp32",
                  "--json"], capsys)
    assert report["reference"] == "onnxruntime-fp32" and report["auto"] in names()
    assert report["cpu_model"] and report["input_size"] == 64
    assert set(report["backends"]) | set(report["unavailable"]) == {"onnxruntime-fp32",
                                                                    "openvino-fp32"}
    for name, result in report["backends"].items():
        assert result["name"] == name and result["cpu"] == report["cpu_model"]
        assert result["ms_per_image_batch1"] > 0 and result["ms_per_image_batch8"] > 0
        assert result["min_cosine_vs_reference"] >= MIN_COSINE[result["precision"]]


def test_bench_scale_prints_the_documented_fields(sample_index: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A real build of 2,000 key frames (exact search at that size), then measured again."""
    argv = ["bench", "scale", "--keyframes", "2000", "--source", str(sample_index), "--dir",
            str(tmp_path / "index"), "--json"]
    report = run(argv, capsys)
    assert list(report) == ["keyframes", "build_s", "thumbnail_bytes",
                            "vector_bytes_per_keyframe", "disk_bytes_per_keyframe", "open_s",
                            "first_query_s", "warm_ms_median", "warm_ms_p95", "recall_at_12",
                            "add_video_s", "rss_mb"]
    assert report["keyframes"] == 2000 and report["build_s"] > 0
    assert report["thumbnail_bytes"] == 4400
    assert report["vector_bytes_per_keyframe"] >= 1024  # the float16 row file at least
    assert report["disk_bytes_per_keyframe"] > report["vector_bytes_per_keyframe"]
    assert 0.0 <= report["recall_at_12"] <= 1.0
    assert report["add_video_s"] is not None  # the new video was found
    again = run(argv, capsys)
    assert again["build_s"] is None and again["keyframes"] == 2000
    assert again["thumbnail_bytes"] is None  # not known of an index built before


def test_bench_stores_reports_both_stores(sample_index: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """2,000 key frames: both stores exact (the embedded one re-ranks its 64-d candidates, Milvus
    is FLAT below AUTO's switch), so both find the true top 12 of nearly every query."""
    report = run(["bench", "stores", "--keyframes", "2000", "--queries", "5", "--index",
                  str(sample_index), "--json"], capsys)
    assert report["keyframes"] == 2000 and set(report["stores"]) == {"embedded", "milvus-lite"}
    for figures in report["stores"].values():
        assert set(figures) == {"recall_at_12", "ms_median", "ms_p95", "fill_s",
                                "disk_bytes_per_keyframe"}
        assert figures["disk_bytes_per_keyframe"] > 4_400  # the thumbnails at least
    assert report["stores"]["milvus-lite"]["recall_at_12"] == 1.0
