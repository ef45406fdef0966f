"""What the keypoints cost the similarity queries when hits carry them:
``python -m benchmarks.hit_payload [--points 3000] [--limit 20] [--rounds 7]``.

Every point stores its near-duplicate keypoints (~10 KiB, lookalike/verify.py); points from
before this version also a colour signature (0.7 KiB). Searches, queries and scrolls leave
those internal fields out (lookalike.schema.INTERNAL_FIELDS); this measures what that saves,
in one process, on an embedded qdrant-edge catalog of ``--points`` points whose payloads are
what the worker writes (real keypoints of real photos, metadata, a colour signature):

- the store's query for ``--limit`` neighbours (the similar-by-id search) with the hits'
  payload brief (now) and whole (before), alternating, medians of ``--rounds`` rounds of 50;
- ``GET /v1/items/{id}/similar?limit=N`` through the API (Flask test client), the same way;
- the payload bytes of those hits (JSON), what a remote Qdrant sends over the network.

The "before" rows switch the selector back to the whole payload (``with_payload=True``);
nothing else differs. Wall-clock on a possibly shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.images import decode_scaled
from lookalike.schema import point_id
from lookalike.settings import Settings
from lookalike.store import StoredItem, open_store
from lookalike.store import edge as edge_store
from lookalike.verify import KEYPOINTS_FIELD, encode
from worker.keypoints import find_keypoints, keypoint_source

STAMPS = Path("/usr/share/tuxpaint/stamps")
DIM = 1472  # efficientnet-lite0 multiscale


def real_keypoints(count: int) -> list[str]:
    """The encoded keypoints of ``count`` tuxpaint photos, as the worker stores them."""
    paths = sorted(p for p in STAMPS.rglob("*.png") if p.stat().st_size > 20_000)[:count]
    if not paths:
        raise SystemExit("no photos: apt-get install tuxpaint-stamps-default")
    out = []
    for path in paths:
        data = path.read_bytes()
        decoded = decode_scaled(data, max_pixels=40_000_000, side=224)
        out.append(encode(find_keypoints(keypoint_source(data, decoded, max_pixels=40_000_000))))
    return out


def ms(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hit_payload")
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(5)
    keypoints = real_keypoints(40)
    signature = base64.b64encode(rng.integers(0, 256, 512, dtype=np.uint8).tobytes()).decode()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        vectors = rng.normal(size=(args.points, DIM)).astype(np.float32)
        reader = open_store(settings)
        try:
            reader.ensure_collection(DIM)
            items = [
                StoredItem(
                    point_id(f"sku-{i}"),
                    {
                        "item_id": f"sku-{i}",
                        "tenant": "default",
                        "image_sha256": f"{i:064x}",
                        "metadata": {"category": f"c{i % 17}", "brand": "acme", "price": 9.5},
                        "model": "efficientnet-lite0",
                        "model_version": "efficientnet-lite0:bench",
                        "ingested_at": "2026-12-06T00:00:00+00:00",
                        "decode": "scaled-1",
                        KEYPOINTS_FIELD: keypoints[i % len(keypoints)],
                        "color_signature": signature,
                    },
                    vectors[i],
                )
                for i in range(args.points)
            ]
            for start in range(0, len(items), 256):
                reader.upsert(items[start : start + 256])
            rows, sizes = measure(reader, settings, vectors, args)
        finally:
            reader.close()
    print(
        f"{args.points} points (vectors {DIM}-d, payloads with real keypoints of "
        f"{np.mean([len(k) for k in keypoints]) / 1024:.1f} KiB and a colour signature), "
        f"{args.limit} hits a query; ms per query, median of {args.rounds} rounds of 50:"
    )
    for where, label in (("store", "store query (qdrant-edge)"), ("api", "GET /similar (API)")):
        whole = statistics.median(rows[where]["whole"])
        now = statistics.median(rows[where]["brief"])
        print(
            f"  {label:<28} whole payload {whole:6.2f}  brief {now:6.2f}  ratio {whole / now:.2f}"
        )
    print(
        f"  payload per hit (JSON): whole {sizes['whole'] / 1024:.1f} KiB, brief "
        f"{sizes['brief']:.0f} bytes"
    )
    return 0


def measure(
    reader: Any, settings: Settings, vectors: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    from api.app import create_app

    rng = np.random.default_rng(6)
    client = create_app(settings, store=reader).test_client()
    queries = [vectors[i] for i in rng.integers(0, args.points, 50)]
    ids = [f"sku-{i}" for i in rng.integers(0, args.points, 50)]
    brief = edge_store.EDGE_BRIEF

    def store_query() -> None:
        for q in queries:
            reader.query(q, limit=args.limit)

    def api_similar() -> None:
        for item in ids:
            response = client.get(f"/v1/items/{item}/similar?limit={args.limit}")
            assert response.status_code == 200, response.get_data(as_text=True)

    rows: dict[str, dict[str, list[float]]] = {"store": {}, "api": {}}
    for _ in range(args.rounds):
        for name, selector in (("whole", True), ("brief", brief)):
            edge_store.EDGE_BRIEF = selector
            rows["store"].setdefault(name, []).append(ms(store_query) / 50)
            rows["api"].setdefault(name, []).append(ms(api_similar) / 50)
    sizes = {}
    for name, selector in (("whole", True), ("brief", brief)):
        edge_store.EDGE_BRIEF = selector
        hits = reader.query(queries[0], limit=args.limit)
        sizes[name] = sum(len(json.dumps(h.payload)) for h in hits) / len(hits)
    edge_store.EDGE_BRIEF = brief
    return rows, sizes


if __name__ == "__main__":
    raise SystemExit(main())
