"""Does OpenVINO's compiled-model cache (`CACHE_DIR`) shorten frameseek's start-up on this CPU?

Each trial is a fresh process that compiles the cut VGG16 file (cached by frameseek) as
frameseek/backends/openvino.py does and runs one 224-px forward; it is timed without a cache,
with an empty cache (which the compile fills) and with that filled cache, the three taking turns.

    python bench/openvino_cache.py [--precision bf16] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TRIAL = """
import json, sys, time
import numpy as np
from frameseek.backends import usable_cpus
from frameseek.backends.openvino import OPENVINO_PRECISION, _core
from frameseek.features import pool5_model

model, precision, cache = pool5_model(), sys.argv[1], sys.argv[2]
config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
          "INFERENCE_NUM_THREADS": usable_cpus(), "PERFORMANCE_HINT": "LATENCY"}
if cache:
    config["CACHE_DIR"] = cache
start = time.perf_counter()
core = _core()
compiled = core.compile_model(str(model), "CPU", config)
compiled_s = time.perf_counter() - start
compiled.create_infer_request().infer({0: np.zeros((1, 224, 224, 3), np.float32)})
print(json.dumps({"compile_s": compiled_s, "first_forward_s": time.perf_counter() - start}))
"""


def trial(precision: str, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", TRIAL, precision, cache], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    kinds = ("no cache", "empty cache", "filled cache")
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory() as cache:
            results["no cache"].append(trial(args.precision, ""))
            results["empty cache"].append(trial(args.precision, cache))
            results["filled cache"].append(trial(args.precision, cache))
            size_mb = sum(f.stat().st_size for f in Path(cache).iterdir()) / 2**20
    print(f"OpenVINO CPU, {args.precision}, medians of {args.trials} fresh processes; "
          f"cache {size_mb:.0f} MB")
    for kind in kinds:
        compile_s = statistics.median(r["compile_s"] for r in results[kind])
        first = statistics.median(r["first_forward_s"] for r in results[kind])
        print(f"  {kind:13} read + compile {compile_s:.2f} s, to the first result {first:.2f} s")


if __name__ == "__main__":
    main()
