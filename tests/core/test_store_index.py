"""The embedded shard builds its HNSW index by itself once writes stop, and searches the same.

Without it qdrant-edge keeps one plain segment and scans every vector on every query
(docs/performance.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

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


def _read_mib(caplog: pytest.LogCaptureFixture, path: Path) -> int:
    """MiB that lookalike.residency logged reading from ``path``."""
    return sum(
        r.args[0]
        for r in caplog.records
        if r.name == "lookalike.residency" and isinstance(r.args, tuple) and r.args[1] == path
    )


def test_a_loaded_or_reindexed_shard_is_read_into_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A freshly opened 1M shard ran its first searches 3-5x slower until its vector file had
    # been read once (lookalike/residency.py): the store reads it when a shard loads and
    # when an optimize writes new segments.
    caplog.set_level(logging.INFO, logger="lookalike.residency")
    vectors_mib = N * DIM * 4 >> 20
    x = _vectors()
    store = EdgeStore(tmp_path, "catalog")
    try:
        _fill(store, x)
        caplog.clear()
        assert store.optimize() is True
        assert _read_mib(caplog, store.path) >= vectors_mib
    finally:
        store.close()
    caplog.clear()
    reopened = EdgeStore(tmp_path, "catalog")
    try:
        assert reopened.search(x[7], limit=1)[0].payload["item_id"] == "i7"
        assert _read_mib(caplog, reopened.path) >= vectors_mib
    finally:
        reopened.close()
