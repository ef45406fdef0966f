"""How the embedded shard's vector storage options trade query cost for recall at scale.

Builds the same catalog twice in qdrant-edge, in this process: the service's configuration
(float32 vectors, ``lookalike.store``'s HNSW settings) and the same with scalar int8
quantization (quantized vectors held in RAM, the HNSW graph built on them). Then, rounds
alternating between set-ups, times ``query`` (nearest 10, payload included) for random
items of the catalog and measures recall@10 against exact cosine search over the same
vectors (the item itself excluded), for:

* float32 as the service searches (the collection's default ``hnsw_ef``), and with
  ``hnsw_ef=256``;
* int8 without rescoring, and rescored with the original vectors after oversampling the
  candidates 2x and 8x.

The catalog is the one of ``python -m benchmarks`` (section 4): the first 2,000 vectors are
real Fashion-MNIST embeddings, each further one a random real embedding plus Gaussian noise
(half the mean per-dimension spread), clipped at 0 and normalised. It is generated in
chunks, so a 1M catalog needs no 6 GB array beside its two shards.

    python -m benchmarks.vector_storage --items 1000000   # ~15 min on 2 cores, 14 GB disk
    python -m benchmarks.vector_storage --items 20000     # a minute

Prints one line per set-up and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge

from benchmarks.bench import REPO, noise_scale, noisy, real_embeddings
from benchmarks.embed_throughput import cpu_name
from lookalike.schema import VECTOR_NAME
from lookalike.store.edge import edge_config

CHUNK = 20_000
REAL = 2_000


class Catalog:
    """The benchmark's synthetic catalog, chunk by chunk, each chunk from its own seed."""

    def __init__(self, real: np.ndarray, size: int) -> None:
        self.real = real
        self.size = size
        self.scale = noise_scale(real)

    def chunk(self, index: int) -> np.ndarray:
        lo, hi = index * CHUNK, min(self.size, (index + 1) * CHUNK)
        ids = np.arange(lo, hi)
        out = np.empty((hi - lo, self.real.shape[1]), np.float32)
        real = ids < len(self.real)
        out[real] = self.real[ids[real]]
        extra = int((~real).sum())
        if extra:
            rng = np.random.default_rng(1000 + index)
            out[~real] = noisy(self.real[rng.integers(0, len(self.real), extra)], self.scale, rng)
        return out

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for index in range((self.size + CHUNK - 1) // CHUNK):
            yield index * CHUNK, self.chunk(index)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                self.chunk(int(c))[ids[ids // CHUNK == c] - c * CHUNK]
                for c in np.unique(ids // CHUNK)
            ]
        )

    def exact_top(self, queries: np.ndarray, query_ids: np.ndarray, k: int = 10) -> list[set[int]]:
        """The ``k`` nearest items of each query by exact cosine, the item itself excluded."""
        best_s = np.full((len(queries), k + 1), -np.inf, np.float32)
        best_i = np.zeros((len(queries), k + 1), np.int64)
        for start, vectors in self.chunks():
            scores = queries @ vectors.T
            ids = np.broadcast_to(np.arange(start, start + len(vectors)), scores.shape)
            all_s, all_i = np.concatenate([best_s, scores], 1), np.concatenate([best_i, ids], 1)
            order = np.argsort(-all_s, 1)[:, : k + 1]
            best_s, best_i = (
                np.take_along_axis(all_s, order, 1),
                np.take_along_axis(all_i, order, 1),
            )
        return [
            set([i for i in row if i != q][:k])
            for row, q in zip(best_i.tolist(), query_ids.tolist(), strict=True)
        ]


def shard_config(dim: int, quantized: bool) -> edge.EdgeConfig:
    """The service's shard configuration, with int8 quantization when asked."""
    quantization = (
        edge.ScalarQuantizationConfig(edge.ScalarType.Int8, quantile=0.99, always_ram=True)
        if quantized
        else None
    )
    return edge_config(dim, "float32", quantization)


def build(path: Path, catalog: Catalog, quantized: bool) -> tuple[edge.EdgeShard, dict[str, Any]]:
    shutil.rmtree(path, ignore_errors=True)
    shard = edge.EdgeShard.create(str(path), shard_config(catalog.real.shape[1], quantized))
    began = time.perf_counter()
    for start, vectors in catalog.chunks():
        for s in range(0, len(vectors), 1000):
            points = [
                edge.Point(start + s + j, {VECTOR_NAME: row.tolist()}, {"n": start + s + j})
                for j, row in enumerate(vectors[s : s + 1000])
            ]
            shard.update(edge.UpdateOperation.upsert_points(points))
    loaded = time.perf_counter()
    shard.optimize()
    shard.flush()
    done = time.perf_counter()
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return shard, {
        "upsert_s": loaded - began,
        "index_s": done - loaded,
        "disk_mib": disk / 2**20,
        "segments": shard.info().segments_count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vector_storage", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "vector-storage")
    parser.add_argument("--model-cache", type=Path, default=REPO / "build" / "test-models")
    parser.add_argument(
        "--out", type=Path, default=REPO / "build" / "bench" / "vector-storage.json"
    )
    args = parser.parse_args(argv)

    from worker.model import build_model_cache

    build_model_cache("efficientnet-lite0", args.model_cache)
    real, _, _ = real_embeddings(args.model_cache, REAL)
    catalog = Catalog(real, args.items)
    shards, builds = {}, {}
    try:
        for name, quantized in (("float32", False), ("int8", True)):
            shards[name], builds[name] = build(args.work_dir / name, catalog, quantized)
            print(f"built {name}: {builds[name]}", flush=True)
        rng = np.random.default_rng(7)
        query_ids = np.sort(rng.choice(args.items, min(args.queries, args.items), replace=False))
        queries = catalog.rows(query_ids)
        truth = catalog.exact_top(queries, query_ids)
        rescore = edge.QuantizationSearchParams
        setups: list[tuple[str, str, edge.SearchParams | None]] = [
            ("float32 (the service's)", "float32", None),
            ("float32, hnsw_ef 256", "float32", edge.SearchParams(hnsw_ef=256)),
            ("int8, no rescoring", "int8", edge.SearchParams(quantization=rescore(rescore=False))),
            (
                "int8, rescored, oversampling 2",
                "int8",
                edge.SearchParams(quantization=rescore(rescore=True, oversampling=2.0)),
            ),
            (
                "int8, rescored, oversampling 8",
                "int8",
                edge.SearchParams(quantization=rescore(rescore=True, oversampling=8.0)),
            ),
        ]
        # A first pass over the queries warms each shard (the first queries after a build
        # page its files in), then the timed rounds alternate the set-ups.
        for _, name, params in setups:
            for vector in queries:
                _query(shards[name], vector, params)
        wall: dict[str, list[float]] = {label: [] for label, _, _ in setups}
        cpu: dict[str, float] = {label: 0.0 for label, _, _ in setups}
        recall: dict[str, float] = {}
        for round_ in range(args.rounds):
            for label, name, params in setups:
                found = []
                c0 = time.thread_time()
                for vector in queries:
                    t0 = time.perf_counter()
                    hits = _query(shards[name], vector, params)
                    wall[label].append(time.perf_counter() - t0)
                    found.append(hits)
                cpu[label] += time.thread_time() - c0
                if round_ == 0:
                    recall[label] = float(
                        np.mean(
                            [
                                len(t & set([h for h in hits if h != q][:10])) / 10
                                for t, hits, q in zip(truth, found, query_ids.tolist(), strict=True)
                            ]
                        )
                    )
        rows = []
        for label, name, _ in setups:
            ms = np.array(wall[label]) * 1e3
            row = {
                "setup": label,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "cpu_ms": cpu[label] * 1e3 / len(ms),
                "recall_at_10": recall[label],
                **{f"build_{k}": v for k, v in builds[name].items()},
            }
            rows.append(row)
            print(
                f"{args.items} items, {label}: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f}"
                f" ms, CPU {row['cpu_ms']:.3f} ms a query, recall@10 {row['recall_at_10']:.3f}",
                flush=True,
            )
    finally:
        for shard in shards.values():
            shard.close()
        shutil.rmtree(args.work_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    args.out.write_text(json.dumps({"items": args.items, "machine": machine, "rows": rows}))
    print(f"wrote {args.out}")
    return 0


def _query(
    shard: edge.EdgeShard, vector: np.ndarray, params: edge.SearchParams | None
) -> list[int]:
    request = edge.QueryRequest(
        limit=11,
        query=edge.Query.Nearest(vector.tolist(), using=VECTOR_NAME),
        with_payload=True,
        with_vector=False,
        params=params,
    )
    return [int(p.id) for p in shard.query(request)]


if __name__ == "__main__":
    raise SystemExit(main())
