"""Benchmarks: `frameseek bench search` (search at scale) and `frameseek bench index` (indexing)."""

# The synthetic key frames' thumbnails: incompressible bytes the size of a real 192-px JPEG one.
THUMBNAIL_BYTES = 4_400
