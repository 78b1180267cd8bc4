"""The whole evaluation, smoke-sized, on the bundled fixture: real decoding, weights and index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek import backends
from frameseek.cli import main
from frameseek.eval.run import SMOKE_THETAS
from frameseek.index import Index, IndexConfig

VERIFIED = {f"Ours R-MAC + regions + verify ({effort})" for effort in ("fast", "default",
                                                                        "thorough")}
OURS = {"Ours", "Ours + trim", "Ours R-MAC", "Ours R-MAC + trim", *VERIFIED}
DEFAULT = "Ours R-MAC + regions + verify (default)"
SETS = {"plain": 6, "perturbed": 6, "hard": 12}  # hard: two per frame
METHODS = {*OURS, "Exact 512-d", "DFSP", "DF", "DFSE", "DFTA", "LBTT"}


@pytest.fixture(scope="module")
def evaluation(sample_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "out"
    assert main(["eval", "run", "--corpus", str(sample_videos), "--out", str(out),
                 "--smoke"]) == 0
    return out


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_every_method_and_set_is_reported_with_figures_in_range(evaluation: Path) -> None:
    r = results(evaluation)
    assert set(r["methods"]) == METHODS
    assert r["corpus"]["queries"] == SETS
    for name, method in r["methods"].items():
        for set_name, count in SETS.items():
            f = method["sets"][set_name]
            assert f["queries"] == count
            for key in ("acc@1", "acc@5", "acc@12", "top1_video", "mrr", "within_2s"):
                assert 0.0 <= f[key] <= 1.0, (name, set_name, key)
            assert f["acc@1"] >= f["top1_video"] - 1e-9  # acc@1 is top-1 video per query
            assert 0 < f["search_ms_median"] <= f["search_ms_p95"]
            assert f["with_cnn_ms_median"] >= f["search_ms_median"]
        assert 0.9 < method["compression_ratio"] < 1.0
    report = (evaluation / "report.md").read_text()
    for name in METHODS:
        assert report.count(f"| {name} |") >= 5, name  # the sets, paper and size tables
    for set_name in SETS:
        assert f"## Accuracy, {set_name} queries" in report
    assert "## Hard queries by family" in report and "## Cost of the default query" in report
    inference = r["meta"]["inference"]  # the back end is part of every figure's meaning
    assert inference["name"] in backends.names() and f"CNN: {inference['name']}" in report
    assert all(inference["name"] in c.name for c in (evaluation / "cache" / "analysis").iterdir())


def test_the_verdict_is_measured_cross_validated_by_work(evaluation: Path) -> None:
    verdicts = results(evaluation)["verdicts"]
    assert set(verdicts) == {"Ours R-MAC + trim", *VERIFIED}
    assert set(verdicts["Ours R-MAC + trim"]) == {"similarity"}
    study = verdicts[DEFAULT]["similarity or inliers"]
    # The fixture's two videos are two works: each one's queries against the index without it.
    assert study["outside_queries"] == sum(SETS.values())
    assert len(study["folds"]) == 2
    assert set(study["sets"]) == set(SETS)
    for figures in [*study["sets"].values(), *study["families"].values()]:
        assert 0.0 <= figures["kept"] <= 1.0
    # Plain queries are frames of the indexed videos: kept whatever the fold's thresholds.
    assert study["sets"]["plain"]["kept"] >= 0.5
    assert "## The verdict" in (evaluation / "report.md").read_text()


def test_localisation_is_reported_for_both_sets_with_and_without_refinement(
        evaluation: Path) -> None:
    by_method = results(evaluation)["localisation"]
    assert set(by_method) == {"Ours", "Ours R-MAC + trim", DEFAULT}
    found = by_method[DEFAULT]  # frameseek's default
    assert set(found["sets"]) == set(SETS)
    for set_name, modes in found["sets"].items():
        assert set(modes) == {"key frame", "refined"}
        for mode, f in modes.items():
            assert f["queries"] == SETS[set_name]
            shares = [f[k] for k in ("within_0.5s", "within_1s", "within_2s")]
            assert all(0.0 <= v <= 1.0 for v in shares), (set_name, mode)
            assert shares == sorted(shares) and shares[-1] <= f["correct_video"] + 1e-9
        assert modes["key frame"]["added_ms_median"] == 0.0
        assert 0 < modes["refined"]["added_ms_median"] <= modes["refined"]["added_ms_p95"]
    # Plain queries are frames of the indexed videos: refinement puts them on the moment.
    plain = found["sets"]["plain"]["refined"]
    assert plain["median_error_s"] < 0.1
    assert found["track_bytes"] > 0
    report = (evaluation / "report.md").read_text()
    assert "## Localisation (the exact moment)" in report
    for name in by_method:
        for set_name, count in SETS.items():
            for mode in ("key frame", "refined"):
                assert f"| {name} | {set_name} ({count}) | {mode} |" in report


@pytest.mark.parametrize("name", sorted(OURS))
def test_ours_finds_the_right_video_for_plain_queries(evaluation: Path, name: str) -> None:
    plain = results(evaluation)["methods"][name]["sets"]["plain"]
    assert plain["top1_video"] > 0.5
    assert plain["time_error_median_s"] < 5.0


@pytest.fixture(scope="module")
def paper_index(sample_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample videos indexed with the paper's Algorithm 1 as it is (no coverage)."""
    directory = tmp_path_factory.mktemp("paper") / "index"
    with Index.create(directory, IndexConfig(coverage_margin=None)) as index:
        index.add([sample_videos])
    return directory


def keyframe_frames(index: Index) -> dict[str, list[int]]:
    vectors = index.store.vectors()
    by_video: dict[str, list[int]] = {}
    for record in index.store.keyframes(vectors.ids.tolist()):
        by_video.setdefault(Path(record.video).name, []).append(record.frame)
    return {video: sorted(f) for video, f in by_video.items()}


def test_ours_uses_the_keyframes_frameseek_index_stores(evaluation: Path, paper_index: Path
                                                       ) -> None:
    """"Ours" holds exactly the key frames `frameseek index --no-coverage` stores; the R-MAC
    variants hold those and the ones the coverage guarantee adds over the same samples."""
    with Index.open(evaluation / "index" / "mean") as ours, \
            Index.open(evaluation / "index" / "rmac") as covered, \
            Index.open(paper_index) as reference:
        assert ours.config.pooling == "mean" and covered.config.pooling == "rmac"
        paper = keyframe_frames(reference)
        assert keyframe_frames(ours) == paper
        for video, frames in keyframe_frames(covered).items():
            assert set(paper[video]) <= set(frames)
        added = sum(v.coverage_keyframes for v in covered.videos())
        total = sum(map(len, keyframe_frames(covered).values()))
        assert total == sum(map(len, paper.values())) + added
        assert [v.frames for v in ours.videos()] == [v.frames for v in reference.videos()]


def test_theta_sweep_at_the_default_theta_agrees_with_the_index(evaluation: Path) -> None:
    r = results(evaluation)
    assert [row["theta"] for row in r["theta_sweep"]] == list(SMOKE_THETAS)
    default = next(row for row in r["theta_sweep"] if row["theta"] == 1.4)
    ours = r["methods"]["Ours"]
    assert default["keyframes"] == ours["entries"]
    for set_name in ("plain", "perturbed"):
        assert default[set_name]["acc@12"] == pytest.approx(ours["sets"][set_name]["acc@12"])
    ratios = [row["compression_ratio"] for row in r["theta_sweep"]]
    assert ratios == sorted(ratios)  # a higher θ never keeps more key frames


def test_gallery_and_plot_are_written(evaluation: Path) -> None:
    page = (evaluation / "gallery.html").read_text()
    assert page.count('class="row"') == 3 * len(SETS)
    assert page.count("data:image/jpeg;base64,") == 3 * len(SETS) * 13  # a query, its top 12
    with Image.open(evaluation / "theta_sweep.png") as plot:
        assert plot.format == "PNG" and plot.width > 300


def test_a_rerun_reuses_the_cached_analysis_and_queries(evaluation: Path,
                                                        sample_videos: Path) -> None:
    caches = sorted((evaluation / "cache" / "analysis").glob("*.npz"))
    assert len(caches) == 2
    stamps = [c.stat().st_mtime_ns for c in caches]
    queries = (evaluation / "queries" / "queries.json").read_bytes()
    before = results(evaluation)
    assert main(["eval", "run", "--corpus", str(sample_videos), "--out", str(evaluation),
                 "--smoke"]) == 0
    assert [c.stat().st_mtime_ns for c in caches] == stamps
    assert (evaluation / "queries" / "queries.json").read_bytes() == queries
    after = results(evaluation)
    for name in METHODS:
        for set_name in SETS:
            assert after["methods"][name]["sets"][set_name]["acc@12"] == pytest.approx(
                before["methods"][name]["sets"][set_name]["acc@12"]), name
    assert np.isclose(after["indexing"]["analysis_wall_s"], before["indexing"]["analysis_wall_s"])
