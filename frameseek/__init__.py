"""frameseek: search videos by image (key frames, VGG16 features, coarse-to-fine search)."""

from frameseek.index import AddReport, Index, IndexConfig, Match
from frameseek.query import QueryError
from frameseek.video import VideoError

__all__ = ["AddReport", "Index", "IndexConfig", "Match", "QueryError", "VideoError"]
__version__ = "0.1.0"
