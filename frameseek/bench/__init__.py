"""Benchmarks: `frameseek bench search` (search at scale) and `frameseek bench index` (indexing)."""
