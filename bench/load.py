"""Load test: N concurrent clients send M searches each to a real `frameseek serve` on loopback.

Starts the server on a free 127.0.0.1 port, as a team would expose it (it needs a token; its
per-client rate limit is off, as all the load comes from this one client, and it admits as many
searches at once as there are clients, so that none is refused), waits for /healthz, sends one
warm-up search, then runs the clients (each one request at a time, a different query image per
request) until every search is answered or --max-seconds pass, and stops the server. Prints the
error count (the run fails unless it is zero), throughput, p50/p95/p99 latency, the median of
each stage the server reports (`stages_ms`), how many queries shared each CNN forward, the load
average, and the server's resident memory at start, middle and end.

    python bench/load.py [--index DIR] [--clients 8] [--searches 25] [--max-seconds 600] [--json]

`--overload F` measures instead what the server does past its capacity: the p95 of searches
sent one at a time (unloaded), the sustainable rate (the throughput of as many closed-loop
clients as the server admits searches at once, `--max-searches`), then searches arriving at F
times that rate, evenly spaced, for `--seconds`, whatever the answers. It prints the 5xx answers
other than the intended 503, the 503s, the p95 of the answered searches against the unloaded
p95, and the server's memory before, at its peak during and after the overload. The run fails
on any 5xx but 503 or a connection error.

    python bench/load.py --overload 4 [--seconds 30] [--unloaded 20] [--max-searches N] [--json]

Without --index, an index of samples/videos is built in a temporary folder first.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from frameseek.server.limits import DEFAULT_MAX_SEARCHES

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
STARTUP_SECONDS = 180  # model load and index open on a busy 2-core machine
REQUEST_SECONDS = 120
TOKEN = uuid.uuid4().hex  # this run's; the server needs it, as an exposed one would
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def query_images(per_video: int = 4) -> list[bytes]:
    """samples/query.jpg and a few frames of each sample video, as JPEG uploads."""
    from frameseek.video import iter_frames

    images = [(SAMPLES / "query.jpg").read_bytes()]
    for video in sorted((SAMPLES / "videos").glob("*.mp4")):
        frames = list(iter_frames(video))
        for frame in frames[:: max(1, len(frames) // per_video)][:per_video]:
            buffer = io.BytesIO()
            Image.fromarray(frame.rgb()).save(buffer, format="JPEG", quality=90)
            images.append(buffer.getvalue())
    return images


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"query.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    return body + image + f"\r\n--{boundary}--\r\n".encode(), boundary


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    stages_ms: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def search(port: int, image: bytes, top: int = 12) -> tuple[int, dict]:
    body, boundary = multipart(image)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
    try:
        connection.request("POST", f"/api/search?top={top}", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}", **AUTH})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    return response.status, json.loads(payload) if payload else {}


def server_stats(port: int) -> dict:
    """/api/stats: the inference back end the server runs queries on, and its counters."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
    try:
        connection.request("GET", "/api/stats", headers=AUTH)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def client(port: int, images: list[bytes], searches: int, first: int, deadline: float,
           tally: Tally) -> None:
    for number in range(searches):
        if time.monotonic() > deadline:
            return
        start = time.perf_counter()
        try:
            status, answer = search(port, images[(first + number) % len(images)])
            problem = None if status == 200 and answer.get("results") else f"HTTP {status}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        with tally.lock:
            if problem:
                tally.errors.append(problem)
            else:
                tally.latencies.append(time.perf_counter() - start)
                tally.stages_ms.append(answer["stages_ms"])


def wait_until_ready(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer /healthz within {STARTUP_SECONDS} s")


def build_sample_index(directory: Path) -> Path:
    from frameseek.index import Index

    with Index.create(directory) as index:
        index.add([SAMPLES / "videos"])
    return directory


@contextmanager
def serving(index: Path, *options: str) -> Iterator[tuple[int, int]]:
    """`frameseek serve` on a free loopback port, until the block ends: (port, server pid)."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "frameseek.cli", "serve", "--index", str(index),
             "--host", "127.0.0.1", "--port", str(port), "--rate-limit", "0",
             "--access-log", "off", *options],
            stdout=log, stderr=log, env={**os.environ, "FRAMESEEK_TOKEN": TOKEN})
        try:
            wait_until_ready(port, server)
            yield port, server.pid
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def run(index: Path, clients: int, searches: int, max_seconds: float) -> dict:
    images = query_images()
    with serving(index, "--max-searches", str(clients)) as (port, pid):
        rss = {"ready": rss_mb(pid)}
        status, answer = search(port, images[0])  # warm-up: the CNN's first run is slow
        if status != 200:
            raise SystemExit(f"warm-up search failed: HTTP {status} {answer}")
        rss["start"] = rss_mb(pid)
        before = server_stats(port)
        tally = Tally()
        total = clients * searches
        deadline = time.monotonic() + max_seconds
        threads = [threading.Thread(target=client, args=(port, images, searches, n * searches,
                                                         deadline, tally), daemon=True)
                   for n in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads) and "middle" not in rss:
            if len(tally.latencies) + len(tally.errors) >= total // 2:
                rss["middle"] = rss_mb(pid)
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        rss["end"] = rss_mb(pid)
        after = server_stats(port)
    answered = len(tally.latencies)
    ms = np.array(tally.latencies) * 1000 if answered else np.zeros(1)
    return {
        "clients": clients, "searches_per_client": searches, "requested": total,
        "answered": answered, "errors": len(tally.errors), "error_kinds": sorted(set(tally.errors)),
        "not_sent": total - answered - len(tally.errors), "wall_s": round(wall, 2),
        "throughput_per_s": round(answered / wall, 2),
        "latency_ms": {f"p{p}": round(float(np.percentile(ms, p)), 1) for p in (50, 95, 99)},
        "server_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "stages_ms_median": {stage: round(float(np.median([s[stage] for s in tally.stages_ms])), 1)
                             for stage in (tally.stages_ms[0] if tally.stages_ms else {})},
        "batching": batching(before["server"]["batching"], after["server"]["batching"]),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "backend": after["backend"],
    }


def percentile_ms(seconds: list[float], p: float) -> float:
    return round(float(np.percentile(np.array(seconds) * 1000, p)), 1) if seconds else float("nan")


@dataclass
class Outcome:
    status: int  # 0: no answer (connection error)
    seconds: float


def timed_search(port: int, image: bytes) -> Outcome:
    start = time.perf_counter()
    try:
        status, _ = search(port, image)
    except (OSError, http.client.HTTPException, ValueError):
        status = 0
    return Outcome(status, time.perf_counter() - start)


class MemoryWatch:
    """The server's peak resident memory, sampled every 0.2 s while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mb(self.pid))


def overload(index: Path, factor: float, seconds: float, unloaded: int,
             max_searches: int) -> dict:
    images = query_images()
    with serving(index, "--max-searches", str(max_searches)) as (port, pid):
        for image in images[:2]:  # warm-up: the CNN's first runs are slow
            if timed_search(port, image).status != 200:
                raise SystemExit("warm-up search failed")
        alone = [timed_search(port, images[n % len(images)]) for n in range(unloaded)]
        # Sustainable: what closed-loop clients get answered per second, each waiting for its
        # answer before sending the next.
        tally = Tally()
        began = time.perf_counter()
        threads = [threading.Thread(target=client, args=(port, images, 4, n * 4,
                                                         time.monotonic() + 600, tally))
                   for n in range(max_searches)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sustainable = len(tally.latencies) / (time.perf_counter() - began)
        rate = factor * sustainable
        rss_before = rss_mb(pid)
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def send(number: int) -> None:
            outcome = timed_search(port, images[number % len(images)])
            with lock:
                outcomes.append(outcome)

        # Open loop: arrivals at the rate, answered or not, each on its own thread.
        workers: list[threading.Thread] = []
        with MemoryWatch(pid) as memory:
            start = time.perf_counter()
            for number in range(int(rate * seconds)):
                time.sleep(max(0.0, start + number / rate - time.perf_counter()))
                worker = threading.Thread(target=send, args=(number,), daemon=True)
                worker.start()
                workers.append(worker)
            for worker in workers:
                worker.join(REQUEST_SECONDS)
            sent_s = time.perf_counter() - start
        rss_after = rss_mb(pid)
        stats = server_stats(port)
    answered = [o.seconds for o in outcomes if o.status == 200]
    busy = [o.seconds for o in outcomes if o.status == 503]
    statuses: dict[int, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    unloaded_p95 = percentile_ms([o.seconds for o in alone if o.status == 200], 95)
    loaded_p95 = percentile_ms(answered, 95)
    return {
        "factor": factor, "max_searches": max_searches, "seconds": seconds,
        "unloaded": {"searches": unloaded, "p50_ms": percentile_ms([o.seconds for o in alone], 50),
                     "p95_ms": unloaded_p95},
        "sustainable_per_s": round(sustainable, 2), "offered_per_s": round(rate, 2),
        "sent": len(outcomes), "wall_s": round(sent_s, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "answered_per_s": round(len(answered) / sent_s, 2),
        "server_errors_not_503": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
        "no_answer": statuses.get(0, 0),
        "answered_ms": {"p50": percentile_ms(answered, 50), "p95": loaded_p95},
        "busy_503_ms": {"p50": percentile_ms(busy, 50), "p95": percentile_ms(busy, 95)},
        "p95_ratio": round(loaded_p95 / unloaded_p95, 2),
        "server_rss_mb": {"before": round(rss_before, 1), "peak": round(memory.peak, 1),
                          "after": round(rss_after, 1)},
        "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
        "backend": stats["backend"],
    }


def print_overload(report: dict) -> None:
    backend = report["backend"]
    print(f"server back end {backend['name']} ({backend['precision']} on {backend['device']}), "
          f"CPU {backend['cpu']}, --max-searches {report['max_searches']}")
    unloaded, answered, rss = report["unloaded"], report["answered_ms"], report["server_rss_mb"]
    print(f"unloaded ({unloaded['searches']} searches one at a time): p50 {unloaded['p50_ms']} "
          f"ms, p95 {unloaded['p95_ms']} ms")
    print(f"sustainable {report['sustainable_per_s']} searches/s; offered {report['factor']}x = "
          f"{report['offered_per_s']}/s for {report['seconds']} s: {report['sent']} sent")
    print(f"answers: {report['statuses']} (0: no answer); answered {report['answered_per_s']}/s")
    print(f"5xx other than 503: {report['server_errors_not_503']}, no answer: "
          f"{report['no_answer']}")
    print(f"answered searches p50 {answered['p50']} ms, p95 {answered['p95']} ms = "
          f"{report['p95_ratio']}x the unloaded p95")
    print(f"503 answers p50 {report['busy_503_ms']['p50']} ms, "
          f"p95 {report['busy_503_ms']['p95']} ms")
    print(f"server RSS: before {rss['before']} MB, peak {rss['peak']} MB, after {rss['after']} MB")
    print(f"load average at the end: {' '.join(map(str, report['load_average']))}")


def batching(before: dict, after: dict) -> dict:
    """The run's CNN forwards: how many, and how many queries shared each."""
    forwards = after["batches"] - before["batches"]
    queries = after["queries"] - before["queries"]
    return {"window_ms": after["window_ms"], "forwards": forwards,
            "queries_per_forward": round(queries / forwards, 2) if forwards else 0.0,
            "largest": after["largest"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="index to serve (default: samples/videos)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--searches", type=int, default=25, help="searches per client")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="stop sending after this long, answered or not")
    parser.add_argument("--overload", type=float, metavar="F",
                        help="offer F times the sustainable rate instead (see above)")
    parser.add_argument("--seconds", type=float, default=30, help="--overload: how long")
    parser.add_argument("--unloaded", type=int, default=20,
                        help="--overload: searches sent one at a time for the unloaded p95")
    parser.add_argument("--max-searches", type=int, default=DEFAULT_MAX_SEARCHES,
                        help="--overload: the server's --max-searches (default, as the "
                             "server's: %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        index = args.index or build_sample_index(Path(scratch) / "index")
        if args.overload:
            report = overload(index, args.overload, args.seconds, args.unloaded,
                              args.max_searches)
        else:
            report = run(index, args.clients, args.searches, args.max_seconds)
    if args.overload:
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_overload(report)
        ok = report["server_errors_not_503"] == 0 and report["no_answer"] == 0
        print("zero 5xx but 503, every search answered: " + ("yes" if ok else "NO"))
        return 0 if ok else 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        rss = report["server_rss_mb"]
        latency = report["latency_ms"]
        backend = report["backend"]
        print(f"server back end {backend['name']} ({backend['precision']} on "
              f"{backend['device']}), CPU {backend['cpu']}")
        print(f"{report['clients']} clients × {report['searches_per_client']} searches: "
              f"{report['answered']}/{report['requested']} answered, {report['errors']} errors, "
              f"{report['not_sent']} not sent (time limit)")
        print(f"throughput {report['throughput_per_s']} searches/s over {report['wall_s']} s")
        print(f"latency p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms")
        stages = ", ".join(f"{k} {v}" for k, v in report["stages_ms_median"].items())
        print(f"server stages, median ms: {stages}")
        shared = report["batching"]
        print(f"CNN forwards: {shared['forwards']}, {shared['queries_per_forward']} queries each "
              f"(largest {shared['largest']}, window {shared['window_ms']} ms), "
              f"{shared['busy']} refused busy")
        print(f"load average at the end: {' '.join(map(str, report['load_average']))}")
        print(f"server RSS: ready {rss['ready']} MB, start {rss['start']} MB, "
              f"middle {rss.get('middle', float('nan'))} MB, end {rss['end']} MB")
        for kind in report["error_kinds"]:
            print(f"error: {kind}")
    ok = report["errors"] == 0 and report["not_sent"] == 0
    print("zero errors: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
