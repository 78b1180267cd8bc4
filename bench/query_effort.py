"""Benchmark: what query regions and geometric verification cost, end to end.

Each query image goes through `Index.search` (decoding, trimming, the CNN forwards of the query
and its regions, the search, the verification, the moment's refinement) at each effort, and at
the former default (the whole query only, no verification), the efforts interleaved query by
query so that other load on the machine falls on all of them alike. Prints, per effort, the
median and p95 milliseconds and the median's ratio to the former default's in the same run,
with the CPU model and the inference back end.

    python bench/query_effort.py --index DIR QUERY_DIR [--rounds 3] [--json]

QUERY_DIR: a folder of images, e.g. an eval run's queries/ (plain/, perturbed/, hard/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from frameseek.backends import describe
from frameseek.index import Index
from frameseek.regions import EFFORTS, Effort

FORMER = "former default (whole query, no verification)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("queries", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the queries")
    parser.add_argument("--limit", type=int, default=120, help="queries at most, spread evenly")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.queries.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.limit, len(files)),
                                           dtype=int)] if files else []
    efforts: dict[str, Effort] = {FORMER: Effort(insets=0, windows=False, verify=0), **EFFORTS}
    seconds: dict[str, list[float]] = {name: [] for name in efforts}
    with Index.open(args.index) as index:
        index.search(files[0])  # warm-up: the CNN's first forward, the first track read
        for _ in range(args.rounds):
            for file in files:
                for name, effort in efforts.items():
                    start = time.perf_counter()
                    index.search(file, effort=effort)
                    seconds[name].append(time.perf_counter() - start)
        backend = describe(index.extractor.backbone.backend)
    base = float(np.median(seconds[FORMER]))
    rows = {name: {"median_ms": float(np.median(s)) * 1000,
                   "p95_ms": float(np.percentile(s, 95)) * 1000,
                   "ratio": float(np.median(s)) / base} for name, s in seconds.items()}
    if args.json:
        print(json.dumps({"backend": backend, "queries": len(files), "rounds": args.rounds,
                          "efforts": rows}))
        return
    print(f"{len(files)} queries × {args.rounds} rounds; back end {backend['name']} "
          f"({backend['precision']} on {backend['device']}), CPU {backend['cpu']}")
    for name, row in rows.items():
        print(f"  {name:48s} median {row['median_ms']:6.0f} ms  p95 {row['p95_ms']:6.0f} ms  "
              f"× {row['ratio']:.2f}")


if __name__ == "__main__":
    main()
