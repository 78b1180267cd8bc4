"""`frameseek eval compare`: two evaluation runs' accuracies side by side, for instance the same
corpus and seed through two inference back ends (fp32 and bf16), with every difference larger
than a tolerance named."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from frameseek.eval.methods import DEFAULT

# The leaves of results.json that are accuracies (fractions of queries), not times or sizes.
ACCURACY = re.compile(r"^(acc@\d+|top1_video|mrr|within_[\d.]+s|correct_video|accuracy)$")
TOLERANCE = 0.005


@dataclass(frozen=True)
class Difference:
    figure: str  # its path in results.json, e.g. "methods / Ours / sets / plain / acc@1"
    first: float
    second: float

    @property
    def delta(self) -> float:
        return self.second - self.first


def accuracies(results: dict) -> dict[str, float]:
    """Every accuracy of a run's results.json, by its path."""
    return dict(_leaves(results, ()))


def _leaves(node: object, path: tuple[str, ...]) -> Iterator[tuple[str, float]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for number, value in enumerate(node):
            label = value.get("theta", number) if isinstance(value, dict) else number
            yield from _leaves(value, (*path, str(label)))
    elif isinstance(node, int | float) and not isinstance(node, bool) and path and \
            ACCURACY.match(path[-1]) and path[0] != "meta":
        yield " / ".join(path), float(node)


def compare(first: dict, second: dict) -> list[Difference]:
    """The accuracies both runs report, in the first run's order."""
    a, b = accuracies(first), accuracies(second)
    return [Difference(figure, a[figure], b[figure]) for figure in a if figure in b]


def _inference(results: dict) -> str:
    inference = results["meta"].get("inference")
    if not inference:
        return "back end not recorded"
    return f"{inference['name']} ({inference['precision']} on {inference['device']})"


def report(first: dict, second: dict, names: tuple[str, str],
           tolerance: float = TOLERANCE) -> tuple[str, list[Difference]]:
    """The comparison in markdown, and the differences larger than `tolerance`."""
    differences = compare(first, second)
    over = [d for d in differences if abs(d.delta) > tolerance]
    worst = max(differences, key=lambda d: abs(d.delta), default=None)
    lines = [
        "# Two evaluation runs compared", "",
        *(f"- **{name}**: {_inference(r)}; {r['meta']['date']} on {r['meta']['machine']}; "
          f"`{r['meta']['command']}`" for name, r in zip(names, (first, second), strict=True)),
        "",
        f"{len(differences)} accuracies in both runs; the largest difference is "
        + (f"{worst.delta:+.4f} ({worst.figure})" if worst else "none")
        + f"; {len(over)} differ by more than {tolerance}.", "",
        f"## The default method ({DEFAULT}) and the paper's (Ours)", "",
        f"| figure | {names[0]} | {names[1]} | difference |", "|---|---|---|---|",
    ]
    for d in differences:
        if d.figure.startswith((f"methods / {DEFAULT} / sets", "methods / Ours / sets",
                                f"localisation / {DEFAULT} / sets")):
            lines.append(f"| {d.figure} | {d.first:.3f} | {d.second:.3f} | {d.delta:+.3f} |")
    lines += ["", f"## Every difference larger than {tolerance}", ""]
    lines += [f"- {d.figure}: {d.first:.3f} → {d.second:.3f} ({d.delta:+.3f})" for d in over]
    if not over:
        lines.append("None.")
    return "\n".join(lines) + "\n", over


def load(run: Path) -> dict:
    path = run / "results.json" if run.is_dir() else run
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"frameseek eval compare: {path}: not an evaluation's results "
                         f"({exc})") from None
