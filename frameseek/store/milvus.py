"""Milvus as the store: key frames, their descriptors and the videos' tracks in a Milvus server,
cluster or Lite file, searched by Milvus itself.

Three collections per index:

- `NAME`: one row per key frame: the 512-d descriptor (L2, the search field, under the vector
  index the URI chose: `SearchSettings`) and the metadata a match needs, thumbnail included.
  Descriptors are the float16 values the embedded store keeps: FLOAT16_VECTOR where the server
  has it, else FLOAT_VECTOR holding the same float16-rounded numbers, so that both stores rank
  the same numbers. The 64-d coarse vector is not stored: nothing here searches it, and
  `vectors()` derives it from the descriptor (`Pooling.coarse`) for the tools that want it.
- `NAME_videos`: one row per video, keyed by a 63-bit hash of its path (pymilvus pages through
  VARCHAR keys with unescaped filters, so paths with quotes would break a scan over string keys).
- `NAME_tracks`: each video's localisation track (frameseek/localize.py) in base64 chunks, keyed
  by path, content and chunk number, so that every searcher refines a match from the same track
  without decoding video.

Milvus has no multi-row transactions, so a video is published by one write: its row in
`NAME_videos`. Every write of a video draws a fresh `video_id`; its key frames are inserted first
under that id, then the video row is upserted with it (the commit point), then key frames under
older ids are deleted. A key frame counts only while its video row carries its `video_id`, so a
crash at any step leaves each video old, new or absent, never half of one, and the next write of
that path clears the leftovers. Each committed video is flushed: Milvus scans rows it has not
flushed without the vector index (1.2 s a query at 100k rows instead of tens of ms).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from frameseek.features import DESCRIPTOR_DIM, pooling_named
from frameseek.keyframes import KeyFrame
from frameseek.localize import CACHED_TRACKS, Track
from frameseek.search import Hit, hits, rerank
from frameseek.store.base import KeyFrameRecord, StoreError, Vectors, VideoRecord

CONFIG_PROPERTY = "frameseek.config"
SCHEMA_PROPERTY = "frameseek.schema"
INDEX_PROPERTY = "frameseek.index"  # the index asked for at creation: AUTO or a type
SCHEMA = "2"  # 1: a 64-d FLOAT_VECTOR "index" searched, descriptors re-ranked here
MAX_PATH = 4096
MAX_VARCHAR = 65535  # Milvus' limit; a 192-px JPEG in base64 is far below it
TRACK_CHUNK = 48_000  # raw bytes per track row: its base64 (64,000 characters) fits MAX_VARCHAR
INSERT_BATCH = 256  # rows per insert: well under gRPC's message limit even with thumbnails
SCAN_BATCH = 4096
CONNECT_TIMEOUT_S = 10.0
INDEX_WAIT_S = 120.0  # past this a commit returns with the index still being built
FLOAT16_SINCE = (2, 4)
AUTO_HNSW_AT = 10_000  # key frames from which an AUTO collection is searched by HNSW
VIDEO_FIELDS = ["path", "id", "content_id", "size", "duration", "frames", "width", "height",
                "fps", "keyframes", "coverage_keyframes"]
KEYFRAME_FIELDS = ["id", "video", "video_id", "frame", "time", "segments"]
VECTOR_TYPES = {"float16": DataType.FLOAT16_VECTOR, "float32": DataType.FLOAT_VECTOR}

# pymilvus logs every failed call with its traceback before raising; each one reaches the user
# here as a one-line StoreError instead.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class SearchSettings:
    """The vector index on the descriptors and how a search walks it, from the URI's query
    (`?index=HNSW&ef=128`, ...). The index type and its build parameters apply when the
    collection is created; `nprobe` and `ef` on every open.

    Default AUTO: FLAT (exact) while the collection holds fewer than AUTO_HNSW_AT key frames,
    then HNSW, built once when a commit crosses that size. HNSW over the 512-d descriptors
    answers 100k key frames in tens of milliseconds at recall@12 ≥ 0.99 (docs/scale-out.md),
    but is not exact on small collections: its graph over a few clustered videos can leave a
    cluster unreachable (measured on a Milvus 2.3.5 server: one query of 85 got none of its
    true top 12). IVF_FLAT and IVF_SQ8 partition into `nlist` cells and visit `nprobe`."""

    index: str = "AUTO"
    nlist: int = 1024
    nprobe: int = 32
    m: int = 16
    ef_construction: int = 200
    ef: int = 200  # recall@12 at 100k: 0.9975 with 100, 1.0 with 200 (docs/scale-out.md)
    vectors: str = "auto"  # float16 on servers from 2.4 on, else float32 (Lite has no float16)

    INDEXES = ("AUTO", "FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW")

    @classmethod
    def from_query(cls, query: dict[str, str], location: str) -> SearchSettings:
        index = query.get("index", cls.index).upper()
        if index not in cls.INDEXES:
            raise StoreError(f"{location}: unknown index {index!r}: expected one of "
                             f"{', '.join(cls.INDEXES)}")
        vectors = query.get("vectors", cls.vectors).lower()
        if vectors not in ("auto", *VECTOR_TYPES):
            raise StoreError(f"{location}: vectors={vectors!r}: expected float16 or float32")
        numbers = {}
        for name, field in (("nlist", "nlist"), ("nprobe", "nprobe"), ("M", "m"),
                            ("efConstruction", "ef_construction"), ("ef", "ef")):
            if name in query:
                try:
                    numbers[field] = int(query[name])
                except ValueError:
                    numbers[field] = 0
                if numbers[field] < 1:
                    raise StoreError(f"{location}: {name} must be a whole number above 0")
        return cls(index=index, vectors=vectors, **numbers)

    @property
    def first_index(self) -> str:
        """The index type a new collection gets."""
        return "FLAT" if self.index == "AUTO" else self.index

    def build_params(self, index: str) -> dict[str, int]:
        if index.startswith("IVF"):
            return {"nlist": self.nlist}
        if index == "HNSW":
            return {"M": self.m, "efConstruction": self.ef_construction}
        return {}

    def search_params(self, candidates: int) -> dict[str, int]:
        """For whichever index the collection has now (AUTO changes it under other readers;
        Milvus ignores the others'); an HNSW search weighs at least `candidates` key frames
        (Milvus refuses an ef below the limit)."""
        return {"ef": max(self.ef, candidates), "nprobe": self.nprobe}


class _Guarded:
    """The MilvusClient with every failure turned into a one-line StoreError naming the URI."""

    def __init__(self, client: MilvusClient, uri: str) -> None:
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except MilvusException as exc:
                raise StoreError(f"{self._uri}: {_message(exc)}") from exc

        return guarded


class MilvusStore:
    """The `Store` protocol over a Milvus deployment; `client_uri` is what MilvusClient takes: a
    server's http://HOST:PORT or a Milvus Lite file path ending in .db."""

    def __init__(self, client_uri: str, collection: str = "frameseek", *, create: bool = False,
                 token: str = "", settings: SearchSettings | None = None,
                 label: str | None = None) -> None:
        self.uri = label or client_uri
        self.settings = settings or SearchSettings()
        self.keyframes_collection = collection
        self.videos_collection = f"{collection}_videos"
        self.tracks_collection = f"{collection}_tracks"
        self.lite = client_uri.endswith(".db")
        try:
            client = MilvusClient(client_uri, token=token, timeout=CONNECT_TIMEOUT_S)
        except MilvusException as exc:
            raise StoreError(f"{self.uri}: {_message(exc)}") from exc
        self._client = _Guarded(client, self.uri)
        present = self._client.has_collection(self.keyframes_collection)
        if not present and not create:
            raise StoreError(f"{self.uri}: no frameseek index in collection {collection!r}")
        if not present:
            self._create()
        properties = self._client.describe_collection(self.keyframes_collection)["properties"]
        if properties.get(SCHEMA_PROPERTY) != SCHEMA:
            raise StoreError(f"{self.uri}: collection {collection!r} was written by an older "
                             "frameseek (a 64-d search field); index the videos again into a "
                             "new collection")
        self.auto = properties.get(INDEX_PROPERTY) == "AUTO"
        self.index_type = self._client.describe_index(self.keyframes_collection,
                                                      "descriptor")["index_type"]
        self.vector_type = self._descriptor_type()
        for name in (self.keyframes_collection, self.videos_collection, self.tracks_collection):
            self._client.load_collection(name)
        self.tracks = MilvusTracks(self)

    def _create(self) -> None:
        vectors = self.settings.vectors
        version = None if self.lite else self._client.get_server_version()
        # FLOAT16_VECTOR became generally available in Milvus 2.4: a 2.3.5 server takes it, but
        # its searches over it returned wrong, varying neighbours here (docs/scale-out.md).
        float16 = version is not None and _release(version) >= FLOAT16_SINCE
        if vectors == "auto":
            vectors = "float16" if float16 else "float32"
        elif vectors == "float16" and version is not None and not float16:
            raise StoreError(f"{self.uri}: Milvus {version} has no dependable float16 vectors "
                             "(FLOAT16_VECTOR, from 2.4 on); use vectors=float32")
        keyframes = self._client.create_schema(auto_id=True, enable_dynamic_field=False)
        keyframes.add_field("id", DataType.INT64, is_primary=True)
        keyframes.add_field("video", DataType.VARCHAR, max_length=MAX_PATH)
        keyframes.add_field("video_id", DataType.INT64)
        keyframes.add_field("frame", DataType.INT64)
        keyframes.add_field("time", DataType.DOUBLE)
        keyframes.add_field("segments", DataType.VARCHAR, max_length=MAX_VARCHAR)
        keyframes.add_field("descriptor", VECTOR_TYPES[vectors], dim=DESCRIPTOR_DIM)
        keyframes.add_field("thumbnail", DataType.VARCHAR, max_length=MAX_VARCHAR)
        indexes = self._client.prepare_index_params()
        indexes.add_index("descriptor", index_type=self.settings.first_index, metric_type="L2",
                          params=self.settings.build_params(self.settings.first_index))
        try:
            self._client.create_collection(
                self.keyframes_collection, schema=keyframes, index_params=indexes,
                consistency_level="Strong",
                properties={SCHEMA_PROPERTY: SCHEMA, INDEX_PROPERTY: self.settings.index})
        except StoreError as exc:
            raise StoreError(f"{exc} (asked for: {self.settings.index} index over "
                             f"{vectors} vectors; see ?index= and ?vectors= in "
                             "docs/scale-out.md)") from exc
        self._create_keyed(self.videos_collection, [
            ("path", DataType.VARCHAR, {"max_length": MAX_PATH}),
            ("id", DataType.INT64, {}),
            ("content_id", DataType.VARCHAR, {"max_length": 64}),
            *((name, DataType.INT64, {}) for name in ("size", "frames", "width", "height",
                                                       "keyframes", "coverage_keyframes")),
            ("duration", DataType.DOUBLE, {}),
            ("fps", DataType.DOUBLE, {}),
        ])
        self._create_keyed(self.tracks_collection, [
            ("path", DataType.VARCHAR, {"max_length": MAX_PATH}),
            ("content_id", DataType.VARCHAR, {"max_length": 64}),
            ("chunk", DataType.INT64, {}),
            ("chunks", DataType.INT64, {}),
            ("data", DataType.VARCHAR, {"max_length": MAX_VARCHAR}),
        ])

    def _create_keyed(self, name: str, fields: list[tuple[str, DataType, dict]]) -> None:
        """A collection of rows under INT64 keys that frameseek computes, never searched."""
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        for field, kind, options in fields:
            schema.add_field(field, kind, **options)
        # Milvus refuses a collection without a vector field, and loads one only once every
        # vector field has an index.
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        indexes = self._client.prepare_index_params()
        indexes.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._client.create_collection(name, schema=schema, index_params=indexes,
                                       consistency_level="Strong")

    def _descriptor_type(self) -> DataType:
        fields = self._client.describe_collection(self.keyframes_collection)["fields"]
        [field] = [f for f in fields if f["name"] == "descriptor"]
        return field["type"]

    # -- configuration -----------------------------------------------------------------------

    def get_config(self) -> dict | None:
        properties = self._client.describe_collection(self.keyframes_collection)["properties"]
        raw = properties.get(CONFIG_PROPERTY)
        return json.loads(raw) if raw else None

    def set_config(self, config: dict) -> None:
        self._client.alter_collection_properties(
            self.keyframes_collection, properties={CONFIG_PROPERTY: json.dumps(config)}
        )

    # -- writing -------------------------------------------------------------------------------

    def add_video(self, video: VideoRecord, keyframes: list[KeyFrame]) -> VideoRecord:
        holder = self._client.get(self.videos_collection, ids=[_key(video.path)],
                                  output_fields=["path"])
        if holder and holder[0]["path"] != video.path:
            raise StoreError(f"{video.path}: its key collides with {holder[0]['path']}")
        video_id = secrets.randbits(63)
        rows = [
            {"video": video.path, "video_id": video_id, "frame": k.frame, "time": k.time,
             "segments": json.dumps(k.segments), "descriptor": self._vector(k.descriptor),
             "thumbnail": base64.b64encode(k.thumbnail or b"").decode("ascii")}
            for k in keyframes
        ]
        for start in range(0, len(rows), INSERT_BATCH):
            self._client.insert(self.keyframes_collection, rows[start : start + INSERT_BATCH])
        row = {k: v for k, v in asdict(video).items() if k in VIDEO_FIELDS}
        row.update(key=_key(video.path), id=video_id, keyframes=len(keyframes),
                   placeholder=[0.0, 0.0])
        self._client.upsert(self.videos_collection, [row])  # the commit point
        self._client.delete(self.keyframes_collection,
                            filter=f"video == {_literal(video.path)} and video_id != {video_id}")
        self._flush()
        return self.find_video(video.path)  # type: ignore[return-value]

    def remove_video(self, path: str) -> bool:
        if self.find_video(path) is None:
            return False
        # Deleting the video row hides its key frames at once; then they go.
        self._client.delete(self.videos_collection, ids=[_key(path)])
        self._client.delete(self.keyframes_collection, filter=f"video == {_literal(path)}")
        self._flush()
        return True

    def _flush(self) -> None:
        """Seal what was written and wait for the vector index to cover it: until then a
        server answers from its interim index over unsealed rows, which is approximate even
        for a handful of key frames."""
        for name in (self.keyframes_collection, self.videos_collection):
            self._client.flush(name)
        if self.auto and self.index_type == "FLAT":
            self._grow_index()
        deadline = time.monotonic() + INDEX_WAIT_S
        while time.monotonic() < deadline:
            progress = self._client.describe_index(self.keyframes_collection, "descriptor")
            if progress.get("pending_index_rows", 0) == 0 and (
                    progress.get("indexed_rows", 0) >= progress.get("total_rows", 0)):
                return
            time.sleep(0.1)

    def _grow_index(self) -> None:
        """AUTO's switch from FLAT to HNSW once the collection is large enough: the index is
        rebuilt once, and searches wait for it (Milvus releases the collection meanwhile)."""
        stats = self._client.get_collection_stats(self.keyframes_collection)
        if int(stats["row_count"]) < AUTO_HNSW_AT:
            return
        self._client.release_collection(self.keyframes_collection)
        self._client.drop_index(self.keyframes_collection, "descriptor")
        indexes = self._client.prepare_index_params()
        indexes.add_index("descriptor", index_type="HNSW", metric_type="L2",
                          params=self.settings.build_params("HNSW"))
        self._client.create_index(self.keyframes_collection, indexes)
        self._client.load_collection(self.keyframes_collection)
        self.index_type = "HNSW"

    def _vector(self, descriptor: np.ndarray) -> np.ndarray:
        """The descriptor as the embedded store keeps it (float16), in the field's type."""
        half = np.asarray(descriptor, dtype=np.float16)
        return half if self.vector_type == DataType.FLOAT16_VECTOR else half.astype(np.float32)

    # -- reading -------------------------------------------------------------------------------

    def find_video(self, path: str) -> VideoRecord | None:
        rows = self._client.get(self.videos_collection, ids=[_key(path)],
                                output_fields=VIDEO_FIELDS)
        return _video(rows[0]) if rows and rows[0]["path"] == path else None

    def videos(self) -> list[VideoRecord]:
        rows = self._scan(self.videos_collection, VIDEO_FIELDS)
        return sorted((_video(row) for row in rows), key=lambda v: v.path)

    def _current(self, paths: set[str]) -> dict[str, int]:
        """path → the video_id its key frames must carry to count (absent: not in the index)."""
        if not paths:
            return {}
        rows = self._client.get(self.videos_collection, ids=[_key(path) for path in paths],
                                output_fields=["path", "id"])
        return {row["path"]: row["id"] for row in rows}

    def _visible(self, rows: list[dict]) -> list[dict]:
        current = self._current({row["video"] for row in rows})
        return [row for row in rows if current.get(row["video"]) == row["video_id"]]

    def vectors(self) -> Vectors:
        """Every key frame's vectors: a full scan of the collection (search does not need it);
        the 64-d index derived from the descriptors by the index's pooling."""
        current = {v.path: v.id for v in self.videos()}
        rows = [row for row in self._scan(self.keyframes_collection,
                                          ["id", "video", "video_id", "descriptor"])
                if current.get(row["video"]) == row["video_id"]]
        rows.sort(key=lambda row: row["id"])
        descriptors = self._descriptors(rows)
        pooling = pooling_named((self.get_config() or {}).get("pooling", "rmac"))
        return Vectors(np.fromiter((row["id"] for row in rows), dtype=np.int64, count=len(rows)),
                       pooling.coarse(descriptors.astype(np.float32)), descriptors)

    def version(self) -> Hashable:
        """Milvus gives no cheap sign that another client wrote: every call is a new version,
        so caches re-read each time (as `vectors()` scans each time)."""
        return object()

    def keyframes(self, ids: list[int]) -> list[KeyFrameRecord]:
        if not ids:
            return []
        rows = self._client.get(self.keyframes_collection, ids=[int(i) for i in ids],
                                output_fields=KEYFRAME_FIELDS)
        by_id = {
            row["id"]: KeyFrameRecord(row["id"], row["video"], row["frame"], row["time"],
                                      [tuple(span) for span in json.loads(row["segments"])])
            for row in self._visible(rows)
        }
        return [by_id[i] for i in ids if i in by_id]

    def thumbnail(self, keyframe_id: int) -> bytes | None:
        rows = self._client.get(self.keyframes_collection, ids=[int(keyframe_id)],
                                output_fields=["thumbnail"])
        if not rows or not rows[0]["thumbnail"]:
            return None
        return base64.b64decode(rows[0]["thumbnail"])

    def search(self, index: np.ndarray, descriptor: np.ndarray, top: int = 12,
               candidates: int = 100) -> list[Hit]:
        """The `top` nearest key frames by Milvus' index on the 512-d descriptors (an HNSW
        search weighs `candidates` of them: its ef), ranked here by exact distance on the
        descriptors it returns (the embedded store's `rerank`, so both stores give the same
        distances to the last digit). `index` (the 64-d vector) is not used. Key frames of
        unfinished writes are dropped; should that leave fewer than `top`, Milvus is asked
        again for twice as many."""
        query = np.asarray(descriptor, dtype=np.float32)
        limit = top
        while True:
            found = self._client.search(
                self.keyframes_collection, data=[self._vector(query)], anns_field="descriptor",
                limit=limit, output_fields=["video", "video_id", "descriptor"],
                search_params={"metric_type": "L2",
                               "params": self.settings.search_params(max(limit, candidates))},
            )[0]
            rows = self._visible([{"id": hit["id"], **hit["entity"]} for hit in found])
            if len(rows) >= top or len(found) < limit:  # enough, or all there is
                break
            limit *= 2
        if not rows:
            return []
        squared, picked = rerank(self._descriptors(rows), np.arange(len(rows))[None],
                                 query[None], top)
        ids = np.fromiter((row["id"] for row in rows), dtype=np.int64, count=len(rows))
        return hits(ids[picked], squared)[0]

    def _descriptors(self, rows: list[dict]) -> np.ndarray:
        """(N, 512) float16, as stored: FLOAT16_VECTOR comes back as bytes."""
        if self.vector_type == DataType.FLOAT16_VECTOR:
            data = b"".join(_raw(row["descriptor"]) for row in rows)
            return np.frombuffer(data, dtype=np.float16).reshape(-1, DESCRIPTOR_DIM)
        return np.asarray([row["descriptor"] for row in rows],
                          dtype=np.float32).reshape(-1, DESCRIPTOR_DIM).astype(np.float16)

    def _scan(self, collection: str, fields: list[str]) -> list[dict]:
        iterator = self._client.query_iterator(collection, batch_size=SCAN_BATCH,
                                               output_fields=fields)
        rows: list[dict] = []
        while batch := iterator.next():
            rows.extend(batch)
        iterator.close()
        return rows

    def close(self) -> None:
        self._client.close()


class MilvusTracks:
    """The localisation tracks in `NAME_tracks`, with the TrackStore's interface
    (frameseek/localize.py): keyed by path and content, a stale one never returned.

    A track is written in chunks keyed by (path, content, chunk), each row carrying the count:
    rewriting the same content overwrites the same rows, and a track missing a chunk (a writer
    that died half-way) reads as absent, so the match keeps its key frame's time until the
    video is indexed again."""

    def __init__(self, store: MilvusStore) -> None:
        self._store = store
        self._client = store._client
        self._collection = store.tracks_collection
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], Track] = OrderedDict()

    def put(self, path: str, content_id: str, track: Track) -> None:
        data = track.to_bytes()
        chunks = [data[i : i + TRACK_CHUNK] for i in range(0, len(data), TRACK_CHUNK)] or [b""]
        rows = [{"key": _key(f"{path}\0{content_id}\0{n}"), "path": path,
                 "content_id": content_id, "chunk": n, "chunks": len(chunks),
                 "data": base64.b64encode(chunk).decode("ascii"), "placeholder": [0.0, 0.0]}
                for n, chunk in enumerate(chunks)]
        self._client.upsert(self._collection, rows)
        self._client.delete(self._collection, filter=f"path == {_literal(path)} and "
                                                     f"content_id != {_literal(content_id)}")
        self._client.flush(self._collection)
        with self._lock:
            self._forget(path)

    def get(self, path: str, content_id: str) -> Track | None:
        key = (path, content_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rows = self._client.query(
            self._collection, output_fields=["chunk", "chunks", "data"],
            filter=f"path == {_literal(path)} and content_id == {_literal(content_id)}")
        if not rows or len(rows) != rows[0]["chunks"]:
            return None
        rows.sort(key=lambda row: row["chunk"])
        track = Track.from_bytes(b"".join(base64.b64decode(row["data"]) for row in rows))
        with self._lock:
            self._cache[key] = track
            if len(self._cache) > CACHED_TRACKS:
                self._cache.popitem(last=False)
        return track

    def remove(self, path: str) -> None:
        self._client.delete(self._collection, filter=f"path == {_literal(path)}")
        self._client.flush(self._collection)
        with self._lock:
            self._forget(path)

    def _forget(self, path: str) -> None:
        for key in [key for key in self._cache if key[0] == path]:
            del self._cache[key]

    def close(self) -> None:
        """The store's client is closed with the store."""


def _key(text: str) -> int:
    """A row's primary key from its text: a million videos share one with odds of about 1 in
    20 million, and `add_video` refuses to overwrite a different path rather than lose it."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _literal(text: str) -> str:
    """A string literal for a Milvus filter expression (quotes and backslashes escaped)."""
    return json.dumps(text, ensure_ascii=False)


def _message(exc: MilvusException) -> str:
    return " ".join(str(exc.message or exc).split())


def _release(version: str) -> tuple[int, ...]:
    """"v2.3.5" → (2, 3, 5); a version it cannot read counts as new."""
    try:
        return tuple(int(part) for part in version.lstrip("v").split("-")[0].split("."))
    except ValueError:
        return (99,)


def _raw(vector: Any) -> bytes:
    """pymilvus returns a FLOAT16_VECTOR as bytes, or as a list holding them."""
    return vector[0] if isinstance(vector, list) else bytes(vector)


def _video(row: dict) -> VideoRecord:
    return VideoRecord(**{name: row[name] for name in VIDEO_FIELDS})
