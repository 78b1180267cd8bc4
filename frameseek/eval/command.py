"""`frameseek eval run`: the paper's experiments on a corpus, written up as a report;
`frameseek eval compare`: two such runs' accuracies side by side; `frameseek eval clips`: clip
queries cut from the corpus; `frameseek eval recurring`: every moment a picture appears."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from frameseek import backends
from frameseek.index import IndexConfig

SMOKE_QUERIES_PER_VIDEO = 3


def register(commands: argparse._SubParsersAction) -> None:
    evaluation = commands.add_parser("eval", help="reproduce the paper's experiments")
    actions = evaluation.add_subparsers(dest="eval_command", required=True)
    runner = actions.add_parser(
        "run", help="all methods, both query sets, θ sweep and gallery → report.md, results.json")
    runner.add_argument("--corpus", required=True, type=Path, metavar="DIR",
                        help="a corpus directory (manifest.json) or any folder of videos")
    runner.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="where the report, queries and caches go (reruns reuse the caches)")
    runner.add_argument("--queries-per-video", type=int, default=None, metavar="K",
                        help=f"queries per query video and set (default 5, smoke "
                             f"{SMOKE_QUERIES_PER_VIDEO})")
    runner.add_argument("--seed", type=int, default=0, metavar="S")
    runner.add_argument("--sample-fps", type=float, default=IndexConfig.sample_fps,
                        metavar="F", help="frames per second given to the CNN, as in "
                        "`frameseek index --sample-fps` (default %(default)s)")
    runner.add_argument("--no-coverage", dest="coverage_margin", action="store_const",
                        const=None, default=IndexConfig.coverage_margin,
                        help="the R-MAC indexes without the coverage guarantee's key frames, as "
                             "`frameseek index --no-coverage`")
    runner.add_argument("--smoke", action="store_true",
                        help="a quick run: fewer queries, three θ values")
    backends.add_option(runner)
    runner.set_defaults(run=_run)
    comparer = actions.add_parser(
        "compare", help="two runs' accuracies side by side (e.g. an fp32 and a bf16 back end), "
                        "exit 1 if any differs by more than the tolerance")
    comparer.add_argument("first", type=Path, metavar="RUN", help="an eval run's --out folder")
    comparer.add_argument("second", type=Path, metavar="RUN")
    comparer.add_argument("--names", nargs=2, metavar=("FIRST", "SECOND"),
                          help="column titles (default: the runs' back ends)")
    comparer.add_argument("--tolerance", type=float, default=0.005, metavar="T")
    comparer.add_argument("--out", type=Path, metavar="FILE",
                          help="write the markdown here (default: stdout)")
    comparer.set_defaults(run=_compare)
    clips = actions.add_parser(
        "clips", help="clip queries cut from the corpus (re-encoded, smaller, other frame rate, "
                      "cropped, overlaid, joined; outside ones) searched in an index of it")
    _over_an_index(clips)
    clips.add_argument("--seed", type=int, default=0, metavar="S")
    clips.set_defaults(run=_clips)
    recurring = actions.add_parser(
        "recurring", help="every moment a picture appears: frames of the corpus searched, "
                          "their answered moments scored against the pixels' own recurrences")
    _over_an_index(recurring)
    recurring.set_defaults(run=_recurring)


def _over_an_index(parser: argparse.ArgumentParser) -> None:
    """The options of the evaluations that search an existing index of the corpus."""
    parser.add_argument("--corpus", required=True, type=Path, metavar="DIR")
    parser.add_argument("--index", required=True, type=Path, metavar="DIR",
                        help="an index of the corpus, e.g. an eval run's out/index/rmac")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    backends.add_option(parser)


def _run(args: argparse.Namespace) -> int:
    # Imported here: the harness pulls in scikit-learn and matplotlib, seconds that every other
    # `frameseek` command would pay at start-up.
    from frameseek.eval.methods import DEFAULT
    from frameseek.eval.run import Settings, run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    per_video = args.queries_per_video or (SMOKE_QUERIES_PER_VIDEO if args.smoke else 5)
    settings = Settings(corpus=args.corpus, out=args.out, per_video=per_video, seed=args.seed,
                        smoke=args.smoke, sample_fps=args.sample_fps,
                        coverage_margin=args.coverage_margin,
                        command="frameseek " + shlex.join(sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(settings)
    top1 = {name: results["methods"][name]["sets"] for name in ("Ours", DEFAULT)}
    print(f"report: {args.out / 'report.md'} (top-1 video, plain / perturbed: " + "; ".join(
        f"{name} {sets['plain']['top1_video']:.3f} / {sets['perturbed']['top1_video']:.3f}"
        for name, sets in top1.items()) + ")")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from frameseek.eval import compare

    first, second = compare.load(args.first), compare.load(args.second)
    names = tuple(args.names or (_backend_name(first, args.first),
                                 _backend_name(second, args.second)))
    text, over = compare.report(first, second, names, args.tolerance)  # type: ignore[arg-type]
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"{args.out}: {len(over)} accuracies differ by more than {args.tolerance}")
    return 1 if over else 0


def _backend_name(results: dict, run: Path) -> str:
    return (results["meta"].get("inference") or {}).get("name") or str(run)


def _clips(args: argparse.Namespace) -> int:
    from frameseek.eval import clips

    args.out.mkdir(parents=True, exist_ok=True)
    results = clips.run(args.corpus, args.index, args.out, args.seed,
                        "frameseek " + shlex.join(sys.argv[1:]))
    print(f"{args.out / 'clips.md'}: clips from indexed videos found "
          f"{results['inside_found']:.3f}; " + "; ".join(
              f"{kind} {row['found']:.3f}" for kind, row in results["kinds"].items()))
    return 0


def _recurring(args: argparse.Namespace) -> int:
    from frameseek.eval import recurring

    args.out.mkdir(parents=True, exist_ok=True)
    results = recurring.run(args.corpus, args.index, args.out,
                            "frameseek " + shlex.join(sys.argv[1:]))
    found = results["recurring"]
    print(f"{args.out / 'recurring.md'}: {found['queries']} recurring pictures, true moments "
          f"listed {found['listed']}, answered moments true {found['true']}")
    return 0
