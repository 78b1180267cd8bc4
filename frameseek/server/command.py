"""The `serve` sub-command: open an index once and answer HTTP until interrupted."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from frameseek import backends
from frameseek.index import Index
from frameseek.query import MAX_PIXELS
from frameseek.server.batching import DEFAULT_MAX_QUEUED, DEFAULT_WINDOW_MS

DEFAULT_MAX_UPLOAD_MB = 20.0

Number = TypeVar("Number", int, float)


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="HTTP API and web page to search an index by image",
        description="Serve the page at / and the API under /api (OpenAPI at /docs).",
    )
    serve.add_argument("--index", required=True, type=Path, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--max-upload-mb", type=_positive(float), default=DEFAULT_MAX_UPLOAD_MB,
                       metavar="MB", help="larger uploads get 413 (default %(default)g MB)")
    serve.add_argument("--max-pixels", type=_positive(int), default=MAX_PIXELS, metavar="N",
                       help="larger query images get 422 (default %(default)s)")
    serve.add_argument("--search-threads", type=_positive(int), default=backends.usable_cpus(),
                       metavar="N",
                       help="queries decoded and refined at once (default: the CPUs this "
                            "process may use, %(default)s)")
    serve.add_argument("--batch-window-ms", type=_not_negative(float), default=DEFAULT_WINDOW_MS,
                       metavar="MS",
                       help="a query waits at most this long for others to share its CNN "
                            "forward (default %(default)g ms; 0: only those already waiting)")
    serve.add_argument("--max-queued", type=_positive(int), default=DEFAULT_MAX_QUEUED,
                       metavar="N",
                       help="more queries waiting for the CNN than this get 503 with "
                            "Retry-After (default %(default)s)")
    backends.add_option(serve)
    serve.set_defaults(run=_serve)


def _positive(convert: Callable[[str], Number]) -> Callable[[str], Number]:
    return _bounded(convert, lambda value: value > 0, "more than 0")


def _not_negative(convert: Callable[[str], Number]) -> Callable[[str], Number]:
    return _bounded(convert, lambda value: value >= 0, "0 or more")


def _bounded(convert: Callable[[str], Number], accept: Callable[[Number], bool], bound: str
             ) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        value = convert(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value

    return parse


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the web stack is not needed by, and would slow down, the other commands.
    import uvicorn

    from frameseek.server.app import MEGABYTE, ServerSettings, create_app

    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * MEGABYTE), max_pixels=args.max_pixels,
        search_threads=args.search_threads, batch_window_ms=args.batch_window_ms,
        max_queued=args.max_queued,
    )
    with Index.open(args.index) as index:
        app = create_app(index, settings)
        uvicorn.run(app, host=args.host, port=args.port, log_config=_log_config())
    return 0


def _log_config() -> dict:
    """uvicorn's logging, with frameseek's own messages (refused uploads, searches) beside it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["frameseek"] = {"handlers": ["default"], "level": "INFO",
                                      "propagate": False}
    return config
