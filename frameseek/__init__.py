"""frameseek: search videos by image (key frames, VGG16 features, coarse-to-fine search)."""

from frameseek.index import AddReport, Index, IndexConfig
from frameseek.query import QueryError
from frameseek.results import Answer, Match, Moment, Verdict, VideoResult
from frameseek.video import VideoError

__all__ = ["AddReport", "Answer", "Index", "IndexConfig", "Match", "Moment", "QueryError",
           "Verdict", "VideoError", "VideoResult"]
__version__ = "0.1.0"
