"""`frameseek` command line: index, search, info, remove, optimize.

Exit status: 0 success; 1 error (bad query image, missing index, ...); 2 usage error;
3 `index` finished but skipped some files (listed in the summary).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from frameseek import backends
from frameseek.clips import ClipError
from frameseek.features import POOLINGS, WeightsError
from frameseek.index import Index, IndexConfig
from frameseek.query import QueryError
from frameseek.regions import DEFAULT_EFFORT
from frameseek.store.base import StoreError, VideoRecord
from frameseek.video import VIDEO_EXTENSIONS, Frame, format_time

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3

# Modules that add commands of their own: each has `register(commands)`, which adds a
# sub-parser whose defaults set `run` to a function(args) -> exit status.
COMMAND_MODULES: list[str] = ["frameseek.server.command", "frameseek.eval.command",
                              "frameseek.bench.command"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frameseek", description="Search videos by image: index once, query in milliseconds."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="add videos (files or folders) to an index")
    index.add_argument("paths", nargs="+", metavar="PATH")
    _add_location(index)
    index.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="analyse the videos on Ray: a cluster's ADDRESS, or alone for a "
                            "local Ray (put it after the paths or write --ray=ADDRESS)")
    index.add_argument("--ray-cpus", type=int, metavar="N",
                       help="CPUs of the local Ray started by --ray (default: all)")
    index.add_argument("--theta", type=_positive(float, zero=True), default=IndexConfig.theta,
                       help="key-frame threshold θ of Algorithm 1 (default %(default)s)")
    index.add_argument("--sample-fps", type=_positive(float), default=IndexConfig.sample_fps,
                       help="frames per second given to the CNN for clustering "
                            "(default %(default)s)")
    index.add_argument("--no-coverage", dest="coverage_margin", action="store_const",
                       const=None, default=IndexConfig.coverage_margin,
                       help="the paper's Algorithm 1 as it is: keep only k-means' key frames, "
                            "without adding one wherever a sampled frame would be too far from "
                            "all of them to be found (docs/keyframes.md)")
    index.add_argument("--pooling", choices=POOLINGS,
                       help="descriptor of a new index: rmac (regional, whitened: robust to "
                            "crops, screenshots and photos of screens; the default) or mean (the "
                            "paper's); an existing index keeps its own")
    index.add_argument("--quiet", action="store_true", help="no progress bars")
    backends.add_option(index)
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="find the videos and moments an image comes from")
    search.add_argument("images", nargs="+", metavar="IMAGE",
                        help="query images; a video file (by its extension) is a clip query: "
                             "where in the collection it comes from")
    _add_location(search)
    search.add_argument("--top", type=_positive(int), default=12, metavar="N")
    search.add_argument("--candidates", type=_positive(int), default=100, metavar="M",
                        help="coarse-stage candidates re-ranked on the 512-d descriptor")
    search.add_argument("--json", action="store_true", help="one JSON object per query per line")
    search.add_argument("--no-trim", dest="trim", action="store_false",
                        help="search the image as given, without cutting off uniform borders "
                             "(page, player, letterbox bars) first")
    search.add_argument("--min-similarity", type=float, default=None, metavar="S",
                        help="answer 'no match' when the best key frame is less similar than S "
                             "(cosine, -1 to 1), whatever its geometric inliers; default: the "
                             "calibrated 0.58 of an rmac index, or enough inliers "
                             "(docs/robust.md). A mean-pooled index gives no such answer")
    search.add_argument("--no-refine", dest="refine", action="store_false",
                        help="answer with key frame times only, skipping the search for the exact "
                             "moment (docs/localize.md): the fastest answer")
    effort = search.add_mutually_exclusive_group()
    effort.add_argument("--fast", dest="effort", action="store_const", const="fast",
                        help="search the whole query only (no regions); still verify the best "
                             "candidates geometrically (docs/robust.md)")
    effort.add_argument("--thorough", dest="effort", action="store_const", const="thorough",
                        help="also search windows of the query at several scales and verify "
                             "more candidates: slower, finds tighter crops")
    backends.add_option(search)
    search.set_defaults(run=_search, effort=DEFAULT_EFFORT)

    info = commands.add_parser("info", help="what an index holds")
    _add_location(info)
    info.add_argument("--json", action="store_true")
    backends.add_option(info)
    info.set_defaults(run=_info)

    remove = commands.add_parser("remove", help="remove a video from an index")
    remove.add_argument("video", metavar="VIDEO")
    _add_location(remove)
    remove.set_defaults(run=_remove)

    optimize = commands.add_parser(
        "optimize", help="retrain an index's search structure over all its videos now (searches "
                         "keep being answered meanwhile; docs/performance.md)")
    optimize.add_argument("--index", type=Path, metavar="DIR", required=True)
    optimize.set_defaults(run=_optimize)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def _positive(kind: Callable[[str], float], zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number above zero (or at least zero), refused as a usage error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"{text} must be {'zero or more' if zero else 'more than zero'}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_location(parser: argparse.ArgumentParser) -> None:
    """`--index DIR` (the embedded store) or `--store URI` (Milvus); both give `args.index`."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=Path, metavar="DIR")
    where.add_argument("--store", dest="index", metavar="URI",
                       help="milvus://HOST:PORT/COLLECTION or milvus-lite:///path/file.db "
                            "(docs/scale-out.md)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "backend", None):
        os.environ[backends.ENV] = args.backend  # see backends.add_option
    try:
        backends.requested()
    except backends.UnknownBackend as exc:  # named by the environment: argparse checked --backend
        print(f"frameseek: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except (QueryError, StoreError, WeightsError, backends.BackendError) as exc:
        print(f"frameseek: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("frameseek: interrupted; videos finished so far are kept", file=sys.stderr)
        return 130


def _index(args: argparse.Namespace) -> int:
    built = Index.stored_config(args.index)
    pooling = args.pooling or (built.pooling if built else IndexConfig.pooling)
    config = IndexConfig(theta=args.theta, sample_fps=args.sample_fps, pooling=pooling,
                         coverage_margin=args.coverage_margin)
    with Index.open(args.index, config, create=True) as index:
        progress = _Progress(bars=not args.quiet)
        if args.ray is None:
            report = index.add(args.paths, on_video=progress.on_video, on_done=progress.on_done)
        else:
            from frameseek.distributed import index_with_ray

            report = index_with_ray(index, args.paths, address=args.ray, num_cpus=args.ray_cpus,
                                    on_done=progress.on_done)
    print(
        f"indexed {len(report.added)} videos ({len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped): {report.frames} frames → {report.keyframes} key frames, "
        f"compression ratio {report.compression_ratio:.2%}, {report.seconds:.1f} s"
    )
    for path, reason in report.skipped.items():
        print(f"skipped {path}: {reason}")
    return EXIT_SKIPPED if report.skipped else EXIT_OK


class _Progress:
    """A progress bar per video while it decodes, then one line with its outcome."""

    def __init__(self, bars: bool) -> None:
        self.bars = bars
        self._bar = None

    def on_video(self, path: Path, frames: int) -> Callable[[Frame], None] | None:
        if not self.bars:
            return None
        from tqdm import tqdm

        self._bar = tqdm(total=frames or None, desc=path.name[:40], unit="frame", leave=False,
                         file=sys.stderr)
        return lambda _frame: self._bar.update()

    def on_done(self, path: Path, record: VideoRecord | None, reason: str | None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if record is not None and reason is None:
            print(f"{path}: {record.frames} frames, {record.keyframes} key frames "
                  f"(compression {record.compression_ratio:.2%})", flush=True)


def _search(args: argparse.Namespace) -> int:
    status = EXIT_OK
    with Index.open(args.index) as index:
        for image in args.images:
            if Path(image).suffix.lower() in VIDEO_EXTENSIONS:
                status = max(status, _search_clip(index, image, args))
                continue
            try:
                answer = index.answer(image, top=args.top, candidates=args.candidates,
                                      refine=args.refine, trim=args.trim, effort=args.effort,
                                      min_similarity=args.min_similarity)
            except QueryError as exc:
                print(f"frameseek: {exc}", file=sys.stderr)
                status = EXIT_ERROR
                continue
            matches = answer.results
            verdict = index.verdict(matches, args.min_similarity)
            if args.json:
                said = verdict.to_json() if verdict else {"match": None}
                print(json.dumps({"query": image, **said,
                                  "results": [m.to_json() for m in matches],
                                  "videos": [v.to_json() for v in answer.videos]}))
                continue
            print(f"{image}:")
            if verdict is not None and not verdict.match:
                checked = ("" if verdict.inliers is None or args.min_similarity is not None else
                           f" and its {verdict.inliers} geometric inliers below "
                           f"{verdict.min_inliers}")
                print(f"  no match: the nearest key frame's similarity {verdict.similarity:.2f} "
                      f"is below {verdict.threshold:.2f}{checked}; nearest anyway:")
            for rank, m in enumerate(matches, 1):
                found = (f"  (key frame {format_time(m.keyframe_time)}, segment "
                         f"{m.segment[0]:.2f}-{m.segment[1]:.2f} s)" if m.refined else "")
                print(f"  {rank:2d}. {m.video}  {format_time(m.time)}  ({m.time:.2f} s, "
                      f"frame {m.frame})  distance {m.distance:.2f}{found}")
            if answer.videos:
                print("  where it appears:")
            for video in answer.videos:
                times = ", ".join(format_time(moment.time) for moment in video.moments)
                print(f"    {video.video}  similarity {video.score:.2f}  {video.appearances} "
                      f"appearance{'s' * (video.appearances != 1)}, {video.seconds:.1f} s: "
                      f"{times}")
    return status


def _search_clip(index: Index, clip: str, args: argparse.Namespace) -> int:
    try:
        answer = index.search_clip(clip, args.min_similarity, trim=args.trim)
    except ClipError as exc:
        print(f"frameseek: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"query": clip, **answer.to_json()}))
        return EXIT_OK
    found = "no match" if answer.match is False else f"{len(answer.segments)} segment(s)"
    print(f"{clip}: a clip of {answer.duration:.1f} s ({answer.samples} frames searched): {found}")
    for rank, segment in enumerate(answer.segments, 1):
        print(f"  {rank:2d}. {segment.video}  {format_time(segment.start)}-"
              f"{format_time(segment.end)}  is the clip's {segment.query_start:.1f}-"
              f"{segment.query_end:.1f} s  (similarity {segment.score:.2f}, "
              f"{segment.samples} frames agree)")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    with Index.open(args.index) as index:
        info = index.info()
        videos = index.videos()
        backend = index.extractor.backbone.backend
    info["backend"] = backends.describe(backend)
    if args.json:
        info["videos"] = [
            {"path": v.path, "duration_s": v.duration, "frames": v.frames,
             "keyframes": v.keyframes, "coverage_keyframes": v.coverage_keyframes,
             "compression_ratio": round(v.compression_ratio, 4)}
            for v in videos
        ]
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"{info['index']}: {info['videos']} videos, {info['duration_s']:.1f} s, "
          f"{info['frames']} frames, {info['keyframes']} key frames "
          f"({info['coverage_keyframes']} added for coverage; "
          f"compression {info['compression_ratio']:.2%})")
    # Indexes built before back ends were recorded, and empty ones, name none.
    print(f"  vectors computed by: {', '.join(info['inference']) or 'not recorded'}")
    print(f"  queries run on: {backends.summary(backend)}")
    for v in videos:
        print(f"  {v.path}  {format_time(v.duration)}  {v.frames} frames  {v.keyframes} key "
              f"frames ({v.coverage_keyframes} for coverage)  ({v.compression_ratio:.2%})")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    with Index.open(args.index) as index:
        if index.remove(args.video):
            print(f"removed {args.video}")
            return EXIT_OK
    print(f"frameseek: {args.video} is not in {args.index}", file=sys.stderr)
    return EXIT_ERROR


def _optimize(args: argparse.Namespace) -> int:
    with Index.open(args.index) as index:
        print(f"{args.index}: optimizing", flush=True)
        print(f"{args.index}: {index.optimize()}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
