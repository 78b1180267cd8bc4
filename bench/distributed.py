"""Ray indexing against the plain path, with the same inference back end.

    python bench/distributed.py --copies 4 [--backend NAME]   # plain, then Ray with 1 and 2 CPUs

COPIES copies of samples/videos/bikes.mp4 (10 s each) are indexed into a fresh embedded index by
the plain path (`Index.add`: a decoder thread, the CNN on every core) and by Ray on this
machine with 1 and 2 CPUs (decode tasks one per CPU, one CNN actor with the node's cores as
threads; frameseek/distributed.py). Every run takes the back end named (default: the one `auto`
picks here), the Ray workers too. Ray's start-up is timed apart; the Ray figures include the
actor loading the model. Search over the stores is `frameseek bench stores`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from frameseek import backends
from frameseek.distributed import index_with_ray
from frameseek.features import VGG16Pool5
from frameseek.index import Index

ROOT = Path(__file__).resolve().parents[1]
BIKES = ROOT / "samples" / "videos" / "bikes.mp4"


def indexing(copies: int, scratch: Path) -> dict:
    import ray

    videos = scratch / "videos"
    videos.mkdir()
    for n in range(copies):
        shutil.copy(BIKES, videos / f"bikes-{n}.mp4")
    results: dict[str, dict] = {}

    def run(name: str, add) -> None:
        with Index.create(scratch / name) as index:
            start = time.perf_counter()
            report = add(index)
            seconds = time.perf_counter() - start
        assert len(report.added) == copies, report.skipped
        duration = sum(v.duration for v in report.added)
        results[name] = {"seconds": round(seconds, 2), "videos_per_min": round(60 * copies /
                         seconds, 2), "realtime_factor": round(duration / seconds, 2),
                         "keyframes": report.keyframes}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)

    run("plain", lambda index: index.add([videos]))
    for workers in (1, 2):
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="error",
                 runtime_env={"env_vars": {backends.ENV: os.environ[backends.ENV]}})
        startup = time.perf_counter() - start
        try:
            run(f"ray-{workers}", lambda index: index_with_ray(index, [videos]))
        finally:
            ray.shutdown()
        results[f"ray-{workers}"]["ray_start_s"] = round(startup, 2)
    return {"videos": copies, "video_s_each": 10.0, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of bikes.mp4 to index")
    parser.add_argument("--backend", choices=backends.names()[1:],
                        help="inference back end for every run (default: auto's pick)")
    args = parser.parse_args()
    # Named once for every run: auto could pick differently in a worker.
    os.environ[backends.ENV] = args.backend or VGG16Pool5().backend.name
    with tempfile.TemporaryDirectory() as scratch:
        figures = indexing(args.copies, Path(scratch))
    figures["machine"] = {"cpus": os.cpu_count(), "cpu_model": backends.cpu_model(),
                          "backend": os.environ[backends.ENV], "load_average": os.getloadavg()}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
