"""Faults injected for real: a worker SIGKILLed mid-batch, Redis restarted mid-ingest, the
vector store unavailable for a while (and for good), the API process killed mid-ingest.

Every test runs a real Celery worker process against a redis-server of its own (append-only
file on, as deployed) and the embedded qdrant-edge shard, owned by the worker and checked
from here once the worker has stopped. Nothing may be lost and nothing duplicated: point ids
are derived from item ids, so "count == N and every id present" proves both.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability.faults import (
    RedisServer,
    start_api,
    start_worker,
    stop,
    wait_until,
)

from api import create_app
from api.celery_client import TaskClient
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.settings import Settings
from lookalike.store import open_store
from lookalike.task_queues import INDEX_ITEMS
from support import free_port, post_item

# Short enough that a killed worker's batch comes back within the test, far longer than a
# batch of 32 small images takes (the default, 3600 s, suits production's slowest batch).
VISIBILITY_TIMEOUT_S = 8
BATCH = 32


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """1200 real product photos (Fashion-MNIST, Debian's dataset-fashion-mnist) as PNG."""
    from indexer.quality.datasets import export_fashion_mnist

    root = export_fashion_mnist(tmp_path_factory.mktemp("fashion"), per_class=120)
    paths = sorted(root.rglob("*.png"))
    assert len(paths) == 1200
    return [(f"{p.parent.name}.{p.stem}", p.read_bytes()) for p in paths]


@pytest.fixture
def setup(
    tmp_path: Path, model_cache_dir: Path, redis_server: RedisServer
) -> Iterator[dict[str, Any]]:
    redis_server.flush()
    settings = Settings(
        data_dir=tmp_path / "data",
        model_cache=model_cache_dir,
        redis_url=redis_server.url,
        broker_visibility_timeout_s=VISIBILITY_TIMEOUT_S,
    )
    env = {
        "LOOKALIKE_REDIS_URL": settings.redis_url,
        "LOOKALIKE_DATA_DIR": str(settings.data_dir),
        "LOOKALIKE_MODEL_CACHE": str(settings.model_dir),
        "LOOKALIKE_BROKER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    }
    procs: list[subprocess.Popen[bytes]] = []
    yield {"settings": settings, "env": env, "procs": procs, "log": tmp_path / "processes.log"}
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def submit(settings: Settings, catalog: list[tuple[str, bytes]]) -> list[str]:
    """Store the images and queue them in batches, as POST /v1/batches does."""
    blobs = BlobStore(settings.image_dir)
    items = []
    for item_id, data in catalog:
        blobs.put(sha256_hex(data), data)
        items.append({"id": item_id, "tenant": "default", "image_sha256": sha256_hex(data)})
    tasks = TaskClient(settings)
    return [
        tasks.send(INDEX_ITEMS, items[i : i + BATCH], meta={"tenant": "default"})
        for i in range(0, len(items), BATCH)
    ]


def states(settings: Settings, task_ids: list[str]) -> list[str]:
    return [state for state, _ in TaskClient(settings).states(task_ids)]


def stored_ids(settings: Settings) -> tuple[int, set[str]]:
    """(point count, item ids) of the shard, read after its worker has stopped."""
    store = open_store(settings)
    try:
        store.ensure_collection(settings.vector_size())
        items = []
        cursor = None
        while True:
            page, cursor = store.scroll(limit=500, offset=cursor)
            items.extend(page)
            if cursor is None:
                break
        return store.count(), {i.payload["item_id"] for i in items}
    finally:
        store.close()


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    setup: dict[str, Any], catalog: list[tuple[str, bytes]]
) -> None:
    settings, env, log = setup["settings"], setup["env"], setup["log"]
    task_ids = submit(settings, catalog)
    first = start_worker(env, log)
    setup["procs"].append(first)

    def mid_batch() -> bool:
        now = states(settings, task_ids)
        return now.count("SUCCESS") >= 3 and "STARTED" in now

    wait_until(mid_batch, 300, "the worker to be busy with a batch after three done")
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = states(settings, task_ids)
    done_at_kill = at_kill.count("SUCCESS")
    assert done_at_kill < len(task_ids), "the kill came too late to test anything"
    assert "STARTED" in at_kill  # a batch was in hand, unacknowledged

    second = start_worker(env, log)
    setup["procs"].append(second)
    wait_until(
        lambda: states(settings, task_ids).count("SUCCESS") == len(task_ids),
        300,
        "every batch to succeed after the restart",
    )
    assert stop(second) == 0

    count, ids = stored_ids(settings)
    assert count == len(catalog)
    assert ids == {item_id for item_id, _ in catalog}


def test_redis_restarted_mid_ingest_loses_nothing(
    setup: dict[str, Any], catalog: list[tuple[str, bytes]], redis_server: RedisServer
) -> None:
    settings, env, log = setup["settings"], setup["env"], setup["log"]
    part = catalog[:384]
    task_ids = submit(settings, part)
    worker = start_worker(env, log)
    setup["procs"].append(worker)
    wait_until(lambda: states(settings, task_ids).count("SUCCESS") >= 2, 300, "two batches done")
    redis_server.stop()
    assert worker.poll() is None
    redis_server.start()
    # The worker reconnects by itself; anything it had in hand comes back and is redone.
    later = submit(settings, catalog[384:448])  # and new work is accepted again
    every = task_ids + later
    wait_until(
        lambda: states(settings, every).count("SUCCESS") == len(every),
        300,
        "every batch to succeed after Redis came back",
    )
    assert worker.poll() is None, "the worker died with Redis"
    assert stop(worker) == 0

    count, ids = stored_ids(settings)
    assert count == 448
    assert ids == {item_id for item_id, _ in catalog[:448]}


def test_an_unavailable_store_is_retried_then_a_permanent_outage_is_reported(
    setup: dict[str, Any], catalog: list[tuple[str, bytes]]
) -> None:
    """The embedded shard held by another process is the store being unavailable: a real,
    injectable fault (a Qdrant server down gives the same StoreUnavailable)."""
    settings, env, log = setup["settings"], setup["env"], setup["log"]
    held = open_store(settings)
    held.ensure_collection(settings.vector_size())  # this process now owns the shard
    client = create_app(settings, store=held).test_client()
    worker = start_worker({**env, "LOOKALIKE_TASK_MAX_RETRIES": "3"}, log)
    setup["procs"].append(worker)

    def status(task_id: str) -> dict[str, Any]:
        resp = client.get(f"/v1/tasks/{task_id}")
        assert resp.status_code == 200, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    (doomed_id, doomed), (saved_id, saved) = catalog[0], catalog[1]
    doomed_task = post_item(client, doomed_id, doomed).get_json()["task_id"]
    # Retried with backoff, then failed for good: visible as such, not dropped.
    failed = wait_until(
        lambda: (s := status(doomed_task))["status"] == "failed" and s, 240, "the give-up"
    )
    assert failed["error"]["code"] == "task_failed"
    assert failed["error"]["message"] == "StoreUnavailable"
    jobs = client.get("/v1/jobs").get_json()
    assert jobs["summary"]["failed"] == 1

    # The item sent next must still be retrying when the outage ends: with 3 retries and
    # the backoff's jitter (a delay drawn from 0 to 2, 4, 8 s) it could use them all up in
    # well under a second, and fail before anyone saw it retry. A worker with the default
    # retries (10) gives it minutes.
    assert stop(worker) == 0
    worker = start_worker(env, log)
    setup["procs"].append(worker)
    saved_task = post_item(client, saved_id, saved).get_json()["task_id"]
    wait_until(lambda: status(saved_task)["status"] == "retrying", 120, "a retry")
    held.close()  # the outage ends
    done = wait_until(
        lambda: (s := status(saved_task))["status"] == "succeeded" and s, 120, "success"
    )
    assert done["indexed"] == [saved_id]
    assert worker.poll() is None
    assert stop(worker) == 0

    count, ids = stored_ids(settings)
    assert (count, ids) == (1, {saved_id})  # no partial point of the failed item


def test_task_status_survives_an_api_restart(
    setup: dict[str, Any], catalog: list[tuple[str, bytes]]
) -> None:
    """API and worker in processes of their own; the API is SIGKILLed right after accepting
    uploads, and the new one answers for the tasks the old one issued."""
    settings, env, log = setup["settings"], setup["env"], setup["log"]
    port = free_port()
    api = start_api(env, port, log)
    setup["procs"].append(api)
    base = f"http://127.0.0.1:{port}"
    task_ids = []
    for item_id, data in catalog[:40]:
        resp = httpx.post(
            f"{base}/v1/items", data={"id": item_id}, files={"image": ("a.png", data)}, timeout=30
        )
        assert resp.status_code == 202, resp.text
        task_ids.append(resp.json()["task_id"])
    api.send_signal(signal.SIGKILL)
    api.wait()
    worker = start_worker(env, log)
    setup["procs"].append(worker)

    again = start_api(env, port, log)
    setup["procs"].append(again)
    first = httpx.get(f"{base}/v1/tasks/{task_ids[-1]}", timeout=30).json()
    assert first["status"] in ("queued", "running", "succeeded")

    def all_done() -> bool:
        bodies = [httpx.get(f"{base}/v1/tasks/{t}", timeout=30).json() for t in task_ids]
        return all(b["status"] == "succeeded" for b in bodies)

    wait_until(all_done, 300, "every task to succeed")
    unknown = httpx.get(f"{base}/v1/tasks/{'0' * 32}", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "task_not_found"
    stop(again)  # waitress ends on SIGTERM's default action; nothing to flush in the API
    assert stop(worker) == 0
    count, ids = stored_ids(settings)
    assert count == 40 and ids == {item_id for item_id, _ in catalog[:40]}
