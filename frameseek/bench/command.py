"""`frameseek bench search`, `bench index`, `bench backends`, `bench scale` and `bench stores`:
see bench/README.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from frameseek import backends
from frameseek.bench import THUMBNAIL_BYTES
from frameseek.features import POOLINGS
from frameseek.index import IndexConfig

SAMPLE_VIDEO = Path("samples/videos/big_buck_bunny_60s.mp4")


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="measure search and indexing speed")
    kinds = bench.add_subparsers(dest="bench", required=True)

    search = kinds.add_parser("search", help="search speed and recall at N key frames")
    search.add_argument("--keyframes", type=int, required=True, metavar="N")
    search.add_argument("--queries", type=int, default=200, metavar="Q")
    source = search.add_mutually_exclusive_group()
    source.add_argument("--index", type=Path, metavar="DIR",
                        help="take the real descriptors from this index (default: index the "
                             "sample videos)")
    source.add_argument("--descriptors", type=Path, nargs="+", metavar="NPZ",
                        help="take them from .npz files with a 'descriptors' array instead, e.g. "
                             "an eval run's cache/analysis/*.npz (every sampled frame)")
    search.add_argument("--methods", nargs="+", metavar="NAME",
                        help="only these methods (faiss-flat512 always runs: it is the truth)")
    search.add_argument("--nprobe", type=int, nargs="+", metavar="N",
                        help="measure each IVF method once per value of cells visited per query "
                             "(default: the product's, frameseek.search.DEFAULT_NPROBE)")
    search.add_argument("--noise", type=float, default=0.1,
                        help="noise, in per-dimension standard deviations (default %(default)s)")
    search.add_argument("--json", action="store_true", help="one JSON object on stdout")
    backends.add_option(search)
    search.set_defaults(run=_search)

    index = kinds.add_parser("index", help="index one video from scratch and time each stage")
    index.add_argument("video", type=Path, metavar="VIDEO")
    index.add_argument("--queries", type=int, default=5, metavar="K",
                       help="end-to-end queries timed on the new index (default %(default)s)")
    index.add_argument("--cluster-size", type=int, metavar="PX",
                       help="cluster cheaper CNN features at this input size (e.g. 112); "
                            "default: the paper's full descriptors")
    index.add_argument("--pooling", choices=POOLINGS, default=IndexConfig.pooling,
                       help="the index's descriptor (default %(default)s)")
    index.add_argument("--no-coverage", dest="coverage_margin", action="store_const",
                       const=None, default=IndexConfig.coverage_margin,
                       help="the paper's Algorithm 1 as it is (implied by --cluster-size)")
    index.add_argument("--json", action="store_true", help="one JSON object on stdout")
    backends.add_option(index)
    index.set_defaults(run=_index)

    compare = kinds.add_parser("backends", help="the inference back ends side by side: ms per "
                                                "image at batch 1 and 8, agreement with fp32")
    compare.add_argument("--video", type=Path, default=SAMPLE_VIDEO,
                         help="frames to run on (default %(default)s)")
    compare.add_argument("--backends", nargs="+", choices=backends.names()[1:], metavar="NAME",
                         help="only these (default: every one available here)")
    compare.add_argument("--rounds", type=int, default=5, metavar="N",
                         help="timed forwards per back end and batch size (default %(default)s)")
    compare.add_argument("--size", type=int, default=IndexConfig.input_size, metavar="PX",
                         help="input side in pixels (default %(default)s)")
    compare.add_argument("--json", action="store_true", help="one JSON object on stdout")
    compare.set_defaults(run=_backends)

    scale = kinds.add_parser("scale", help="build an on-disk index of N synthetic key frames, "
                                           "then time its open, searches and growth")
    scale.add_argument("--keyframes", type=int, required=True, metavar="N")
    scale.add_argument("--dir", type=Path, metavar="DIR",
                       help="build it here and keep it, or measure again the index an earlier "
                            "run built here (default: a temporary one, deleted after)")
    scale.add_argument("--source", type=Path, metavar="DIR",
                       help="draw the descriptors from this index's (default: index the sample "
                            "videos)")
    scale.add_argument("--thumbnail-bytes", type=int, default=THUMBNAIL_BYTES, metavar="B",
                       help="bytes of each synthetic thumbnail (default %(default)s, the size "
                            "of real ones; 0 keeps none, where the disk cannot hold them: they "
                            "live in the database, apart from the vectors that are searched)")
    scale.add_argument("--json", action="store_true", help="one JSON object on stdout")
    scale.set_defaults(run=_scale)

    stores = kinds.add_parser("stores", help="the embedded store and Milvus Lite filled with the "
                                             "same N synthetic key frames: recall, latency, "
                                             "fill time, disk")
    stores.add_argument("--keyframes", type=int, required=True, metavar="N")
    stores.add_argument("--queries", type=int, default=100, metavar="Q")
    stores.add_argument("--index", type=Path, metavar="DIR",
                        help="take the real descriptors from this index (default: index the "
                             "sample videos)")
    stores.add_argument("--stores", nargs="+", choices=["embedded", "milvus-lite"],
                        metavar="NAME", help="only these (default: both)")
    stores.add_argument("--json", action="store_true", help="one JSON object on stdout")
    stores.set_defaults(run=_stores)


def _search(args: argparse.Namespace) -> int:
    from frameseek.bench import search

    if args.keyframes < 1 or args.queries < 1:
        print("frameseek: --keyframes and --queries must be at least 1", file=sys.stderr)
        return 2
    progress = None if args.json else print
    try:
        report = search.run(args.keyframes, args.queries, args.methods, args.index, args.noise,
                            progress=progress, nprobes=args.nprobe,
                            descriptor_files=args.descriptors)
    except ValueError as exc:
        print(f"frameseek: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a --descriptors file missing or unreadable
        print(f"frameseek: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"CPU {report['machine']['cpu_model']}; descriptors computed by "
          f"{', '.join(report['descriptors_by']) or 'unrecorded'}")
    print(f"{'method':28} {'ms/q':>8} {'p95':>8} {'batch':>8} {'recall@12':>9} "
          f"{'B/kf':>7} {'build s':>8}")
    for name, r in report["methods"].items():
        print(f"{name:28} {r['ms_per_query']:8.3f} {r['p95_ms']:8.3f} "
              f"{r['batch_ms_per_query']:8.3f} {r['recall_at_12']:9.4f} "
              f"{r['bytes_per_keyframe']:7.0f} {r['build_s']:8.1f}")
    return 0


def _scale(args: argparse.Namespace) -> int:
    from frameseek.bench import scale

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = scale.run(args.keyframes, args.dir, args.source, say,
                           thumbnail_bytes=args.thumbnail_bytes)
    except ValueError as exc:
        print(f"frameseek: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else
          "\n".join(f"{name:28} {value}" for name, value in report.items()))
    return 0


def _stores(args: argparse.Namespace) -> int:
    try:
        from frameseek.bench import stores
    except ImportError:
        print("frameseek: bench stores needs Milvus: pip install 'frameseek[scale]'",
              file=sys.stderr)
        return 1
    if args.keyframes < 1 or args.queries < 1:
        print("frameseek: --keyframes and --queries must be at least 1", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = stores.run(args.keyframes, args.queries, args.index, args.stores, say)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['keyframes']} key frames, {report['queries']} queries; CPU "
          f"{report['machine']['cpu_model']}")
    print(f"{'store':12} {'recall@12':>9} {'ms median':>9} {'p95':>8} {'fill s':>8} {'B/kf':>7}")
    for name, r in report["stores"].items():
        print(f"{name:12} {r['recall_at_12']:9.4f} {r['ms_median']:9.2f} {r['ms_p95']:8.2f} "
              f"{r['fill_s']:8.1f} {r['disk_bytes_per_keyframe']:7d}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from frameseek.bench import index
    from frameseek.video import VideoError

    try:
        # The cheaper clustering stores descriptors for key frames only: no coverage with it.
        config = IndexConfig(cluster_size=args.cluster_size, pooling=args.pooling,
                             coverage_margin=None if args.cluster_size else args.coverage_margin)
        report = index.run(args.video, config, queries=args.queries)
    except VideoError as exc:
        print(f"frameseek: {args.video}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['video']}: {report['video_s']:.1f} s of video in {report['wall_s']:.1f} s "
          f"({report['realtime_factor']:.2f}x real time), peak RSS {report['peak_rss_mb']:.0f} MB,"
          f" {report['keyframes']} key frames ({report['coverage_keyframes']} for coverage)")
    backend = report["backend"]
    print(f"  back end {backend['name']} ({backend['precision']} on {backend['device']}), "
          f"CPU {backend['cpu']}")
    for stage, seconds in report["stages"].items():
        print(f"  {stage:12} {seconds:8.2f} s")
    print("  in the decoder thread, overlapping the stages above:")
    for stage, seconds in report["decoder_thread"].items():
        print(f"    {stage:10} {seconds:8.2f} s")
    if report["query_ms"]:
        q = report["query_ms"]
        print(f"  query (image file → results): median {q['median']} ms, p95 {q['p95']} ms")
    return 0


def _backends(args: argparse.Namespace) -> int:
    from frameseek.bench import backends as compare
    from frameseek.video import VideoError

    if args.rounds < 1 or args.size < 32:
        print("frameseek: --rounds must be at least 1 and --size at least 32", file=sys.stderr)
        return 2
    try:
        report = compare.run(args.video, args.backends, args.rounds, args.size,
                             progress=None if args.json else print)
    except VideoError as exc:
        print(f"frameseek: {args.video}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"CPU {report['cpu_model']} (native bf16: {report['native_bf16'] or 'none'}), "
          f"{report['threads']} threads, {report['input_size']} px, {report['frames']}, "
          f"load average {report['load_average']['before']:.2f} → "
          f"{report['load_average']['after']:.2f}; auto picks {report['auto']}")
    print(f"{'back end':18} {'precision':>9} {'device':>6} {'load s':>7} {'ms/img b1':>10} "
          f"{'ms/img b8':>10} {'cos vs ' + report['reference']:>24}")
    for name, r in report["backends"].items():
        print(f"{name:18} {r['precision']:>9} {r['device']:>6} {r['load_s']:7.2f} "
              f"{r['ms_per_image_batch1']:10.1f} {r['ms_per_image_batch8']:10.1f} "
              f"{r['min_cosine_vs_reference']:24.6f}")
    for name, reason in report["unavailable"].items():
        print(f"{name:18} unavailable: {reason}")
    return 0
