"""A deployment's shape on one machine: the API (app factory, Redis broker) and a Celery worker
in its own process, started the way the compose file and the chart start it.

Checks what an operator relies on: the request id of an upload shows up in the worker's JSON
logs, the worker serves its own /metrics, and a bulk ingest on the `ingest` queue does not
hold back a search-by-photo on the `query` queue. The latter is asserted as an ordering, not
a timing: the search is answered while most of the ingest backlog is still waiting. The
latency ratio is measured in benchmarks/queue_isolation.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from api.celery_client import TaskClient
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.settings import Settings
from lookalike.task_queues import INDEX_ITEMS, INGEST_QUEUE
from support import REPO, free_port, labelled_images, post_item, wait_for_task

# A database of its own on the shared server (13 is tests/e2e/test_multiprocess.py's).
REDIS_URL = os.environ.get("LOOKALIKE_TEST_OPS_REDIS_URL", "redis://127.0.0.1:6379/7")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[dict[str, Any]]:
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: run scripts/test.sh, which starts one")
    data_dir = tmp_path_factory.mktemp("ops") / "data"
    port = free_port()
    log_path = data_dir.parent / "worker.log"
    # The worker keeps its vectors in qdrant-client's local mode: these tests look at queues,
    # logs and metrics, not at search results.
    env = dict(
        os.environ,
        LOOKALIKE_REDIS_URL=REDIS_URL,
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_MODEL_CACHE=str(model_cache_dir),
        LOOKALIKE_QDRANT_URL=":memory:",
        LOOKALIKE_LOG_FORMAT="json",
        LOOKALIKE_LOG_LEVEL="INFO",
        LOOKALIKE_WORKER_METRICS_PORT=str(port),
        LOOKALIKE_INFERENCE_THREADS="1",
    )
    command = [sys.executable, "-m", "celery", "-A", "worker.main", "worker"]
    # One worker on both queues, one task at a time: the worst case for a search waiting
    # behind ingest (the chart runs separate pools; see docs/operations.md).
    command += ["-Q", "ingest,query", "--pool", "threads", "--concurrency", "1"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stderr=log_file, stdout=subprocess.DEVNULL
        )
    settings = Settings(
        data_dir=data_dir, model_cache=model_cache_dir, redis_url=REDIS_URL, qdrant_url=":memory:"
    )
    app = create_app(settings)
    yield {"client": app.test_client(), "app": app, "port": port, "log": log_path, "proc": proc}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def search(client: Any, photo: Path) -> Any:
    return client.post(
        "/v1/search",
        data={"image": (io.BytesIO(photo.read_bytes()), "q.png")},
        content_type="multipart/form-data",
    )


def test_request_id_follows_an_upload_into_the_worker_logs(deployment: dict[str, Any]) -> None:
    client = deployment["client"]
    (_, photo), *_ = labelled_images(per_category=1, categories=("animals",))
    resp = post_item(client, "traced-1", photo.read_bytes(), **{"X-Request-ID": "trace-7f3a91"})
    assert resp.status_code == 202
    assert resp.headers["X-Request-ID"] == "trace-7f3a91"
    task_id = resp.get_json()["task_id"]
    assert wait_for_task(client, task_id, timeout=180)["status"] == "succeeded"

    lines = deployment["log"].read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Once logging is set up, everything is JSON but the TFLite runtime's native line. (Before
    # it, Celery may warn in plain text that it runs as root: tests do, containers do not.)
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    plain = [ln for ln in lines[first:] if not ln.startswith("{") and "TensorFlow Lite" not in ln]
    assert not plain, plain
    traced = [r for r in records if r.get("request_id") == "trace-7f3a91"]
    assert traced, "the worker logged nothing with the upload's request id"
    assert {r["task_id"] for r in traced} == {task_id}
    assert any(r["message"] == "indexed 1 items, 0 failed" for r in traced)
    assert all(r["task_name"] == INDEX_ITEMS for r in traced)


def test_worker_serves_its_metrics(deployment: dict[str, Any]) -> None:
    client = deployment["client"]
    (_, photo), *_ = labelled_images(per_category=1, categories=("food",))
    assert search(client, photo).status_code == 200
    text = httpx.get(f"http://127.0.0.1:{deployment['port']}/metrics", timeout=10).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def get(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    query = {"task": "worker.embed_query", "queue": "query", "outcome": "succeeded"}
    assert get("lookalike_tasks_total", **query) >= 1
    assert get("lookalike_embed_duration_seconds_count", kind="query") >= 1
    assert get("lookalike_embed_images_total", kind="query") >= 1
    # The API's own scrape reads the queues from Redis.
    api_text = client.get("/metrics").get_data(as_text=True)
    assert 'lookalike_queue_depth{queue="ingest"} 0.0' in api_text
    assert 'lookalike_queue_depth{queue="query"} 0.0' in api_text


def test_bulk_ingest_does_not_starve_search_by_photo(deployment: dict[str, Any]) -> None:
    client, app = deployment["client"], deployment["app"]
    photos = [p for _, p in labelled_images(per_category=2, categories=("animals", "plants"))]
    blobs = BlobStore(app.extensions["lookalike.settings"].image_dir)
    shas = []
    for path in photos:
        data = path.read_bytes()
        blobs.put(sha256_hex(data), data)
        shas.append(sha256_hex(data))
    tasks = TaskClient(app.extensions["lookalike.settings"])
    bulk_tasks, per_task = 30, 8
    for t in range(bulk_tasks):
        items = [
            {"id": f"bulk-{t}-{i}", "image_sha256": shas[i % len(shas)]} for i in range(per_task)
        ]
        tasks.send(INDEX_ITEMS, items)
    broker = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + 60
    while broker.llen(INGEST_QUEUE) >= bulk_tasks and time.monotonic() < deadline:
        time.sleep(0.05)  # until the worker is busy with the bulk
    assert broker.llen(INGEST_QUEUE) < bulk_tasks

    resp = search(client, photos[0])
    waiting = broker.llen(INGEST_QUEUE)
    assert resp.status_code == 200, resp.get_json()
    # The search waited for at most the task in hand and one more, never for the backlog.
    assert waiting >= bulk_tasks - 4, f"only {waiting} of {bulk_tasks} ingest tasks still queued"
