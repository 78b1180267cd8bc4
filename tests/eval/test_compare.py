"""`frameseek eval compare` on the committed evaluation's real results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frameseek.cli import main
from frameseek.eval.compare import accuracies, compare

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "eval"


@pytest.fixture
def results() -> dict:
    return json.loads((COMMITTED / "results.json").read_text())


def test_every_accuracy_of_the_report_is_compared_and_nothing_else(results: dict) -> None:
    figures = accuracies(results)
    assert figures["methods / Ours R-MAC / sets / perturbed / acc@1"] == pytest.approx(
        results["methods"]["Ours R-MAC"]["sets"]["perturbed"]["acc@1"])
    assert "localisation / Ours R-MAC + trim / sets / plain / refined / within_1s" in figures
    assert "theta_sweep / 1.4 / plain / acc@12" in figures
    assert all(0.0 <= value <= 1.0 for value in figures.values())
    assert not any("ms" in figure or "bytes" in figure for figure in figures)


def test_a_run_equals_itself(results: dict, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert all(d.delta == 0 for d in compare(results, results))
    assert main(["eval", "compare", str(COMMITTED), str(COMMITTED)]) == 0
    assert "0 differ by more than 0.005" in capsys.readouterr().out


def test_a_difference_past_the_tolerance_is_named_and_fails(results: dict,
                                                            tmp_path: Path) -> None:
    results["methods"]["Ours R-MAC"]["sets"]["plain"]["top1_video"] -= 0.01
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = tmp_path / "compare.md"
    assert main(["eval", "compare", str(COMMITTED), str(tmp_path), "--names", "fp32", "bf16",
                 "--out", str(out)]) == 1
    text = out.read_text()
    assert "| fp32 | bf16 |" in text and "1 differ by more than 0.005" in text
    assert "- methods / Ours R-MAC / sets / plain / top1_video:" in text


def test_a_folder_without_results_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not an evaluation's results"):
        main(["eval", "compare", str(tmp_path), str(COMMITTED)])
