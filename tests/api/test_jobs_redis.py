"""The jobs view with Redis as broker and result backend (a real Redis, database 11): every
API process sees the same history, capped per tenant. No worker runs, so tasks stay queued."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api import create_app
from lookalike.settings import Settings
from support import labelled_images

REDIS_URL = os.environ.get("LOOKALIKE_TEST_JOBS_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def clean_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis at {REDIS_URL}: run scripts/test.sh, which starts one")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_jobs_are_shared_by_api_processes_and_capped(tmp_path: Path, clean_redis) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path, redis_url=REDIS_URL, qdrant_url=":memory:", jobs_history=3
    )
    first, second = create_app(settings).test_client(), create_app(settings).test_client()
    photo = labelled_images(per_category=1, categories=("food",))[0][1].read_bytes()
    task_ids = []
    for n in range(4):
        form = {"id": f"item-{n}", "job": "nightly", "image": (io.BytesIO(photo), "p.png")}
        resp = first.post("/v1/items", data=form, content_type="multipart/form-data")
        assert resp.status_code == 202, resp.get_json()
        task_ids.append(resp.get_json()["task_id"])
    other = {"id": "x", "image": (io.BytesIO(photo), "p.png")}
    first.post("/v1/items", data=other, headers={"X-Tenant": "acme"})

    body = second.get("/v1/jobs").get_json()

    assert [t["task_id"] for t in body["tasks"]] == task_ids[::-1][:3]
    assert {t["status"] for t in body["tasks"]} == {"queued"}
    assert [t["items"] for t in body["tasks"]] == [["item-3"], ["item-2"], ["item-1"]]
    (job,) = body["jobs"]
    assert job["job"] == "nightly" and job["tasks"] == job["queued"] == 3 and not job["done"]
    assert second.get(f"/v1/tasks/{task_ids[0]}").get_json()["status"] == "queued"
    acme = second.get("/v1/jobs", headers={"X-Tenant": "acme"}).get_json()
    assert acme["summary"]["tasks"] == 1
