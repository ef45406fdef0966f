"""Does a bulk ingest delay search-by-photo? The latency ratio, loaded over idle.

Real Redis, real Celery worker processes, the real model, real photos. The API (app factory,
in this process) answers POST /v1/search, which embeds the photo through the `query` queue.
For each layout the search latency is measured idle, then again while a bulk ingest fills
the `ingest` queue, and the ratio of the medians (and of the 95th percentiles) is reported:

* ``split``: the deployment's layout (chart, docs/operations.md): one worker pool on
  ``-Q ingest``, another on ``-Q query``. Interactive search never waits behind ingest tasks;
  what is left is the machine's CPU shared by both workers.
* ``shared``: one worker on ``-Q query,ingest`` with one task at a time, the smallest
  deployment. A search waits for the ingest task in hand (a few of them at most, Redis
  round-robins the queues), never for the backlog.

    python benchmarks/queue_isolation.py [--searches 20] [--bulk-tasks 60] [--items 16]
        [--max-ratio 3.0]

Exits 1 when the split layout's median ratio exceeds --max-ratio. Needs Redis on
127.0.0.1:6379 (scripts/test.sh starts one) and the model cache (build/test-models).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from api import create_app
from api.celery_client import TaskClient
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.settings import Settings
from lookalike.task_queues import INDEX_ITEMS, INGEST_QUEUE
from worker.model import build_model_cache

REPO = Path(__file__).resolve().parents[1]
STAMPS = Path("/usr/share/tuxpaint/stamps")


def photos(n: int) -> list[Path]:
    found = sorted(p for p in STAMPS.rglob("*.png") if p.stat().st_size > 20_000)
    if len(found) < n:
        sys.exit("install Debian's tuxpaint-stamps-default (scripts/test.sh does)")
    return found[:: max(1, len(found) // n)][:n]


def start_worker(queues: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "-Q", queues]
    command += ["--pool", "threads", "--concurrency", "1", "--prefetch-multiplier", "1"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    command += ["--hostname", f"{queues.replace(',', '-')}@bench"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def search_latency(client: Any, data: bytes) -> float:
    started = time.perf_counter()
    resp = client.post(
        "/v1/search",
        data={"image": (io.BytesIO(data), "q.png")},
        content_type="multipart/form-data",
    )
    elapsed = time.perf_counter() - started
    if resp.status_code != 200:
        raise RuntimeError(f"search failed: {resp.status_code} {resp.get_json()}")
    return elapsed


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def run_layout(layout: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    data_dir = workdir / layout
    settings = Settings(
        data_dir=data_dir,
        model_cache=args.model_cache,
        redis_url=redis_url,
        qdrant_url=":memory:",
        query_timeout_s=120,
    )
    env = dict(
        os.environ,
        LOOKALIKE_REDIS_URL=redis_url,
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_MODEL_CACHE=str(args.model_cache),
        LOOKALIKE_QDRANT_URL=":memory:",
        LOOKALIKE_INFERENCE_THREADS=str(args.inference_threads),
        LOOKALIKE_LOG_LEVEL="WARNING",
    )
    queues = ["ingest", "query"] if layout == "split" else ["query,ingest"]
    procs = [start_worker(q, env, workdir / f"{layout}.log") for q in queues]
    try:
        client = create_app(settings).test_client()
        images = [p.read_bytes() for p in photos(args.items)]
        blobs = BlobStore(settings.image_dir)
        for data in images:
            blobs.put(sha256_hex(data), data)
        query = images[0]
        # Warm-up: every worker loads its model (one query each, plus an ingest task).
        tasks = TaskClient(settings)
        warm = [{"id": "warm", "image_sha256": sha256_hex(images[1])}]
        tasks.result(tasks.send(INDEX_ITEMS, warm)).get(timeout=300)
        for _ in range(3):
            search_latency(client, query)

        idle = [search_latency(client, query) for _ in range(args.searches)]

        started = time.perf_counter()
        for t in range(args.bulk_tasks):
            items = [
                {"id": f"bulk-{t}-{i}", "image_sha256": sha256_hex(d)} for i, d in enumerate(images)
            ]
            tasks.send(INDEX_ITEMS, items)
        while broker.llen(INGEST_QUEUE) >= args.bulk_tasks:
            time.sleep(0.05)
        loaded, backlog = [], []
        for _ in range(args.searches):
            loaded.append(search_latency(client, query))
            backlog.append(broker.llen(INGEST_QUEUE))
        if backlog[-1] == 0:
            print(
                f"  warning: [{layout}] the bulk drained before the searches ended: "
                "raise --bulk-tasks"
            )
        while broker.llen(INGEST_QUEUE) > 0:
            time.sleep(0.2)
        ingest_s = time.perf_counter() - started
    finally:
        stop(procs)
    return {
        "idle_p50": statistics.median(idle),
        "idle_p95": p95(idle),
        "loaded_p50": statistics.median(loaded),
        "loaded_p95": p95(loaded),
        "ratio_p50": statistics.median(loaded) / statistics.median(idle),
        "ratio_p95": p95(loaded) / p95(idle),
        "backlog_min": float(min(backlog)),
        "ingest_images_per_s": args.bulk_tasks * args.items / ingest_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--bulk-tasks", type=int, default=60)
    parser.add_argument("--items", type=int, default=16, help="images per ingest task")
    parser.add_argument("--inference-threads", type=int, default=1)
    parser.add_argument("--redis-db", type=int, default=8)
    parser.add_argument("--layouts", default="split,shared")
    parser.add_argument("--max-ratio", type=float, default=3.0)
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=Path(os.environ.get("LOOKALIKE_TEST_MODEL_CACHE", REPO / "build" / "test-models")),
    )
    args = parser.parse_args()
    build_model_cache("efficientnet-lite0", args.model_cache)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.bulk_tasks} ingest tasks x {args.items} images, {args.searches} searches"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in args.layouts.split(","):
            results[layout] = r = run_layout(layout, args, Path(tmp))
            print(
                f"{layout:>7}: search idle p50 {r['idle_p50'] * 1000:6.0f} ms "
                f"p95 {r['idle_p95'] * 1000:6.0f} ms | during bulk ingest p50 "
                f"{r['loaded_p50'] * 1000:6.0f} ms p95 {r['loaded_p95'] * 1000:6.0f} ms | "
                f"ratio p50 {r['ratio_p50']:.2f} p95 {r['ratio_p95']:.2f} | "
                f"ingest backlog >= {r['backlog_min']:.0f} tasks while searching | "
                f"ingest {r['ingest_images_per_s']:.0f} images/s",
                flush=True,
            )
    split = results.get("split")
    if split is not None and split["ratio_p50"] > args.max_ratio:
        print(f"FAIL: split layout's median ratio {split['ratio_p50']:.2f} > {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
