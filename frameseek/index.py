"""The facade: open or create an index, add and remove videos, search it with an image."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from frameseek.backends import Backend
from frameseek.borders import crop_to_content
from frameseek.clips import (
    CLIP_FPS,
    KEYFRAMES_PER_SAMPLE,
    ClipAnswer,
    Sample,
    align,
    featureless,
    sample_clip,
)
from frameseek.features import (
    BACKBONE_NAME,
    LEGACY_MEAN,
    WEIGHTS_SHA256,
    FeatureExtractor,
    Features,
    Pooling,
    pooling_named,
)
from frameseek.keyframes import KeyFrame, KeyFrameExtractor, KeyFrameResult, StageTimer
from frameseek.localize import (
    GreyQuery,
    Localizer,
    Track,
    TrackBuilder,
    TrackStore,
    build_track,
    segment_of,
)
from frameseek.query import ImageInput, load_image
from frameseek.regions import (
    DEFAULT_EFFORT,
    EFFORTS,
    WHOLE,
    WINDOW,
    Effort,
    Region,
    merge,
    query_regions,
)
from frameseek.results import Answer, Match, Verdict, VideoResult, similarity
from frameseek.search import CoarseToFine, Searcher
from frameseek.searchindex import SearchIndex
from frameseek.store.base import Store, StoreError, Tracks, VideoRecord
from frameseek.store.embedded import EmbeddedStore
from frameseek.store.uri import open_store
from frameseek.verdict import MATCH_INLIERS, NoMatch
from frameseek.verify import RANK_INLIERS, GeometricVerifier, verified_order
from frameseek.video import VIDEO_EXTENSIONS, Frame, VideoError, check_file, iter_frames, probe

WRITE_LOCK = "write.lock"
# The stored config's entry naming the inference back ends (frameseek/backends) that computed the
# index's vectors, e.g. ["openvino-bf16"]. Information only, outside IndexConfig: their vectors
# agree (tests/backends), so any back end may query and add to any index.
INFERENCE_KEY = "inference"


# Above the match threshold, so that frames between two samples (0.5 s apart), a float16 or bf16
# descriptor and a lightly damaged copy still reach it: docs/keyframes.md measures the choice.
COVERAGE_MARGIN = 0.1


class ConfigMismatch(StoreError):
    """The index was built with another model, preprocessing or parameters than asked for."""


@dataclass(frozen=True)
class IndexConfig:
    """Everything that decides the vectors: a query must be embedded the same way to compare."""

    backbone: str = BACKBONE_NAME
    weights_sha256: str = WEIGHTS_SHA256
    preprocessing: str = "rgb→bgr, caffe mean, bilinear resize to input_size²"
    input_size: int = 224
    # "rmac": regional max-pooling, whitened (frameseek/rmac.py); "mean": the paper's pooling.
    pooling: str = "rmac"
    theta: float = 1.4
    sample_fps: float = 2.0
    samples_per_cluster: float = 2.0
    seed: int = 0
    # None: k-means on the full descriptors (the paper); e.g. 112: on cheaper CNN features.
    cluster_size: int | None = None
    # The coverage guarantee (frameseek/keyframes.py): every sample's similarity to a key frame
    # must reach the pooling's match threshold plus this margin. None: the paper's Algorithm 1
    # as it is, as for a pooling with no threshold ("mean").
    coverage_margin: float | None = COVERAGE_MARGIN

    # Parameters that change which frames become key frames but not how vectors are computed: an
    # index may hold videos added with different values of these.
    KEYFRAME_ONLY = ("theta", "sample_fps", "samples_per_cluster", "seed", "cluster_size",
                     "coverage_margin")

    def __post_init__(self) -> None:
        if self.cluster_size is not None and self.coverage_margin is not None:
            raise ValueError("cluster_size computes stored descriptors for key frames only, and "
                             "the coverage guarantee needs every sample's: set "
                             "coverage_margin=None with it")

    def query_pipeline(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.KEYFRAME_ONLY}


# Videos answered with their moments, and the nearest key frames they are gathered from: a
# picture on screen at many moments of a video is many key frames (or one with many segments).
VIDEOS = 10
APPEARANCE_KEYFRAMES = 100
# For a pooling with no calibrated threshold (the paper's mean), the key frames that count as the
# picture: within this factor of the best one's distance.
RELATIVE_DISTANCE = 1.25
# Another moment of a video shows the picture if its key frame is about as similar to the query
# as the video's best: the same shot with the subject moved scores 0.1-0.3 lower (bunny clip,
# R-MAC), while the signature track alone cannot tell the two apart (both correlate ≥ 0.98).
APPEARANCE_MARGIN = 0.1
# Another video shows the picture only if its best key frame is nearly as similar as the best
# video's: on the corpus's queries, the moments of videos 0.2 or more below the best were all
# false (other shots that look alike, similarity median 0.64), and a copy of the picture in
# another video scores with the best (docs/eval/recurring.md).
VIDEO_MARGIN = 0.2


@dataclass
class AddReport:
    added: list[VideoRecord] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path → one-line reason
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.added)

    @property
    def keyframes(self) -> int:
        return sum(v.keyframes for v in self.added)

    @property
    def compression_ratio(self) -> float:
        return 1.0 - self.keyframes / self.frames if self.frames else 0.0


class IndexLocked(StoreError):
    """Another process is adding to or removing from this index right now."""


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for video extensions; sorted, no repeats."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and path.suffix.lower() not in VIDEO_EXTENSIONS:
            found.extend(p for p in sorted(path.rglob("*"))
                         if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir())
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def content_id(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Index:
    """A searchable collection of videos kept in a store (by default a directory on disk)."""

    def __init__(self, store: Store, config: IndexConfig, directory: Path | None = None) -> None:
        self.store = store
        self.config = config
        self.directory = directory
        self._extractor: FeatureExtractor | None = None
        self._searcher: CoarseToFine | None = None
        # The embedded store's search structure persists beside it; a store that searches
        # itself (Milvus) needs none.
        self.search_index = SearchIndex(store) if isinstance(store, EmbeddedStore) else None
        # Beside an embedded index; a store that all searchers share (Milvus) keeps its own.
        self.tracks: Tracks | None = (TrackStore(directory) if directory is not None
                                      else getattr(store, "tracks", None))
        self.localizer = Localizer(store, self.tracks)
        self.verifier = GeometricVerifier(store.thumbnail)

    @classmethod
    def open(cls, directory: str | Path, config: IndexConfig | None = None,
             *, create: bool = False) -> Index:
        """Open the index in `directory` (creating it if `create`).

        A `config` whose query pipeline differs from the one the index was built with is refused:
        its vectors would not be comparable.
        """
        store = open_store(directory, create=create)  # a directory, or a Milvus URI
        stored = store.get_config()
        if stored is not None and stored.get("pooling") == LEGACY_MEAN:
            stored = {**stored, "pooling": "mean"}
        if stored is None:
            config = config or IndexConfig()
            store.set_config(asdict(config))
        else:
            built = IndexConfig(**{k: v for k, v in stored.items() if k != INFERENCE_KEY})
            if config is not None and config.query_pipeline() != built.query_pipeline():
                store.close()
                differ = [k for k, v in config.query_pipeline().items()
                          if built.query_pipeline()[k] != v]
                raise ConfigMismatch(
                    f"{directory} was built with a different pipeline ({', '.join(differ)}): "
                    "rebuild the index or query it with the pipeline it records"
                )
            if built.weights_sha256 != WEIGHTS_SHA256 or built.backbone != BACKBONE_NAME:
                store.close()
                raise ConfigMismatch(
                    f"{directory} was built with {built.backbone} ({built.weights_sha256[:12]}), "
                    f"this frameseek computes {BACKBONE_NAME} ({WEIGHTS_SHA256[:12]})"
                )
            config = config or built
        return cls(store, config, store.directory if isinstance(store, EmbeddedStore) else None)

    @classmethod
    def create(cls, directory: str | Path, config: IndexConfig | None = None) -> Index:
        return cls.open(directory, config, create=True)

    @staticmethod
    def stored_config(directory: str | Path) -> IndexConfig | None:
        """The config an existing index was built with; None where there is no index yet."""
        try:
            with Index.open(directory) as index:
                return index.config
        except ConfigMismatch:
            raise
        except StoreError:
            return None

    def close(self) -> None:
        self.store.close()
        if self.tracks is not None:
            self.tracks.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = feature_extractor(self.config)
        return self._extractor

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time per index; a second one is refused at once, not queued."""
        if self.directory is None:
            yield
            return
        with (self.directory / WRITE_LOCK).open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IndexLocked(
                    f"{self.directory} is being written by another frameseek process; "
                    "wait for it to finish"
                ) from exc
            handle.write(str(os.getpid()))
            handle.flush()
            yield

    def add(
        self,
        paths: Iterable[str | Path],
        on_video: Callable[[Path, int], Callable[[Frame], None] | None] | None = None,
        on_done: Callable[[Path, VideoRecord | None, str | None], None] | None = None,
    ) -> AddReport:
        """Index videos (files or folders). Unchanged files are skipped by content; files that
        changed replace their old entries; undecodable files are reported and skipped.

        `on_video(path, estimated_frames)` may return a per-frame callback (for progress bars);
        `on_done(path, record, reason)` is told each outcome as it happens.
        """
        report = AddReport()
        start = time.perf_counter()
        with self._writing():
            for path in find_videos(paths):
                record, reason = self._add_one(path, report, on_video)
                if on_done is not None:
                    on_done(path, record, reason)
        report.seconds = time.perf_counter() - start
        return report

    def _add_one(self, path: Path, report: AddReport, on_video: Callable | None
                 ) -> tuple[VideoRecord | None, str | None]:
        name = str(path)
        try:
            check_file(path)  # before hashing: a FIFO named .mp4 would block the read
            identity = content_id(path)
            existing = self.store.find_video(name)
            if existing is not None and existing.content_id == identity:
                self._ensure_track(path, identity)
                report.unchanged.append(name)
                return existing, None
            video = analyse_video(path, identity, self.keyframe_extractor(), on_video)
        except VideoError as exc:
            report.skipped[name] = str(exc)
            return None, str(exc)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            report.skipped[name] = reason
            return None, reason
        record = self.put(video)
        report.added.append(record)
        return record, None

    def _ensure_track(self, path: Path, identity: str) -> None:
        """Give a video indexed before tracks existed (or whose track write was lost) its track,
        so that rerunning `frameseek index` upgrades an old index without re-indexing."""
        if self.tracks is not None and self.tracks.get(str(path), identity) is None:
            self.tracks.put(str(path), identity, build_track(path))

    def put(self, video: AnalysedVideo) -> VideoRecord:
        """Write one analysed video (replacing any entry for its path); the caller holds
        `_writing()`. Distributed indexing analyses elsewhere and writes through here.

        The track goes first: a crash between the two writes then leaves at worst an unused
        track (keyed by content, replaced on the rerun that re-indexes the video), never an
        indexed video whose track is missing for good."""
        if self.tracks is not None:
            self.tracks.put(video.record.path, video.record.content_id, video.track)
        record = self.store.add_video(video.record, video.keyframes)
        self._record_inference(video.inference)
        self._maintain()
        return record

    def _record_inference(self, backend: str) -> None:
        stored = self.store.get_config() or asdict(self.config)
        built_with = stored.get(INFERENCE_KEY, [])
        if backend not in built_with:
            self.store.set_config({**stored, INFERENCE_KEY: [*built_with, backend]})

    def _maintain(self) -> None:
        """Keep the search structure fitting the collection after a write (the rules are in
        frameseek/searchindex.py); the video is searchable before this, which only rewrites
        the recent part, folds or retrains."""
        if self.search_index is not None:
            self.search_index.maintain()

    def optimize(self) -> str:
        """Retrain the search structure over the whole collection now, while readers keep
        searching the current one and writers keep adding videos; what was done, in words."""
        if self.search_index is None:
            raise StoreError(f"{self.store_location()}: a Milvus store keeps its own index; "
                             "there is nothing to optimize here")
        return self.search_index.optimize()

    def keyframe_extractor(self) -> KeyFrameExtractor:
        return keyframe_extractor(self.config, self.extractor)

    def remove(self, video: str | Path) -> bool:
        with self._writing():
            removed = self.store.remove_video(str(video))
            if self.tracks is not None:
                self.tracks.remove(str(video))
            self._maintain()
            return removed

    # -- reading ---------------------------------------------------------------------------

    def videos(self) -> list[VideoRecord]:
        return self.store.videos()

    def searcher(self) -> Searcher:
        """The search structure over the current vectors: the persistent one, brought up to
        date with what was committed since, or one built in memory and rebuilt only when the
        store changed."""
        if self.search_index is not None:
            return self.search_index.searcher()
        vectors = self.store.vectors()
        if self._searcher is None or self._searcher.vectors is not vectors:
            self._searcher = CoarseToFine(vectors)
        return self._searcher

    def embed(self, image: ImageInput) -> Features:
        return self.embed_many([load_image(image)])

    def embed_many(self, images: Sequence[np.ndarray]) -> Features:
        """RGB arrays of any sizes, one row each, through as few forwards as the CNN's batch
        size allows: the server batches concurrent queries through here."""
        return self.extractor.transform(np.stack([self.extractor.resize(i) for i in images]))

    def search(self, image: ImageInput, top: int = 12, candidates: int = 100,
               refine: bool = True, refine_videos: int = 3, trim: bool = True,
               effort: str | Effort = DEFAULT_EFFORT) -> list[Match]:
        """Best-matching key frames for a query image (path, bytes, PIL image or RGB array).

        With `trim`, uniform borders around the picture (a web page, a player, letterbox bars)
        are cut off first (frameseek/borders.py). `effort` ("fast", "default", "thorough" or an
        `Effort`) says which regions of the query are searched besides the whole
        (frameseek/regions.py) and how many candidates are verified geometrically
        (frameseek/verify.py). With `refine`, the best match of each of the first
        `refine_videos` videos is moved from its key frame's time to the moment the query
        shows (frameseek/localize.py), from the region its best match was found in.
        """
        return self.answer(image, top, candidates, refine, refine_videos, trim, effort,
                           videos=0).results

    def answer(self, image: ImageInput, top: int = 12, candidates: int = 100,
               refine: bool = True, refine_videos: int = 3, trim: bool = True,
               effort: str | Effort = DEFAULT_EFFORT, videos: int = VIDEOS,
               min_similarity: float | None = None) -> Answer:
        """`search`'s key frames, and the best `videos` videos with every moment the picture
        appears in them (`videos_of`), from one forward of the CNN."""
        pixels = load_image(image)
        if trim:
            pixels = crop_to_content(pixels)
        effort = EFFORTS[effort] if isinstance(effort, str) else effort
        regions = query_regions(pixels, effort)
        features = self.embed_many([region.crop(pixels) for region in regions])
        matches, region = self.search_regions(pixels, regions, features, top, candidates,
                                              effort.verify)
        whole = GreyQuery(pixels)
        if refine:
            picture = whole if region.kind == WHOLE else GreyQuery(region.crop(pixels))
            matches = self.localizer.refine(picture, matches, refine_videos)
        # The whole query's vectors (the first region) gather the videos' moments.
        found = (self.videos_of(whole, features.index[0], features.descriptors[0], videos,
                                min_similarity=min_similarity) if videos else [])
        return Answer(matches, found)

    def search_regions(self, pixels: np.ndarray, regions: Sequence[Region], features: Features,
                       top: int = 12, candidates: int = 100, verify: int = 0
                       ) -> tuple[list[Match], Region]:
        """Each region's features (one row each, the whole query first) searched, merged by
        key frame, and the first `verify` candidates re-ranked by geometric inliers with the
        query's pixels. Key frames only a window found come after the others unless verified.
        Returns the matches and the region the best one was found in."""
        found = [self.search_features(features.index[i], features.descriptors[i],
                                      max(top, verify), candidates) for i in range(len(regions))]
        merged = [(m if r.kind == WHOLE else replace(m, region=r.box), r)
                  for m, r in merge(regions, found, max(top, verify))]
        if not merged:
            return [], regions[0]
        counts = [0] * len(merged)
        if verify:
            counts[:verify] = self.verifier.inliers(self.verifier.query(pixels),
                                                    [m.keyframe_id for m, _ in merged[:verify]])
            merged[:verify] = [(replace(m, inliers=n), r) for (m, r), n in zip(
                merged[:verify], counts[:verify], strict=True)]
        order = verified_order(counts, RANK_INLIERS, [r.kind == WINDOW for _, r in merged])
        merged = [merged[i] for i in order]
        return [m for m, _ in merged[:top]], merged[0][1]

    def videos_of(self, query: GreyQuery, index: np.ndarray, descriptor: np.ndarray,
                  videos: int = VIDEOS, keyframes: int = APPEARANCE_KEYFRAMES,
                  min_similarity: float | None = None) -> list[VideoResult]:
        """The best `videos` videos for a query (its trimmed picture and vectors), each with
        every moment the picture appears, best video first.

        The `keyframes` nearest key frames are taken, and of those the ones that match: at or
        above `min_similarity`, by default the pooling's calibrated threshold (as `verdict`),
        in a video whose best is within VIDEO_MARGIN of the best video's, and within
        APPEARANCE_MARGIN of their video's best (for a pooling without a threshold: within
        RELATIVE_DISTANCE of the best distance, for both). Their stretches are then checked
        frame by frame (Localizer.appearances). A query that matches nothing has no videos."""
        matches = self.search_features(index, descriptor, keyframes, max(keyframes, 100))
        floor = min_similarity
        if floor is None:
            floor = self.extractor.pooling.match_similarity
        by_video: dict[str, list[Match]] = {}
        for match in matches:
            if floor is None or similarity(match.distance) >= floor:
                by_video.setdefault(match.video, []).append(match)
        scaled = self.extractor.pooling.match_similarity is not None
        bests = _as_alike_as_the_best([group[0] for group in by_video.values()], scaled,
                                      VIDEO_MARGIN)
        found = []
        for best in bests[:videos]:
            alike = _as_alike_as_the_best(by_video[best.video], scaled, APPEARANCE_MARGIN)
            found.append(self.localizer.appearances(query, alike))
        return sorted((v for v in found if v.moments), key=lambda v: -v.score)

    def search_clip(self, path: str | Path, min_similarity: float | None = None,
                    trim: bool = True) -> ClipAnswer:
        """Where a short video comes from: the segments of it found in indexed videos, aligned
        in time (frameseek/clips.py). Raises ClipError for a clip that cannot be a query.
        Nothing is written to the index."""
        frames = sample_clip(Path(path))
        pixels = [crop_to_content(rgb) if trim else rgb for _, rgb in frames]
        features = self.embed_many(pixels)
        samples = [Sample(time, pixels[i], [] if featureless(pixels[i]) else self.search_features(
                       features.index[i], features.descriptors[i], KEYFRAMES_PER_SAMPLE))
                   for i, (time, _) in enumerate(frames)]
        floor = min_similarity if min_similarity is not None else \
            self.extractor.pooling.match_similarity
        step = 1.0 / CLIP_FPS
        segments = align(samples, step, floor, lambda rgb, match: self.localizer.refine_one(
            GreyQuery(rgb), [match]).time)
        match = None if floor is None else bool(segments) and segments[0].score >= floor
        return ClipAnswer(segments, match, len(samples), frames[-1][0] + step)

    def verdict(self, matches: list[Match], min_similarity: float | None = None
                ) -> Verdict | None:
        """"No match" or not for a search's results: a match where the best key frame's
        similarity reaches `min_similarity` (by default the threshold calibrated for the index's
        pooling), or, without `min_similarity`, where a verified key frame has `MATCH_INLIERS`
        geometric inliers. The
        similarity is the whole query's: a small region of any picture resembles some key
        frame, so a region's counts only once verified. None for a pooling without a threshold
        (the paper's "mean": its distances are on no fixed scale)."""
        calibrated = self.extractor.pooling.match_similarity
        if calibrated is None:
            return None
        threshold = calibrated if min_similarity is None else min_similarity
        # Unit vectors: |a - b|² = 2 - 2 cos(a, b).
        similarity = max((1.0 - m.distance**2 / 2.0 for m in matches if m.region is None),
                         default=-1.0)
        counted = [m.inliers for m in matches if m.inliers is not None]
        inliers = max(counted) if counted else None
        # A threshold of the caller's own is the similarity rule alone, as it always was.
        verified = min_similarity is None and (inliers or 0) >= MATCH_INLIERS
        match = NoMatch(threshold).is_match(similarity) or verified
        return Verdict(match, similarity, threshold, inliers)

    def search_features(self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
                        candidates: int = 100) -> list[Match]:
        # A store that searches itself (Milvus) runs both stages there, with no local snapshot.
        store_search = getattr(self.store, "search", None)
        searcher = store_search or self.searcher().search
        hits = searcher(index, descriptor, top, candidates)
        records = {r.id: r for r in self.store.keyframes([h.keyframe_id for h in hits])}
        return [
            Match(r.video, r.time, r.frame, h.distance, r.id, r.segments, r.time, r.frame,
                  segment_of(r.time, r.segments))
            for h in hits if (r := records.get(h.keyframe_id)) is not None
        ]

    def store_location(self) -> str:
        return str(self.directory or getattr(self.store, "uri", ""))

    def info(self) -> dict:
        videos = self.videos()
        frames = sum(v.frames for v in videos)
        keyframes = sum(v.keyframes for v in videos)
        return {
            "index": self.store_location(),
            "videos": len(videos),
            "duration_s": round(sum(v.duration for v in videos), 3),
            "frames": frames,
            "keyframes": keyframes,
            "coverage_keyframes": sum(v.coverage_keyframes for v in videos),
            "compression_ratio": round(1 - keyframes / frames, 4) if frames else 0.0,
            "config": asdict(self.config),
            INFERENCE_KEY: (self.store.get_config() or {}).get(INFERENCE_KEY, []),
        }


def _as_alike_as_the_best(matches: list[Match], scaled: bool, margin: float) -> list[Match]:
    """The matches (best first) that show the picture as well as the best: within `margin` of
    its similarity, or for descriptors on no fixed scale (`scaled` false) within
    RELATIVE_DISTANCE of its distance."""
    if not matches:
        return []
    if not scaled:
        return [m for m in matches if m.distance <= RELATIVE_DISTANCE * matches[0].distance]
    best = similarity(matches[0].distance)
    return [m for m in matches if similarity(m.distance) >= best - margin]


@dataclass(frozen=True)
class AnalysedVideo:
    """Everything indexing computes for one video, before anything is written."""

    record: VideoRecord
    keyframes: list[KeyFrame]
    track: Track
    inference: str  # the back end that computed the key frames' vectors


def feature_extractor(config: IndexConfig, threads: int | None = None,
                      backend: Backend | None = None) -> FeatureExtractor:
    """The CNN and pooling an index's vectors come from; `backend`: one already loaded."""
    return FeatureExtractor(input_size=config.input_size, threads=threads,
                            pooling=pooling_named(config.pooling), backend=backend)


def keyframe_extractor(config: IndexConfig, features: FeatureExtractor,
                       timer: StageTimer | None = None) -> KeyFrameExtractor:
    """Algorithm 1 with the parameters an index records (KEYFRAME_ONLY names exactly those), and
    the coverage guarantee where the pooling has a match threshold."""
    parameters = {name: getattr(config, name) for name in IndexConfig.KEYFRAME_ONLY
                  if name != "coverage_margin"}
    return KeyFrameExtractor(features, timer=timer,
                             coverage=coverage_similarity(config, features.pooling), **parameters)


def coverage_similarity(config: IndexConfig, pooling: Pooling) -> float | None:
    """The similarity every sample must reach with a key frame; None: no coverage guarantee."""
    threshold = pooling.match_similarity
    if config.coverage_margin is None or threshold is None:
        return None
    return threshold + config.coverage_margin


def analyse_video(path: Path, identity: str, extractor: KeyFrameExtractor,
                  on_video: Callable | None = None) -> AnalysedVideo:
    """Decode one video once: key frames (Algorithm 1) and the localisation track. Raises
    VideoError or OSError for a file that cannot be read as video."""
    info = probe(path)
    on_frame = on_video(path, info.frames) if on_video else None
    track = TrackBuilder()
    result = extractor.extract(track.observe(iter_frames(path)), on_frame)
    return AnalysedVideo(_video_record(str(path), identity, info, result), result.keyframes,
                         track.track(), extractor.extractor.backbone.backend.name)


def _video_record(name: str, identity: str, info, result: KeyFrameResult) -> VideoRecord:
    return VideoRecord(
        path=name, content_id=identity, size=info.path.stat().st_size,
        duration=max(result.duration, info.duration), frames=result.frames,
        width=info.width, height=info.height, fps=info.fps, keyframes=len(result.keyframes),
        coverage_keyframes=result.coverage_added,
    )
