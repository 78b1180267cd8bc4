"""Vector stores: where key frames and their vectors live (embedded by default)."""

from frameseek.store.base import KeyFrameRecord, Store, StoreError, Vectors, VideoRecord
from frameseek.store.embedded import EmbeddedStore

__all__ = ["EmbeddedStore", "KeyFrameRecord", "Store", "StoreError", "Vectors", "VideoRecord"]
