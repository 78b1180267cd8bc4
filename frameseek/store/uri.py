"""Where an index lives, as one string: a directory (the embedded store) or a Milvus URI.

    DIR                                   the embedded store in a directory (the default)
    milvus://HOST:PORT/COLLECTION         a Milvus server or cluster (its proxy's address)
    milvus-lite:///abs/path/file.db       Milvus Lite, a local file (milvus-lite://rel/file.db)

Milvus URIs take `?collection=NAME` (Lite; default "frameseek"), the vector index on the 512-d
descriptors when the collection is created (`?index=HNSW`, the default, or FLAT, IVF_FLAT,
IVF_SQ8, with `M`, `efConstruction`, `nlist`; `?vectors=float16|float32`), and how searches walk
it (`?ef=N`, `?nprobe=N`): frameseek/store/milvus.py, `SearchSettings`. A server's token is read
from FRAMESEEK_MILVUS_TOKEN, so that it stays out of command lines and logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from frameseek.store.base import Store, StoreError
from frameseek.store.embedded import EmbeddedStore

MILVUS_SCHEMES = ("milvus", "milvus-lite")
DEFAULT_COLLECTION = "frameseek"
TOKEN_VARIABLE = "FRAMESEEK_MILVUS_TOKEN"


def is_store_uri(location: str | Path) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0] in MILVUS_SCHEMES


def open_store(location: str | Path, *, create: bool = False) -> Store:
    """The store a directory or URI names; Milvus is imported only when one is asked for."""
    if not is_store_uri(location):
        return EmbeddedStore(Path(location), create=create)
    try:
        from frameseek.store.milvus import MilvusStore, SearchSettings
    except ImportError as exc:
        raise StoreError(
            f"{location}: Milvus support is not installed: pip install 'frameseek[scale]'"
        ) from exc
    parts = urlsplit(str(location))
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    settings = SearchSettings.from_query(query, str(location))
    if parts.scheme == "milvus-lite":
        file = parts.netloc + parts.path
        if not file.endswith(".db"):
            raise StoreError(f"{location}: a Milvus Lite file must end in .db")
        if create:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
        elif not Path(file).exists():  # opening it would leave an empty database behind
            raise StoreError(f"{location}: no frameseek index here")
        collection = query.get("collection", DEFAULT_COLLECTION)
        return MilvusStore(file, collection, create=create, settings=settings,
                           label=str(location))
    if not parts.hostname:
        raise StoreError(f"{location}: expected milvus://HOST:PORT/COLLECTION")
    collection = parts.path.strip("/") or DEFAULT_COLLECTION
    server = f"http://{parts.hostname}:{parts.port or 19530}"
    return MilvusStore(server, collection, create=create, token=os.environ.get(TOKEN_VARIABLE, ""),
                       settings=settings, label=str(location))
