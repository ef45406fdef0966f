"""The worker's tasks and pipeline, on the real model and a real qdrant-edge shard."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from celery.worker import WorkController
from PIL import Image

from launcher.embedded import EmbeddedThreadPool
from lookalike.blobs import BlobStore
from lookalike.images import (
    DECODE_FIELD,
    DECODE_FULL,
    DECODE_SCALED,
    SCALED_DECODE_FACTOR,
    decode_image,
    decode_scaled,
    sha256_hex,
)
from lookalike.schema import KEYPOINTS_FIELD, RETIRED_FIELDS, point_id
from lookalike.settings import Settings
from lookalike.store import StoredItem, VectorStore
from lookalike.task_queues import QUEUES, TASK_QUEUES
from support import labelled_images
from worker import pipeline
from worker.celery_app import create_celery
from worker.resources import runtime_of


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


def _catalog_jpeg(path: Path, seed: int) -> bytes:
    """A tuxpaint photo as a catalog holds it: on white, 1600 px, with sensor noise."""
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    scale = 1600 / max(rgb.size)
    big = rgb.resize(
        (round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC
    )
    noise = np.random.default_rng(seed).normal(0, 3, (big.height, big.width, 3))
    noisy = Image.fromarray(np.clip(np.asarray(big) + noise, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    noisy.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_catalog_decoded_in_full_stays_so_until_a_reindex_rebuilds_it(runtime) -> None:  # type: ignore[no-untyped-def]
    """Shrink-on-load changes vectors slightly: a new catalog decodes scaled, one indexed
    before (its points do not say how they were decoded) keeps decoding in full, so its
    vectors stay comparable, until a reindex builds a version that decodes scaled."""
    photos = labelled_images(per_category=1)[:4]
    items = [
        {"id": f"sku-{i}", "image_sha256": _put(runtime.blobs, _catalog_jpeg(p, i))}
        for i, (_, p) in enumerate(photos)
    ]
    limit = runtime.settings.max_image_pixels
    embedder = runtime.embedder
    side = SCALED_DECODE_FACTOR * embedder.input_size

    def stored(item_id: str, store: VectorStore | None = None) -> StoredItem:
        (point,) = (store or runtime.store).retrieve([point_id(item_id)], with_vectors=True)
        return point

    def data(i: int) -> bytes:
        return runtime.blobs.get(items[i]["image_sha256"])

    # A new catalog: scaled, and the vector is that of the scaled decode.
    assert pipeline.index_items(runtime, items[:1]).indexed == ["sku-0"]
    first = stored("sku-0")
    assert first.payload[DECODE_FIELD] == DECODE_SCALED
    scaled = decode_scaled(data(0), max_pixels=limit, side=side)
    assert np.allclose(first.vector, embedder.embed([scaled])[0], atol=1e-4)
    full_vector = embedder.embed([decode_image(data(0), max_pixels=limit)])[0]
    assert not np.allclose(first.vector, full_vector, atol=1e-4)
    assert float(first.vector @ full_vector) > 0.95  # a small move, still the same photo

    assert first.payload[KEYPOINTS_FIELD] and not set(RETIRED_FIELDS) & set(first.payload)

    # The same catalog as an older worker left it: no decode field on its points, and the
    # colour signature of the old near-duplicate score.
    legacy = {k: v for k, v in first.payload.items() if k != DECODE_FIELD}
    legacy["color_signature"] = "AAAA"
    runtime.store.upsert([StoredItem(first.point_id, legacy, full_vector)])
    runtime.first_points.clear()  # a worker started after the upgrade
    assert pipeline.index_items(runtime, items[1:2]).indexed == ["sku-1"]
    second = stored("sku-1")
    assert second.payload[DECODE_FIELD] == DECODE_FULL
    full = embedder.embed([decode_image(data(1), max_pixels=limit)])[0]
    assert np.allclose(second.vector, full, atol=1e-4)

    # A reindex: the new version decodes scaled, both for items re-embedded into it and for
    # items ingested meanwhile (written to both versions, each decoded its own way).
    version = runtime.store.create_version(runtime.settings.model, runtime.settings.vector_size())
    runtime.store.set_aliases(next=version.name)
    target = runtime.store.version(version.name)
    assert pipeline.index_items(runtime, items[2:3]).indexed == ["sku-2"]
    assert stored("sku-2").payload[DECODE_FIELD] == DECODE_FULL
    assert stored("sku-2", target).payload[DECODE_FIELD] == DECODE_SCALED
    scaled = decode_scaled(data(2), max_pixels=limit, side=side)
    assert np.allclose(stored("sku-2", target).vector, embedder.embed([scaled])[0], atol=1e-4)
    ids = [point_id(f"sku-{i}") for i in range(2)]
    assert sorted(pipeline.reindex_items(runtime, version.name, ids)["indexed"]) == [
        "sku-0",
        "sku-1",
    ]
    for i in range(2):
        point = stored(f"sku-{i}", target)
        assert point.payload[DECODE_FIELD] == DECODE_SCALED
        # The reindexed point has its keypoints and leaves the retired fields behind.
        assert point.payload[KEYPOINTS_FIELD] and not set(RETIRED_FIELDS) & set(point.payload)
        scaled = decode_scaled(data(i), max_pixels=limit, side=side)
        assert np.allclose(point.vector, embedder.embed([scaled])[0], atol=1e-4)


def test_a_worker_with_other_model_settings_refuses_the_catalog_instead_of_mixing_vectors(
    runtime,  # type: ignore[no-untyped-def]
) -> None:
    """Settings that change the vectors but not their size (here flip averaging; also
    input size, pooling, a head) would otherwise embed new items and query photos into a
    catalog of other vectors, unnoticed: the worker refuses both, naming both versions."""
    from worker.resources import WorkerRuntime

    photos = labelled_images(per_category=1)[:3]
    items = [
        {"id": f"sku-{i}", "image_sha256": _put(runtime.blobs, _catalog_jpeg(p, i))}
        for i, (_, p) in enumerate(photos)
    ]
    assert pipeline.index_items(runtime, items[:1]).indexed == ["sku-0"]
    stored = runtime.embedder.version

    other = WorkerRuntime(runtime.settings.replace(tta_flip=True), store=runtime.store)
    assert other.embedder.version != stored
    report = pipeline.index_items(other, items[1:2])
    assert report.indexed == []
    assert [(f["id"], f["code"]) for f in report.failed] == [("sku-1", "model_mismatch")]
    assert stored in report.failed[0]["message"]
    answer = pipeline.embed_query(other, runtime.blobs.get(items[2]["image_sha256"]))
    assert answer["error"]["code"] == "model_mismatch"
    assert answer["error"]["status"] == 409
    assert runtime.store.count() == 1  # nothing of the other model was written

    # The catalog's own settings go on working.
    assert pipeline.index_items(runtime, items[1:3]).indexed == ["sku-1", "sku-2"]
    assert "vector" in pipeline.embed_query(runtime, runtime.blobs.get(items[2]["image_sha256"]))
