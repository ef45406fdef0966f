"""The embedded shard builds its HNSW index by itself once writes stop, and searches the same.

Without it qdrant-edge keeps one plain segment and scans every vector on every query
(docs/performance.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lookalike.schema import point_id
from lookalike.store import EdgeStore, StoredItem

N = 2500  # above the indexing threshold (10 MB of 1280-d float32 vectors)
DIM = 1280


def _vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = np.abs(rng.standard_normal((25, DIM)))
    x = centres[rng.integers(0, 25, N)] + 0.5 * np.abs(rng.standard_normal((N, DIM)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def _fill(store: EdgeStore, x: np.ndarray) -> None:
    store.ensure_collection(DIM)
    for start in range(0, N, 500):
        store.upsert(
            [
                StoredItem(
                    point_id(f"i{i}", "default"), {"item_id": f"i{i}", "tenant": "default"}, x[i]
                )
                for i in range(start, start + 500)
            ]
        )


def _indexed(store: EdgeStore) -> int:
    return int(store._open().info().indexed_vectors_count)


def test_index_is_built_after_writes_stop_and_finds_the_exact_neighbours(tmp_path: Path) -> None:
    x = _vectors()
    store = EdgeStore(tmp_path, "catalog", index_after_idle_s=0.2)
    try:
        _fill(store, x)
        deadline = time.monotonic() + 120
        while _indexed(store) < N and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _indexed(store) == N
        assert store.count() == N
        for q in (0, 1234, N - 1):
            hits = store.search(x[q], limit=10)
            exact = np.argsort(-(x @ x[q]))[:10]
            found = {h.payload["item_id"] for h in hits}
            assert len(found & {f"i{i}" for i in exact}) >= 9
    finally:
        store.close()


def test_without_idle_indexing_optimize_builds_it(tmp_path: Path) -> None:
    x = _vectors()
    store = EdgeStore(tmp_path, "catalog")
    try:
        _fill(store, x)
        assert _indexed(store) == 0
        assert store.optimize() is True
        assert _indexed(store) == N
        assert store.search(x[42], limit=1)[0].payload["item_id"] == "i42"
    finally:
        store.close()
    # The index survives a restart.
    reopened = EdgeStore(tmp_path, "catalog")
    try:
        reopened.ensure_collection(DIM)
        assert _indexed(reopened) == N
    finally:
        reopened.close()
