"""Milvus as the store: key frames and their vectors in a Milvus server, cluster or Lite file.

Two collections per index. `NAME` holds one row per key frame: the 64-d index (L2, the coarse
stage's search field), the 512-d descriptor (returned with the candidates for the refine stage),
and the metadata a match needs. `NAME_videos` holds one row per video, keyed by a 63-bit hash
of its path (pymilvus pages through VARCHAR keys with unescaped filters, so paths with quotes
would break a scan over string keys).

Milvus has no multi-row transactions, so a video is published by one write: its row in
`NAME_videos`. Every write of a video draws a fresh `video_id`; its key frames are inserted first
under that id, then the video row is upserted with it (the commit point), then key frames under
older ids are deleted. A key frame counts only while its video row carries its `video_id`, so a
crash at any step leaves each video old, new or absent, never half of one, and the next write of
that path clears the leftovers.

Thumbnails are kept, base64 in a VARCHAR, so everything that shows a match (the web page) works
the same on both stores; they cost about 4 KB a key frame, twice the descriptor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Hashable
from dataclasses import asdict

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from frameseek.features import DESCRIPTOR_DIM, INDEX_DIM
from frameseek.keyframes import KeyFrame
from frameseek.search import CoarseToFine, Hit
from frameseek.store.base import KeyFrameRecord, StoreError, Vectors, VideoRecord

CONFIG_PROPERTY = "frameseek.config"
MAX_PATH = 4096
MAX_THUMBNAIL = 65535  # VARCHAR limit; a 192-px JPEG in base64 is far below it
INSERT_BATCH = 256  # rows per insert: well under gRPC's message limit even with thumbnails
SCAN_BATCH = 4096
VIDEO_FIELDS = ["path", "id", "content_id", "size", "duration", "frames", "width", "height",
                "fps", "keyframes", "coverage_keyframes"]
KEYFRAME_FIELDS = ["id", "video", "video_id", "frame", "time", "segments"]


class MilvusStore:
    """The `Store` protocol over a Milvus deployment; `client_uri` is what MilvusClient takes: a
    server's http://HOST:PORT or a Milvus Lite file path ending in .db."""

    def __init__(self, client_uri: str, collection: str = "frameseek", *, create: bool = False,
                 token: str = "", index_type: str = "FLAT", label: str | None = None) -> None:
        self.uri = label or client_uri
        self.keyframes_collection = collection
        self.videos_collection = f"{collection}_videos"
        try:
            self._client = MilvusClient(client_uri, token=token)
            present = self._client.has_collection(self.keyframes_collection)
            if not present and not create:
                raise StoreError(f"{self.uri}: no frameseek index in collection {collection!r}")
            if not present:
                self._create(index_type)
            for name in (self.keyframes_collection, self.videos_collection):
                self._client.load_collection(name)
        except MilvusException as exc:
            raise StoreError(f"{self.uri}: {exc.message}") from exc

    def _create(self, index_type: str) -> None:
        keyframes = self._client.create_schema(auto_id=True, enable_dynamic_field=False)
        keyframes.add_field("id", DataType.INT64, is_primary=True)
        keyframes.add_field("video", DataType.VARCHAR, max_length=MAX_PATH)
        keyframes.add_field("video_id", DataType.INT64)
        keyframes.add_field("frame", DataType.INT64)
        keyframes.add_field("time", DataType.DOUBLE)
        keyframes.add_field("segments", DataType.VARCHAR, max_length=MAX_THUMBNAIL)
        keyframes.add_field("index", DataType.FLOAT_VECTOR, dim=INDEX_DIM)
        keyframes.add_field("descriptor", DataType.FLOAT_VECTOR, dim=DESCRIPTOR_DIM)
        keyframes.add_field("thumbnail", DataType.VARCHAR, max_length=MAX_THUMBNAIL)
        indexes = self._client.prepare_index_params()
        indexes.add_index("index", index_type=index_type, metric_type="L2")
        # Milvus loads a collection only when every vector field has an index; FLAT is the raw
        # vectors, so the descriptor costs no extra memory for it.
        indexes.add_index("descriptor", index_type="FLAT", metric_type="L2")
        self._client.create_collection(self.keyframes_collection, schema=keyframes,
                                       index_params=indexes, consistency_level="Strong")

        videos = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        videos.add_field("key", DataType.INT64, is_primary=True)
        videos.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        videos.add_field("id", DataType.INT64)
        videos.add_field("content_id", DataType.VARCHAR, max_length=64)
        for name in ("size", "frames", "width", "height", "keyframes", "coverage_keyframes"):
            videos.add_field(name, DataType.INT64)
        videos.add_field("duration", DataType.DOUBLE)
        videos.add_field("fps", DataType.DOUBLE)
        # Milvus refuses a collection without a vector field; this one is never searched.
        videos.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        indexes = self._client.prepare_index_params()
        indexes.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._client.create_collection(self.videos_collection, schema=videos,
                                       index_params=indexes, consistency_level="Strong")

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
             "segments": json.dumps(k.segments),
             "index": np.asarray(k.index, dtype=np.float32),
             "descriptor": np.asarray(k.descriptor, dtype=np.float32),
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
        return self.find_video(video.path)  # type: ignore[return-value]

    def remove_video(self, path: str) -> bool:
        if self.find_video(path) is None:
            return False
        # Deleting the video row hides its key frames at once; then they go.
        self._client.delete(self.videos_collection, ids=[_key(path)])
        self._client.delete(self.keyframes_collection, filter=f"video == {_literal(path)}")
        return True

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
        """Every key frame's vectors: a full scan of the collection (search does not need it)."""
        current = {v.path: v.id for v in self.videos()}
        rows = [row for row in self._scan(self.keyframes_collection,
                                          ["id", "video", "video_id", "index", "descriptor"])
                if current.get(row["video"]) == row["video_id"]]
        rows.sort(key=lambda row: row["id"])
        return _vectors(rows)

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
        """Coarse stage in Milvus (L2 on the 64-d index), refine here on the descriptors it
        returns, with the same CoarseToFine as the embedded store."""
        found = self._client.search(
            self.keyframes_collection, data=[np.asarray(index, dtype=np.float32)],
            anns_field="index", limit=max(top, candidates), search_params={"metric_type": "L2"},
            output_fields=["video", "video_id", "index", "descriptor"],
        )[0]
        rows = self._visible([{"id": hit["id"], **hit["entity"]} for hit in found])
        refine = CoarseToFine(_vectors(rows), coarse="Flat")
        return refine.search(index, descriptor, top, candidates=len(rows))

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


def _key(path: str) -> int:
    """A video's primary key: a million videos share one with odds of about 1 in 20 million,
    and `add_video` refuses to overwrite a different path rather than lose it."""
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big") >> 1


def _literal(text: str) -> str:
    """A string literal for a Milvus filter expression (quotes and backslashes escaped)."""
    return json.dumps(text, ensure_ascii=False)


def _video(row: dict) -> VideoRecord:
    return VideoRecord(**{name: row[name] for name in VIDEO_FIELDS})


def _vectors(rows: list[dict]) -> Vectors:
    return Vectors(
        np.fromiter((row["id"] for row in rows), dtype=np.int64, count=len(rows)),
        np.asarray([row["index"] for row in rows], dtype=np.float32).reshape(-1, INDEX_DIM),
        np.asarray([row["descriptor"] for row in rows],
                   dtype=np.float32).reshape(-1, DESCRIPTOR_DIM),
    )
