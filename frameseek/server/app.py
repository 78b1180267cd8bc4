"""The HTTP service: search the index with an uploaded image, list the indexed videos, serve their
key-frame thumbnails and the video files (with range requests, so a browser can seek), and the
page at `/`.

One `Index` is opened at start and shared by every request. A search decodes its image, then
joins the other searches waiting for the CNN: concurrent queries share one forward
(frameseek/server/batching.py). Decoding, the search and the moment's refinement run in a thread
pool, at most one per CPU core, so the event loop keeps answering the cheap endpoints while
searches run.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

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
from frameseek.features import Features
from frameseek.index import Index, Match, Verdict
from frameseek.keyframes import StageTimer
from frameseek.query import MAX_PIXELS, QueryError, load_image
from frameseek.regions import DEFAULT_EFFORT, EFFORTS, WHOLE, Region
from frameseek.server.batching import (
    DEFAULT_MAX_QUEUED,
    DEFAULT_WINDOW_MS,
    Busy,
    Embedding,
    EmbeddingBatcher,
)
from frameseek.store.base import VideoRecord

log = logging.getLogger("frameseek.server")

STATIC = Path(__file__).with_name("static")
MAX_TOP = 200
MEGABYTE = 1 << 20
# Key-frame ids fit SQLite's 64-bit integers; a longer string of digits is no id of ours.
KEYFRAME_ID = re.compile(r"[0-9]{1,18}")
# A full CNN queue drains in about one forward of a batch: a second on a loaded 2-core CPU.
BUSY_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ServerSettings:
    max_upload_bytes: int = 20 * MEGABYTE
    max_pixels: int = MAX_PIXELS
    search_threads: int = backends.usable_cpus()
    batch_window_ms: float = DEFAULT_WINDOW_MS
    max_queued: int = DEFAULT_MAX_QUEUED


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


class StageTimes(BaseModel):
    """Where a search's time went, in ms. `embed` includes the wait for the batch's forward."""

    decode: float  # the upload to the trimmed picture at the CNN's input size
    embed: float
    search: float
    refine: float


class SearchResponse(BaseModel):
    # False: the image is from no indexed video ("no match"; results are the nearest anyway).
    # None: the index's pooling has no calibrated threshold (the paper's "mean").
    match: bool | None
    similarity: float | None  # the nearest key frame's (cosine of the fine vectors)
    threshold: float | None
    results: list[SearchResult]
    took_ms: float
    stages_ms: StageTimes


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
                                        index.extractor.batch_size, settings.max_queued)

    # A search is `Index.search` cut at the forward, which the batcher runs for many at once.

    def decode(self, data: bytes) -> DecodedQuery:
        pixels = crop_to_content(load_image(data, self.settings.max_pixels))
        return DecodedQuery(pixels, self.index.extractor.resize(pixels))

    def match(self, query: DecodedQuery, embedding: Embedding, top: int, stages: StageTimer
              ) -> tuple[list[Match], Verdict | None]:
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
        with stages.stage("refine"):
            matches = self.index.localizer.refine(query.pixels, matches)
        return matches, self.index.verdict(matches)

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
    """Reads the request body itself before FastAPI parses the form, refusing it as soon as it is
    known to be over the limit: from Content-Length before reading anything, else while counting
    the bytes as they arrive, so an endless chunked upload is cut off too."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def limited(request: Request) -> Response:
            service: IndexService = request.app.state.service
            try:
                body = await _read_limited(request, service.settings.max_upload_bytes)
            except UploadTooLarge:
                service.rejected += 1
                log.warning("%s: search refused: upload over %d bytes", _client(request),
                            service.settings.max_upload_bytes)
                raise

            async def replay() -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            return await handle(Request(request.scope, replay))

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


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _query_error_status(exc: QueryError) -> int:
    # Bytes Pillow cannot even identify are the wrong media type; an image it identifies but
    # cannot use (damaged, empty, over the pixel limit) is well-typed but unprocessable.
    return 415 if isinstance(exc.__cause__, UnidentifiedImageError) else 422


def create_app(index: Index, settings: ServerSettings | None = None) -> FastAPI:
    service = IndexService(index, settings or ServerSettings())
    limiter = anyio.CapacityLimiter(service.settings.search_threads)
    app = FastAPI(
        title="frameseek", version=__version__,
        description="Search videos by image: upload a still, get the videos and moments it "
                    "comes from.",
    )
    app.state.service = service
    uploads = APIRouter(route_class=LimitedUploadRoute)

    @uploads.post("/api/search", response_model=SearchResponse,
                  responses={413: {"description": "upload over the size limit"},
                             415: {"description": "not an image"},
                             422: {"description": "damaged image, or over the pixel limit"},
                             503: {"description": "too many searches wait for the CNN; the "
                                                  "Retry-After header says when to try again"}})
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
            matches, verdict = await anyio.to_thread.run_sync(service.match, query, embedding, top,
                                                              stages, limiter=limiter)
        except QueryError as exc:
            service.rejected += 1
            log.warning("%s: search refused: %s", _client(request), exc)
            raise HTTPException(_query_error_status(exc), str(exc)) from exc
        except Busy as exc:
            log.warning("%s: search refused: %s", _client(request), exc)
            raise HTTPException(503, f"the server is busy ({exc}): retry later",
                                headers={"Retry-After": str(BUSY_RETRY_AFTER_S)}) from exc
        took_ms = (time.perf_counter() - start) * 1000
        service.searches += 1
        root = request.scope.get("root_path", "")
        by_path = service.catalogue().by_path
        results = [
            SearchResult(**m.to_json(), thumbnail_url=f"{root}/api/thumbnails/{m.keyframe_id}",
                         video_url=_video_url(root, by_path.get(m.video)))
            for m in matches
        ]
        log.info("%s: search %s (%d bytes): %d results in %.0f ms", _client(request),
                 image.filename, len(data), len(results), took_ms)
        answer = verdict.to_json() if verdict else {"match": None, "similarity": None,
                                                    "threshold": None}
        return SearchResponse(**answer, results=results, took_ms=round(took_ms, 1),
                              stages_ms=StageTimes(**{name: round(seconds * 1000, 1)
                                                      for name, seconds in stages.seconds.items()}))

    app.include_router(uploads)

    @app.get("/api/videos", response_model=VideosResponse)
    def videos(request: Request) -> VideosResponse:
        """Every indexed video, with its length, key frames and compression ratio."""
        root = request.scope.get("root_path", "")
        return VideosResponse(videos=[
            VideoEntry(id=key, video=v.path, name=Path(v.path).name, duration=round(v.duration, 3),
                       frames=v.frames, keyframes=v.keyframes,
                       compression_ratio=round(v.compression_ratio, 4), width=v.width,
                       height=v.height, fps=v.fps, video_url=_video_url(root, v) or "")
            for key, v in service.catalogue().by_id.items()
        ])

    @app.get("/api/stats")
    def stats() -> dict:
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
                "batching": {
                    "window_ms": service.settings.batch_window_ms,
                    "max_batch": service.batcher.max_batch,
                    "max_queued": service.settings.max_queued,
                    **asdict(service.batcher.stats),
                },
            },
        }

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the index answers."""
        videos = service.catalogue().by_id.values()
        return {"status": "ok", "keyframes": sum(v.keyframes for v in videos)}

    @app.get("/api/thumbnails/{keyframe_id}", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
    def thumbnail(keyframe_id: str) -> Response:
        """The small JPEG of a key frame, stored in the index when the video was added."""
        data = (service.index.store.thumbnail(int(keyframe_id))
                if KEYFRAME_ID.fullmatch(keyframe_id) else None)
        if not data:
            raise HTTPException(404, "no such key frame")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=300"})

    @app.api_route("/api/videos/{video_id}/file", methods=["GET", "HEAD"],
                   response_class=FileResponse,
                   responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "a range"},
                              404: {}, 416: {}})
    def video_file(video_id: str) -> FileResponse:
        """An indexed video file; honours `Range` (206 Partial Content) so players can seek."""
        found = service.video_file(video_id)
        if found is None:
            log.warning("video %r: not an indexed, unchanged file", video_id)
            raise HTTPException(404, "no such video")
        path, stat = found
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type, filename=path.name, stat_result=stat,
                            content_disposition_type="inline")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _video_url(root: str, record: VideoRecord | None) -> str | None:
    return f"{root}/api/videos/{record.id}/file" if record is not None else None
