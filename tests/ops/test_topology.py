"""Layouts that cannot work are refused at start with what to set; in API-only mode /readyz
says whether ingest and search by photo can be served, from the workers that answer on each
queue (a real Redis, a real `celery -A worker.main worker` process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api import create_app
from lookalike.settings import Settings
from lookalike.topology import api_topology_problem, worker_topology_warning
from support import REPO

# A database of its own on the shared server (7, 11 and 13 are the other Redis tests').
REDIS_URL = os.environ.get("LOOKALIKE_TEST_TOPOLOGY_REDIS_URL", "redis://127.0.0.1:6379/9")


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", "serve", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "LOOKALIKE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("qdrant_url", ["", ":memory:"])
def test_serve_refuses_separate_processes_without_a_shared_qdrant(
    tmp_path: Path, qdrant_url: str
) -> None:
    run = _serve({"LOOKALIKE_REDIS_URL": REDIS_URL, "LOOKALIKE_QDRANT_URL": qdrant_url}, tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "configuration error" in run.stderr and "LOOKALIKE_QDRANT_URL" in run.stderr
    assert "unset LOOKALIKE_REDIS_URL" in run.stderr  # the other way out, said too
    assert "serving on" not in run.stdout


def test_the_valid_layouts_pass_and_a_lone_worker_is_warned(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path)
    server = Settings(data_dir=tmp_path, redis_url=REDIS_URL, qdrant_url="http://qdrant:6333")
    lone = Settings(data_dir=tmp_path, redis_url=REDIS_URL)
    assert api_topology_problem(embedded) is None
    assert api_topology_problem(server) is None
    assert worker_topology_warning(server) is None
    assert "only a lone worker" in (worker_topology_warning(lone) or "")
    assert "receives nothing" in (worker_topology_warning(embedded) or "")


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[Any]:
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: run scripts/test.sh, which starts one")
    # qdrant-client's in-memory store stands in for the server (no Qdrant server here); the
    # readiness of the workers is what is tested.
    settings = Settings(data_dir=tmp_path / "data", redis_url=REDIS_URL, qdrant_url=":memory:")
    yield create_app(settings).test_client()


def _ready(client: Any, until: bool, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get("/readyz")
        body: dict[str, Any] = resp.get_json()
        if (resp.status_code == 200) == until or time.monotonic() > deadline:
            return {"status_code": resp.status_code, **body}
        time.sleep(1)


def test_readyz_needs_a_worker_on_the_query_queue_and_says_ingest_waits(
    api_only: Any, tmp_path: Path, model_cache_dir: Path
) -> None:
    alone = _ready(api_only, until=False, timeout=0)
    assert alone["status_code"] == 503, alone
    assert alone["checks"] == {"vector_store": "ok", "broker": "ok"}
    assert alone["serves"]["search_by_photo"].startswith("unavailable: no worker")
    assert alone["serves"]["ingest"].startswith("waiting: no worker")

    env = dict(
        os.environ,
        LOOKALIKE_REDIS_URL=REDIS_URL,
        LOOKALIKE_QDRANT_URL=":memory:",
        LOOKALIKE_DATA_DIR=str(tmp_path / "worker-data"),
        LOOKALIKE_MODEL_CACHE=str(model_cache_dir),
        LOOKALIKE_INFERENCE_THREADS="1",
    )
    command = [sys.executable, "-m", "celery", "-A", "worker.main", "worker", "-Q", "query"]
    command += ["--pool", "threads", "--concurrency", "1", "--without-heartbeat"]
    command += ["--without-gossip", "--without-mingle"]
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        ready = _ready(api_only, until=True, timeout=120)
        assert ready["status_code"] == 200, (ready, log_path.read_text()[-2000:])
        assert ready["serves"]["search_by_photo"] == "ok"
        # Only the query queue is consumed: ingest tasks would wait, and it says so.
        assert ready["serves"]["ingest"].startswith("waiting: no worker")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # The worker said at start that its catalog is its own (":memory:").
    assert "catalog is its own" in log_path.read_text()
    # Gone again: not ready once the cached count expires.
    gone = _ready(api_only, until=False, timeout=30)
    assert gone["status_code"] == 503, gone
