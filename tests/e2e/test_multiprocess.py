"""The multi-process path: a real Redis broker and a real Celery worker in its own process.

The worker owns the embedded qdrant-edge shard while it runs (one process per shard), so the
results are checked by opening the shard here once the worker has stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from api.celery_client import TaskClient
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.schema import point_id
from lookalike.settings import Settings
from lookalike.store import open_store
from lookalike.task_queues import EMBED_QUERY, INDEX_ITEMS
from support import REPO, labelled_images

# A database of its own, so the test never touches anything else on the shared server.
REDIS_URL = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_settings(tmp_path: Path, model_cache_dir: Path) -> Settings:
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: run scripts/test.sh, which starts one")
    return Settings(data_dir=tmp_path / "data", model_cache=model_cache_dir, redis_url=REDIS_URL)


@pytest.fixture
def worker_process(redis_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(
        os.environ,
        LOOKALIKE_REDIS_URL=REDIS_URL,
        LOOKALIKE_DATA_DIR=str(redis_settings.data_dir),
        LOOKALIKE_MODEL_CACHE=str(redis_settings.model_dir),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.main",
            "worker",
            "-Q",
            "ingest,query",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=REPO,
        env=env,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_worker_process_embeds_and_upserts_through_redis(
    redis_settings: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    photos = labelled_images(per_category=2, categories=("animals", "vehicles"))
    blobs = BlobStore(redis_settings.image_dir)
    items = []
    for i, (category, path) in enumerate(photos):
        data = path.read_bytes()
        blobs.put(sha256_hex(data), data)
        items.append(
            {"id": f"p-{i}", "image_sha256": sha256_hex(data), "metadata": {"category": category}}
        )
    bad = b"GIF89a but truncated"
    blobs.put(sha256_hex(bad), bad)
    items.append({"id": "broken", "image_sha256": sha256_hex(bad)})

    tasks = TaskClient(redis_settings)
    first = tasks.result(tasks.send(INDEX_ITEMS, items[:3], meta={})).get(timeout=180)
    second = tasks.result(tasks.send(INDEX_ITEMS, items[2:], meta={})).get(timeout=180)
    assert first == {"indexed": ["p-0", "p-1", "p-2"], "failed": []}
    assert second["indexed"] == ["p-2", "p-3"]
    assert [f["id"] for f in second["failed"]] == ["broken"]

    import base64

    query = tasks.result(
        tasks.send(EMBED_QUERY, base64.b64encode(photos[3][1].read_bytes()).decode())
    ).get(timeout=120)
    assert len(query["vector"]) == redis_settings.vector_size() == 1472

    worker_process.send_signal(signal.SIGTERM)  # warm shutdown: finish, flush, release the shard
    assert worker_process.wait(timeout=60) == 0

    store = open_store(redis_settings)
    try:
        # p-2 was indexed twice (like a redelivered task) and is stored once.
        assert store.count() == 4
        stored = store.retrieve([point_id("p-3")], with_vectors=True)[0]
        assert stored.payload["metadata"] == {"category": "vehicles"}
        hits = store.search(np.asarray(query["vector"], dtype=np.float32), limit=1)
        assert hits[0].point_id == point_id("p-3")
    finally:
        store.close()
