"""The `serve` sub-command: open an index once and answer HTTP until interrupted."""

from __future__ import annotations

import argparse
import copy
import ipaddress
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from frameseek import backends
from frameseek.index import Index
from frameseek.query import MAX_PIXELS
from frameseek.server.auth import (
    DEFAULT_MEDIA_URL_TTL_S,
    TokenError,
    Tokens,
    tokens_from_environment,
)
from frameseek.server.batching import DEFAULT_WINDOW_MS
from frameseek.server.limits import DEFAULT_MAX_SEARCHES

DEFAULT_MAX_UPLOAD_MB = 20.0
# The same defaults as ServerSettings's; repeated here so that `--help` needs no web stack.
DEFAULT_RATE_PER_MINUTE = 60.0
DEFAULT_RATE_BURST = 20
EXIT_USAGE = 2

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
    serve.add_argument("--max-searches", type=_positive(int), default=DEFAULT_MAX_SEARCHES,
                       metavar="N",
                       help="searches in progress at once (uploading, decoding, waiting for "
                            "the CNN, searching); more get 503 with Retry-After at once "
                            "(default %(default)s)")
    access = serve.add_argument_group(
        "access", "With a token (FRAMESEEK_TOKEN=T1,T2,... or --token-file), every route but "
                  "/healthz and the page needs the header Authorization: Bearer TOKEN.")
    access.add_argument("--token-file", type=Path, metavar="FILE",
                        help="accepted tokens, one per line; re-read when it changes or on "
                             "SIGHUP, so that deleting a line revokes that token")
    access.add_argument("--allow-anonymous", action="store_true",
                        help="listen on a non-loopback address without any token")
    access.add_argument("--media-url-ttl", type=_positive(float),
                        default=DEFAULT_MEDIA_URL_TTL_S, metavar="S",
                        help="the signed thumbnail and video links of an answer stay valid "
                             "this long (default %(default)g s)")
    access.add_argument("--rate-limit", type=_not_negative(float),
                        default=DEFAULT_RATE_PER_MINUTE, metavar="N",
                        help="searches per minute one client (a token, else an address) may "
                             "send on average; more get 429 with Retry-After (default "
                             "%(default)g; 0: no limit)")
    access.add_argument("--rate-burst", type=_positive(int), default=DEFAULT_RATE_BURST,
                        metavar="N",
                        help="searches one client may send at once (default %(default)s)")
    operations = serve.add_argument_group("operations")
    operations.add_argument("--root-path", type=_root_path, default="", metavar="PREFIX",
                            help="the path prefix a reverse proxy serves this under, e.g. "
                                 "/frameseek (the proxy strips it before forwarding)")
    operations.add_argument("--access-log", choices=["text", "json", "off"], default="text",
                            help="one line per request on stdout: text, one JSON object, or "
                                 "none (default %(default)s)")
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


def _root_path(text: str) -> str:
    prefix = text.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with /, not {text}")
    return prefix


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`; a name other than localhost may not be."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    try:
        tokens = tokens_from_environment(args.token_file)
    except TokenError as exc:
        print(f"frameseek serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if tokens is None and not args.allow_anonymous and not is_loopback(args.host):
        print(f"frameseek serve: refusing to let anyone on the network in at {args.host} "
              "without a token: set FRAMESEEK_TOKEN or --token-file, or pass --allow-anonymous",
              file=sys.stderr)
        return EXIT_USAGE
    # Imported here: the web stack is not needed by, and would slow down, the other commands.
    import uvicorn

    from frameseek.server.app import MEGABYTE, ServerSettings, create_app

    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * MEGABYTE), max_pixels=args.max_pixels,
        search_threads=args.search_threads, batch_window_ms=args.batch_window_ms,
        max_searches=args.max_searches, rate_per_minute=args.rate_limit, rate_burst=args.rate_burst,
        media_url_ttl_s=args.media_url_ttl,
        access_log=None if args.access_log == "off" else args.access_log,
    )
    _announce(tokens)
    with Index.open(args.index) as index:
        app = create_app(index, settings, tokens)
        uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path,
                    log_config=_log_config(args.access_log), access_log=False)
    return 0


def _announce(tokens: Tokens | None) -> None:
    if tokens is None:
        print("frameseek serve: no token configured: anyone who reaches the port may search",
              file=sys.stderr)
        return
    print(f"frameseek serve: {tokens.count} tokens accepted (fingerprints "
          f"{', '.join(tokens.fingerprints())}); kill -HUP {os.getpid()} re-reads the token file",
          file=sys.stderr)
    signal.signal(signal.SIGHUP, lambda *_: tokens.reload_soon())


def _log_config(access_log: str) -> dict:
    """uvicorn's logging, with frameseek's own messages (refused uploads, searches) beside it,
    and frameseek's access log (in place of uvicorn's) on stdout."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["frameseek"] = {"handlers": ["default"], "level": "INFO",
                                      "propagate": False}
    config["formatters"]["line"] = {"format": "%(message)s"}
    config["handlers"]["requests"] = {
        "formatter": "line" if access_log == "json" else "default",
        "class": "logging.StreamHandler", "stream": "ext://sys.stdout",
    }
    config["loggers"]["frameseek.access"] = {"handlers": ["requests"], "level": "INFO",
                                             "propagate": False}
    return config
