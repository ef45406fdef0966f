"""The embedded backend's shards: how they are configured (HNSW, datatypes, payload index
types) and the process-wide pool that opens each shard directory once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qdrant_edge import (
    EdgeShard,
    HnswIndexConfig,
    Memory,
    PayloadSchemaType,
    VectorStorageDatatype,
)

from lookalike import residency
from lookalike.schema import (
    TEXT_INDEX,
)

EDGE_INDEX_TYPES = {
    "keyword": PayloadSchemaType.Keyword,
    "integer": PayloadSchemaType.Integer,
    "float": PayloadSchemaType.Float,
    "bool": PayloadSchemaType.Bool,
    "datetime": PayloadSchemaType.Datetime,
    TEXT_INDEX: PayloadSchemaType.Text,
}
EDGE_INDEX_NAMES = {kind: name for name, kind in EDGE_INDEX_TYPES.items()}


EDGE_HNSW = HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=10_000, memory=Memory.Pinned)

# Segments of a query are searched one after the other in the caller's thread. qdrant-edge's
# default fans a query out over a pool of 8 threads (whatever the cores): at 100k items, 2
# segments, 2 cores, that took 0.6 ms of wall and 1.0 ms of CPU per query against 0.44 ms of
# both in one thread. The API's threads already run queries side by side.
EDGE_SEARCH_THREADS = 1

# How a new collection stores its vectors (LOOKALIKE_VECTOR_DATATYPE). float16 halves the
# vectors' memory; scores move by a few 1e-4 and recall@10 drops a little (at 100k items,
# 0.999 -> 0.985 in docs/performance.md's run). A collection keeps the type it was created
# with: a changed setting applies to new catalogs and new versions (a reindex).
EDGE_DATATYPES = {
    "float32": VectorStorageDatatype.Float32,
    "float16": VectorStorageDatatype.Float16,
}

_log = logging.getLogger(__name__)


class ShardPool:
    """The shards a catalog's store and its version views have open, by directory: a
    process can open a shard only once, so they share them.

    With ``index_after_idle_s`` > 0, a background thread optimizes the shards written to
    (builds their HNSW index) once no write came for that long: qdrant-edge never does it by
    itself, and an unindexed shard is searched exhaustively."""

    def __init__(self, index_after_idle_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.shards: dict[Path, EdgeShard] = {}
        self.index_after_idle_s = index_after_idle_s
        self._dirty: set[Path] = set()
        self._last_write = 0.0
        self._stop = threading.Event()
        self._indexer: threading.Thread | None = None
        # Held while a shard is optimized, so close() does not close it underneath.
        self.optimizing = threading.Lock()

    def written(self, path: Path) -> None:
        if self.index_after_idle_s <= 0:
            return
        with self.lock:
            self._dirty.add(path)
            self._last_write = time.monotonic()
            if self._stop.is_set() or (self._indexer and self._indexer.is_alive()):
                return
            self._indexer = threading.Thread(
                target=self._index_when_idle, name="edge-indexer", daemon=True
            )
            self._indexer.start()

    def _index_when_idle(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                wait = self._last_write + self.index_after_idle_s - time.monotonic()
                dirty = list(self._dirty) if wait <= 0 else []
                if wait <= 0:
                    self._dirty.clear()
                    if not dirty:
                        self._indexer = None
                        return
            if wait > 0:
                self._stop.wait(wait)
                continue
            for path in dirty:
                with self.optimizing:
                    shard = self.get(path)
                    if shard is None or self._stop.is_set():
                        continue
                    started = time.monotonic()
                    try:
                        changed = shard.optimize()
                    except Exception:
                        _log.exception("building the vector index of %s failed", path)
                        continue
                    if changed:
                        _log.info(
                            "vector index of %s built in %.1f s",
                            path.name,
                            time.monotonic() - started,
                        )
                        residency.warm(path)  # the new segment's files

    def stop_indexing(self) -> None:
        self._stop.set()
        indexer = self._indexer
        if indexer is not None and indexer is not threading.current_thread():
            indexer.join()

    def get(self, path: Path) -> EdgeShard | None:
        with self.lock:
            return self.shards.get(path)

    def open(self, path: Path, load: Callable[[], EdgeShard]) -> EdgeShard:
        with self.lock:
            shard = self.shards.get(path)
            if shard is not None:
                return shard
            shard = self.shards[path] = load()
        # Outside the lock: at 1M items this reads 6 GiB (lookalike/residency.py).
        residency.warm(path)
        return shard

    def take(self, path: Path | None = None) -> list[EdgeShard]:
        """Remove one shard (or all) from the pool, for the caller to close."""
        with self.lock:
            if path is None:
                shards, self.shards = list(self.shards.values()), {}
                return shards
            shard = self.shards.pop(path, None)
            return [] if shard is None else [shard]
