"""The HTTP service: search the index with an uploaded image, list the indexed videos, serve their
key-frame thumbnails and the video files (with range requests, so a browser can seek), and the
page at `/`.

One `Index` is opened at start and shared by every request. A search decodes its image, then
joins the other searches waiting for the CNN: concurrent queries share one forward
(frameseek/server/batching.py). Decoding, the search and the moment's refinement run in a thread
pool, at most one per CPU core, so the event loop keeps answering the cheap endpoints while
searches run.

In front of the routes: the access log (frameseek/server/accesslog.py), then access control
(tokens and signed media links, frameseek/server/auth.py); a search is then held to its
client's rate and admitted only while the server works on fewer than `max_searches`
(frameseek/server/limits.py), both before its upload is read. `Contract` keeps the
OpenAPI description to what each route really answers, which depends on those settings.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from PIL import UnidentifiedImageError
from pydantic import BaseModel
from starlette.types import Message

from frameseek import __version__, backends
from frameseek.borders import crop_to_content
from frameseek.clips import MAX_CLIP_S, ClipAnswer, ClipError, ClipTooLong
from frameseek.features import Features
from frameseek.index import Index
from frameseek.keyframes import StageTimer
from frameseek.localize import GreyQuery
from frameseek.query import MAX_PIXELS, QueryError, load_image
from frameseek.regions import DEFAULT_EFFORT, EFFORTS, WHOLE, Region
from frameseek.results import Match, Verdict, VideoResult
from frameseek.server.accesslog import AccessLog, AccessLogFormat
from frameseek.server.auth import (
    DEFAULT_MEDIA_URL_TTL_S,
    SIGNATURE_PARAM,
    AccessControl,
    MediaSigner,
    Tokens,
)
from frameseek.server.batching import DEFAULT_WINDOW_MS, Embedding, EmbeddingBatcher
from frameseek.server.limits import DEFAULT_MAX_SEARCHES, Admission, RateLimiter
from frameseek.store.base import VideoRecord
from frameseek.video import VIDEO_EXTENSIONS

log = logging.getLogger("frameseek.server")

STATIC = Path(__file__).with_name("static")
MAX_TOP = 200
MEGABYTE = 1 << 20
# Key-frame ids fit SQLite's 64-bit integers; a longer string of digits is no id of ours.
KEYFRAME_ID = re.compile(r"[0-9]{1,18}")
# The searches in progress end in about one CNN forward of a batch: a second on a loaded
# 2-core CPU.
BUSY_RETRY_AFTER_S = 1
DEFAULT_RATE_PER_MINUTE = 60.0
DEFAULT_RATE_BURST = 20
# The type a video is served with, by file suffix: the contract lists these, and mimetypes would
# answer by the host's /etc/mime.types (`.ts` is Qt's translation files there, `.ogg` audio).
VIDEO_MEDIA_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".mkv": "video/x-matroska", ".webm": "video/webm", ".avi": "video/x-msvideo",
    ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ogv": "video/ogg", ".ogg": "video/ogg",
    ".ts": "video/mp2t", ".flv": "video/x-flv", ".wmv": "video/x-ms-wmv", ".3gp": "video/3gpp",
}
# A file indexed by name whatever its suffix (`frameseek index clip.y4m`) goes as plain bytes.
OTHER_VIDEO_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ServerSettings:
    max_upload_bytes: int = 20 * MEGABYTE
    max_pixels: int = MAX_PIXELS
    search_threads: int = backends.usable_cpus()
    batch_window_ms: float = DEFAULT_WINDOW_MS
    max_searches: int = DEFAULT_MAX_SEARCHES  # in progress at once; more get 503
    rate_per_minute: float = DEFAULT_RATE_PER_MINUTE  # searches per client; 0: no limit
    rate_burst: int = DEFAULT_RATE_BURST
    media_url_ttl_s: float = DEFAULT_MEDIA_URL_TTL_S
    access_log: AccessLogFormat | None = "text"  # None: no access log


class SearchResult(BaseModel):
    video: str
    time: float
    frame: int
    distance: float
    # `time`/`frame` are the refined moment; the matched key frame's own and its segment follow.
    keyframe_time: float
    keyframe_frame: int
    segment: tuple[float, float]
    refined: bool
    thumbnail_url: str
    video_url: str | None  # None only if the video was removed while the query ran


class MomentEntry(BaseModel):
    time: float
    frame: int
    similarity: float
    start: float  # the stretch of video the moment stands for
    end: float


class VideoMoments(BaseModel):
    """A matching video with every distinct moment the picture appears in it, in time order."""

    video: str
    score: float
    appearances: int
    seconds: float
    moments: list[MomentEntry]
    duration: float | None  # the video's, for a timeline; None if removed meanwhile
    video_url: str | None


class StageTimes(BaseModel):
    """Where a search's time went, in ms. `embed` includes the wait for the batch's forward."""

    decode: float  # the upload to the trimmed picture at the CNN's input size
    embed: float
    search: float
    refine: float
    moments: float  # every moment of the matching videos


class SearchResponse(BaseModel):
    # False: the image is from no indexed video ("no match"; results are the nearest anyway).
    # None: the index's pooling has no calibrated threshold (the paper's "mean").
    match: bool | None
    similarity: float | None  # the nearest key frame's (cosine of the fine vectors)
    threshold: float | None
    results: list[SearchResult]
    videos: list[VideoMoments]  # best first; empty when nothing matches
    took_ms: float
    stages_ms: StageTimes


class ClipSegment(BaseModel):
    """[query_start, query_end] of the clip is [start, end] of `video`."""

    video: str
    start: float
    end: float
    query_start: float
    query_end: float
    score: float
    samples: int
    duration: float | None
    video_url: str | None


class ClipResponse(BaseModel):
    match: bool | None
    samples: int  # frames of the clip searched
    duration: float
    segments: list[ClipSegment]  # best first
    took_ms: float


class VideoEntry(BaseModel):
    id: str
    video: str
    name: str
    duration: float
    frames: int
    keyframes: int
    compression_ratio: float
    width: int
    height: int
    fps: float
    video_url: str


class VideosResponse(BaseModel):
    videos: list[VideoEntry]


class Health(BaseModel):
    status: str
    keyframes: int


class ErrorResponse(BaseModel):
    """Every refusal of ours; FastAPI's own for a malformed request is `HTTPValidationError`."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """FastAPI's answer to a malformed request: what is wrong, where."""

    detail: list[ValidationIssue]


@dataclass(frozen=True)
class DecodedQuery:
    pixels: np.ndarray  # the decoded picture, its uniform borders trimmed
    resized: np.ndarray  # the same at the CNN's input size


@dataclass(frozen=True)
class Catalogue:
    """The indexed videos of one index snapshot, by id (for URLs) and by path (for matches)."""

    version: Hashable  # the store's, when it was read
    by_id: dict[str, VideoRecord]
    by_path: dict[str, VideoRecord]


class IndexService:
    """The open index shared by all requests; every method is safe to call from any thread."""

    def __init__(self, index: Index, settings: ServerSettings) -> None:
        self.index = index
        self.settings = settings
        self.started = time.time()
        self.searches = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._catalogue: Catalogue | None = None
        # Load the model and run it once now: the first user should not wait for either.
        index.embed(np.zeros((1, 1, 3), dtype=np.uint8))
        self.batcher = EmbeddingBatcher(index.embed_many, settings.batch_window_ms / 1000,
                                        index.extractor.batch_size)
        self.admission = Admission(settings.max_searches)
        self.rate = (RateLimiter(settings.rate_per_minute, settings.rate_burst)
                     if settings.rate_per_minute > 0 else None)

    # A search is `Index.search` cut at the forward, which the batcher runs for many at once.

    def decode(self, data: bytes) -> DecodedQuery:
        pixels = crop_to_content(load_image(data, self.settings.max_pixels))
        return DecodedQuery(pixels, self.index.extractor.resize(pixels))

    def match(self, query: DecodedQuery, embedding: Embedding, top: int, stages: StageTimer
              ) -> tuple[list[Match], Verdict | None, list[VideoResult]]:
        with stages.stage("search"):
            with self._lock:
                # `Index.searcher()` rebuilds the search structure when the index changed on
                # disk; doing it here under the lock builds it once, not once per query.
                self.index.searcher()
            # The whole query only (the batcher embeds one picture per query), verified as the
            # default effort verifies (docs/robust.md, "Hard queries").
            whole = Region((0, query.pixels.shape[0], 0, query.pixels.shape[1]), WHOLE)
            matches, _ = self.index.search_regions(
                query.pixels, [whole], Features(embedding.descriptor[None], embedding.index[None]),
                top, verify=EFFORTS[DEFAULT_EFFORT].verify)
        grey = GreyQuery(query.pixels)
        with stages.stage("refine"):
            matches = self.index.localizer.refine(grey, matches)
        with stages.stage("moments"):
            videos = self.index.videos_of(grey, embedding.index, embedding.descriptor)
        return matches, self.index.verdict(matches), videos

    def clip(self, data: bytes, suffix: str) -> ClipAnswer:
        """A clip query: the upload goes to a temporary file (the decoder reads files), which
        is deleted after; the index is only read."""
        with tempfile.NamedTemporaryFile(suffix=suffix) as clip:
            clip.write(data)
            clip.flush()
            return self.index.search_clip(clip.name)

    def catalogue(self) -> Catalogue:
        """The videos as of now: re-read only when the store's version changed, which it does
        whenever any process adds or removes a video."""
        with self._lock:
            version = self.index.store.version()
            if self._catalogue is None or self._catalogue.version != version:
                videos = self.index.videos()
                self._catalogue = Catalogue(version, {str(v.id): v for v in videos},
                                            {v.path: v for v in videos})
            return self._catalogue

    def video_file(self, video_id: str) -> tuple[Path, os.stat_result] | None:
        """The file of an indexed video, if it is still the file that was indexed.

        The path comes from the index, never from the request. A file whose size changed since
        indexing (replaced, truncated, or a symlink now pointing elsewhere) is not served.
        """
        record = self.catalogue().by_id.get(video_id)
        if record is None:
            return None
        path = Path(os.path.realpath(record.path))
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file() or stat.st_size != record.size:
            return None
        return path, stat


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload is larger than the limit of {limit / MEGABYTE:g} MB")


class LimitedUploadRoute(APIRoute):
    """Refuses a search before FastAPI parses its form: a client over its rate at once, then any
    search while `max_searches` are in progress, then an upload as soon as it is known to be
    over the size limit, from Content-Length before reading anything, else while counting the
    bytes as they arrive, so an endless chunked upload is cut off too."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def limited(request: Request) -> Response:
            service: IndexService = request.app.state.service
            client = request.state.client
            wait = service.rate.take(client) if service.rate else 0.0
            if wait:
                service.rejected += 1
                log.warning("%s: search refused: over the rate limit", _client(request))
                raise HTTPException(429, "too many searches from this client: retry later",
                                    headers={"Retry-After": str(math.ceil(wait))})
            if not service.admission.admit():
                log.warning("%s: search refused: %d searches in progress", _client(request),
                            service.admission.capacity)
                raise HTTPException(
                    503, f"the server is busy ({service.admission.capacity} searches in "
                         "progress): retry later",
                    headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
            try:
                body = await _read_limited(request, service.settings.max_upload_bytes)

                async def replay() -> Message:
                    return {"type": "http.request", "body": body, "more_body": False}

                return await handle(Request(request.scope, replay))
            except UploadTooLarge:  # raised by _read_limited only
                service.rejected += 1
                log.warning("%s: search refused: upload over %d bytes", _client(request),
                            service.settings.max_upload_bytes)
                raise
            finally:
                service.admission.release()

        return limited


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadTooLarge(limit)
    return bytes(body)


def _duration(record: VideoRecord | None) -> float | None:
    return record.duration if record is not None else None


def _without_path(exc: Exception) -> str:
    """A clip error's message without the temporary file's name it starts with."""
    return str(exc).split(": ", 1)[-1]


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _query_error_status(exc: QueryError) -> int:
    # Bytes Pillow cannot even identify are the wrong media type; an image it identifies but
    # cannot use (damaged, empty, over the pixel limit) is well-typed but unprocessable.
    return 415 if isinstance(exc.__cause__, UnidentifiedImageError) else 422


# The contract: each route's answers beyond its 200, with their bodies and headers.
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer"}}}
BINARY = {"schema": {"type": "string", "format": "binary"}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
CONTENT_RANGE = {"Content-Range": {"description": "`bytes FIRST-LAST/SIZE`, or `bytes */SIZE`",
                                   "schema": {"type": "string"}}}
VIDEO_CONTENT = {media_type: BINARY
                 for media_type in sorted({*VIDEO_MEDIA_TYPES.values(), OTHER_VIDEO_MEDIA_TYPE})}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "a token of FRAMESEEK_TOKEN or of the --token-file"},
    "signedLink": {"type": "apiKey", "in": "query", "name": SIGNATURE_PARAM,
                   "description": "the signature the media URLs in the API's answers carry: "
                                  "valid for this one path until its expiry"},
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **({"headers": headers}
                                                                   if headers else {})}


class Contract:
    """What each route declares, which depends on the limits and on whether tokens are needed."""

    def __init__(self, tokens: Tokens | None, settings: ServerSettings) -> None:
        self.tokens = tokens
        self.settings = settings

    def protected(self, responses: dict[int | str, Any], media: bool = False) -> dict[str, Any]:
        """The route's `responses` and `openapi_extra`, with the 401 and its schemes if tokens
        are needed."""
        if self.tokens is None:
            return {"responses": responses}
        schemes = [{"bearer": []}, {"signedLink": []}] if media else [{"bearer": []}]
        unauthorized = _error("no valid token" + (" and no valid signed link" if media else ""),
                              {"WWW-Authenticate": {"description": 'Bearer realm="frameseek"',
                                                    "schema": {"type": "string"}}})
        return {"responses": {**responses, 401: unauthorized},
                "openapi_extra": {"security": schemes}}

    def limited(self, responses: dict[int | str, Any]) -> dict[int | str, Any]:
        """An upload route's answers, with those of the limits in front of it."""
        limits: dict[int | str, Any] = {
            503: _error("the server has as many searches in progress as it admits", RETRY_AFTER)}
        if self.settings.rate_per_minute > 0:
            limits[429] = _error("this client is over its rate limit", RETRY_AFTER)
        return {**responses, **limits}

    def search(self) -> dict[str, Any]:
        responses: dict[int | str, Any] = {
            400: _error("a body that is not well-formed multipart/form-data"),
            413: _error("upload over the size limit"),
            415: _error("not an image"),
            422: {"model": ErrorResponse | ValidationErrorResponse,
                  "description": "an empty or damaged image, one over the pixel limit, or a "
                                 "malformed request (no `image` field, `top` out of range)"},
        }
        described = self.protected(self.limited(responses))
        # Any image Pillow reads: JPEG, PNG, WebP, GIF, BMP, TIFF, ...
        image = {"requestBody": {"content": {"multipart/form-data": {
            "encoding": {"image": {"contentType": "image/*"}}}}}}
        described["openapi_extra"] = {**described.get("openapi_extra", {}), **image}
        return described

    def clip(self) -> dict[str, Any]:
        responses: dict[int | str, Any] = {
            400: _error("a body that is not well-formed multipart/form-data"),
            413: _error("upload over the size limit, or a clip over the length limit"),
            422: {"model": ErrorResponse | ValidationErrorResponse,
                  "description": "an empty upload, a file with no decodable video, or a "
                                 "malformed request (no `clip` field)"},
        }
        described = self.protected(self.limited(responses))
        video = {"requestBody": {"content": {"multipart/form-data": {
            "encoding": {"clip": {"contentType": "video/*"}}}}}}
        described["openapi_extra"] = {**described.get("openapi_extra", {}), **video}
        return described

    def complete(self, app: FastAPI) -> None:
        """Finishes the OpenAPI description once FastAPI has built it: the security schemes, and
        no 422 where FastAPI adds one unasked, on routes whose only parameters are path strings
        (nothing there can fail validation)."""
        build = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                schema = build()
                for operations in schema["paths"].values():
                    for operation in operations.values():
                        if "requestBody" not in operation and all(
                                p["in"] == "path" and p["schema"].get("type") == "string"
                                for p in operation.get("parameters", [])):
                            operation["responses"].pop("422", None)
                if self.tokens is not None:
                    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            return app.openapi_schema  # type: ignore[return-value]

        app.openapi = openapi  # type: ignore[method-assign]


def create_app(index: Index, settings: ServerSettings | None = None,
               tokens: Tokens | None = None) -> FastAPI:
    """The application; with `tokens`, every route but `/healthz` and the page needs one."""
    service = IndexService(index, settings or ServerSettings())
    contract = Contract(tokens, service.settings)
    signer = MediaSigner(service.settings.media_url_ttl_s)
    limiter = anyio.CapacityLimiter(service.settings.search_threads)
    app = FastAPI(
        title="frameseek", version=__version__,
        description="Search videos by image: upload a still, get the videos and moments it "
                    "comes from.",
    )
    app.state.service = service
    uploads = APIRouter(route_class=LimitedUploadRoute)

    def media_url(root: str, path: str) -> str:
        """A link `<img>` and `<video>` can follow: signed when a token is needed."""
        return f"{root}{path}?{SIGNATURE_PARAM}={signer.sign(path)}" if tokens else root + path

    def video_url(root: str, record: VideoRecord | None) -> str | None:
        return media_url(root, f"/api/videos/{record.id}/file") if record is not None else None

    @uploads.post("/api/search", response_model=SearchResponse, **contract.search())
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="the query image (JPEG, PNG, WebP, ...)")],
        top: Annotated[int, Query(ge=1, le=MAX_TOP, description="how many results")] = 12,
    ) -> SearchResponse:
        """The key frames nearest to the image, nearest first (the order `frameseek search`
        prints)."""
        data = await image.read()
        start = time.perf_counter()
        stages = StageTimer()
        try:
            with stages.stage("decode"):
                query = await anyio.to_thread.run_sync(service.decode, data, limiter=limiter)
            with stages.stage("embed"):
                embedding = await asyncio.wrap_future(service.batcher.submit(query.resized))
            matches, verdict, videos = await anyio.to_thread.run_sync(
                service.match, query, embedding, top, stages, limiter=limiter)
        except QueryError as exc:
            service.rejected += 1
            log.warning("%s: search refused: %s", _client(request), exc)
            raise HTTPException(_query_error_status(exc), str(exc)) from exc
        took_ms = (time.perf_counter() - start) * 1000
        service.searches += 1
        root = request.scope.get("root_path", "")
        by_path = service.catalogue().by_path
        results = [
            SearchResult(**m.to_json(),
                         thumbnail_url=media_url(root, f"/api/thumbnails/{m.keyframe_id}"),
                         video_url=video_url(root, by_path.get(m.video)))
            for m in matches
        ]
        log.info("%s: search %s (%d bytes): %d results in %.0f ms", _client(request),
                 image.filename, len(data), len(results), took_ms)
        answer = verdict.to_json() if verdict else {"match": None, "similarity": None,
                                                    "threshold": None}
        found = [VideoMoments(**v.to_json(), duration=_duration(by_path.get(v.video)),
                              video_url=video_url(root, by_path.get(v.video))) for v in videos]
        return SearchResponse(**answer, results=results, videos=found, took_ms=round(took_ms, 1),
                              stages_ms=StageTimes(**{name: round(seconds * 1000, 1)
                                                      for name, seconds in stages.seconds.items()}))

    @uploads.post("/api/search/clip", response_model=ClipResponse, **contract.clip())
    async def search_clip(
        request: Request,
        clip: Annotated[UploadFile, File(description="the query clip (any video the decoder "
                                                     f"reads, at most {MAX_CLIP_S:.0f} s)")],
    ) -> ClipResponse:
        """Where a short video comes from: its segments in the indexed videos, best first."""
        data = await clip.read()
        if not data:
            raise HTTPException(422, "empty upload, not a video")
        start = time.perf_counter()
        suffix = Path(clip.filename or "").suffix.lower()
        suffix = suffix if suffix in VIDEO_EXTENSIONS else ".mp4"
        try:
            answer = await anyio.to_thread.run_sync(service.clip, data, suffix, limiter=limiter)
        except ClipTooLong as exc:
            raise HTTPException(413, _without_path(exc)) from exc
        except ClipError as exc:
            log.warning("%s: clip refused: %s", _client(request), exc)
            raise HTTPException(422, f"not a usable clip: {_without_path(exc)}") from exc
        service.searches += 1
        root = request.scope.get("root_path", "")
        by_path = service.catalogue().by_path
        return ClipResponse(
            match=answer.match, samples=answer.samples, duration=round(answer.duration, 3),
            segments=[ClipSegment(**s.to_json(), duration=_duration(by_path.get(s.video)),
                                  video_url=video_url(root, by_path.get(s.video)))
                      for s in answer.segments],
            took_ms=round((time.perf_counter() - start) * 1000, 1))

    app.include_router(uploads)

    @app.get("/api/videos", response_model=VideosResponse, **contract.protected({}))
    def videos(request: Request) -> VideosResponse:
        """Every indexed video, with its length, key frames and compression ratio."""
        root = request.scope.get("root_path", "")
        return VideosResponse(videos=[
            VideoEntry(id=key, video=v.path, name=Path(v.path).name, duration=round(v.duration, 3),
                       frames=v.frames, keyframes=v.keyframes,
                       compression_ratio=round(v.compression_ratio, 4), width=v.width,
                       height=v.height, fps=v.fps, video_url=video_url(root, v) or "")
            for key, v in service.catalogue().by_id.items()
        ])

    @app.get("/api/stats", **contract.protected({}))
    def stats() -> dict[str, Any]:
        """What the index holds (as `frameseek info --json`) and what this server has done."""
        return {
            **service.index.info(),
            "backend": backends.describe(service.index.extractor.backbone.backend),
            "server": {
                "version": __version__,
                "uptime_s": round(time.time() - service.started, 1),
                "searches": service.searches,
                "rejected": service.rejected,
                "max_upload_bytes": service.settings.max_upload_bytes,
                "max_pixels": service.settings.max_pixels,
                "search_threads": service.settings.search_threads,
                "tokens": tokens.count if tokens else 0,
                "rate_limit": {"per_minute": service.settings.rate_per_minute,
                               "burst": service.settings.rate_burst},
                "admission": {"max_searches": service.admission.capacity,
                              "in_progress": service.admission.in_progress,
                              "refused": service.admission.refused},
                "batching": {
                    "window_ms": service.settings.batch_window_ms,
                    "max_batch": service.batcher.max_batch,
                    **asdict(service.batcher.stats),
                },
            },
        }

    @app.get("/healthz", response_model=Health, openapi_extra={"security": []} if tokens else None)
    def healthz() -> Health:
        """Liveness: the index answers. Open to all, token or not."""
        videos = service.catalogue().by_id.values()
        return Health(status="ok", keyframes=sum(v.keyframes for v in videos))

    @app.get("/api/thumbnails/{keyframe_id}", response_class=Response,
             **contract.protected({200: {"content": {"image/jpeg": BINARY},
                                         "description": "the key frame's JPEG"},
                                   404: _error("no such key frame")}, media=True))
    def thumbnail(keyframe_id: str) -> Response:
        """The small JPEG of a key frame, stored in the index when the video was added."""
        data = (service.index.store.thumbnail(int(keyframe_id))
                if KEYFRAME_ID.fullmatch(keyframe_id) else None)
        if not data:
            raise HTTPException(404, "no such key frame")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})

    def video_file(video_id: str) -> FileResponse:
        """An indexed video file; honours `Range` (206 Partial Content) so players can seek."""
        found = service.video_file(video_id)
        if found is None:
            log.warning("video %r: not an indexed, unchanged file", video_id)
            raise HTTPException(404, "no such video")
        path, stat = found
        media_type = VIDEO_MEDIA_TYPES.get(path.suffix.lower(), OTHER_VIDEO_MEDIA_TYPE)
        return FileResponse(path, media_type=media_type, filename=path.name, stat_result=stat,
                            content_disposition_type="inline")

    # One route per method, so that each has an operation of its own in the description.
    for method in ("GET", "HEAD"):
        app.add_api_route("/api/videos/{video_id}/file", video_file, methods=[method],
                          response_class=FileResponse, **contract.protected({
                              200: {"description": "the whole file, typed by its suffix "
                                                   "(other suffixes: application/octet-stream)",
                                    "content": VIDEO_CONTENT},
                              206: {"description": "the range asked for (several ranges: "
                                                   "multipart/byteranges)",
                                    "content": {**VIDEO_CONTENT, "multipart/byteranges": BINARY},
                                    "headers": CONTENT_RANGE},
                              400: {"description": "a malformed Range header", "content": TEXT},
                              404: _error("no such video, or its file changed since indexing"),
                              416: {"description": "a Range past the end of the file",
                                    "content": TEXT, "headers": CONTENT_RANGE},
                          }, media=True))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    contract.complete(app)
    # Added last, so outermost: the access log sees the 401s too.
    app.add_middleware(AccessControl, tokens=tokens, signer=signer)
    if service.settings.access_log:
        app.add_middleware(AccessLog, format=service.settings.access_log)
    return app
