"""The worker's tasks and pipeline, on the real model and a real qdrant-edge shard."""

from __future__ import annotations

import numpy as np
import pytest
from celery.worker import WorkController

from launcher.embedded import EmbeddedThreadPool
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.schema import point_id
from lookalike.settings import Settings
from lookalike.tasks import QUEUES, TASK_QUEUES
from support import labelled_images
from worker import pipeline
from worker.celery_app import create_celery, runtime_of


def test_every_task_is_routed_to_a_declared_queue(settings: Settings) -> None:
    app = create_celery(settings)
    ours = {name: task for name, task in app.tasks.items() if name.startswith("worker.")}
    assert set(ours) == set(TASK_QUEUES)
    declared = {q.name for q in app.conf.task_queues}
    assert declared == set(QUEUES)
    routes = app.conf.task_routes
    for name, task in ours.items():
        assert routes[name]["queue"] in declared, f"{name} is routed to an undeclared queue"
        assert task.acks_late


@pytest.mark.parametrize(
    ("pool", "concurrency", "expected"),
    [("threads", 3, 3), ("solo", 1, 1), ("prefork", 4, 1), (EmbeddedThreadPool, 2, 2)],
)
def test_a_worker_counts_the_threads_that_run_its_tasks(
    settings: Settings, pool: object, concurrency: int, expected: int
) -> None:
    # Each of them gets a model interpreter of its own (LOOKALIKE_INFERENCE_INSTANCES=0).
    app = create_celery(settings)
    WorkController(
        app=app,
        hostname="count@localhost",
        pool_cls=pool,
        concurrency=concurrency,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    assert runtime_of(app).task_threads == expected


@pytest.fixture
def runtime(settings: Settings):  # type: ignore[no-untyped-def]
    rt = runtime_of(create_celery(settings))
    yield rt
    rt.close()


def _put(blobs: BlobStore, data: bytes) -> str:
    sha = sha256_hex(data)
    blobs.put(sha, data)
    return sha


def test_bad_images_fail_alone_and_batch_mates_are_indexed(runtime) -> None:  # type: ignore[no-untyped-def]
    photos = labelled_images(per_category=1)[:3]
    good = [
        {
            "id": f"good-{i}",
            "image_sha256": _put(runtime.blobs, p.read_bytes()),
            "metadata": {"category": c},
        }
        for i, (c, p) in enumerate(photos)
    ]
    truncated = photos[0][1].read_bytes()[:400]
    bad = [
        {"id": "truncated", "image_sha256": _put(runtime.blobs, truncated)},
        {"id": "text", "image_sha256": _put(runtime.blobs, b"this is not an image at all")},
        {"id": "missing", "image_sha256": "0" * 64},
        {"id": "bad id!", "image_sha256": good[0]["image_sha256"]},
    ]
    report = pipeline.index_items(
        runtime, [bad[0], good[0], bad[1], good[1], bad[2], good[2], bad[3]]
    )

    assert sorted(report.indexed) == ["good-0", "good-1", "good-2"]
    codes = {f["id"]: f["code"] for f in report.failed}
    assert codes == {
        "truncated": "corrupt_image",
        "text": "not_an_image",
        "missing": "image_missing",
        "bad id!": "invalid_id",
    }
    assert runtime.store.count() == 3


def test_reindexing_the_same_items_overwrites_instead_of_duplicating(runtime) -> None:  # type: ignore[no-untyped-def]
    ((category, path),) = labelled_images(per_category=1)[:1]
    item = {
        "id": "sku-1",
        "tenant": "shop-a",
        "image_sha256": _put(runtime.blobs, path.read_bytes()),
        "metadata": {"category": category, "price": 9.5},
    }
    first = pipeline.index_items(runtime, [item])
    second = pipeline.index_items(runtime, [item])  # a redelivered task
    assert first.indexed == second.indexed == ["sku-1"]
    assert runtime.store.count() == 1

    (stored,) = runtime.store.retrieve([point_id("sku-1", "shop-a")], with_vectors=True)
    payload = stored.payload
    assert payload["item_id"] == "sku-1" and payload["tenant"] == "shop-a"
    assert payload["metadata"] == {"category": category, "price": 9.5}
    assert payload["image_sha256"] == item["image_sha256"]
    assert payload["model"] == "efficientnet-lite0"
    # The default embedding: the pooled head and the pooled stage 6 (docs/quality.md).
    assert payload["model_version"].startswith("efficientnet-lite0:")
    assert payload["model_version"].endswith(":resize:multiscale")
    assert payload["ingested_at"]
    assert stored.vector is not None and stored.vector.shape == (1472,)
    assert np.linalg.norm(stored.vector) == pytest.approx(1.0, abs=1e-4)
