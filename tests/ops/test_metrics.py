"""/metrics after real traffic through the embedded default (API + in-process Celery worker +
qdrant-edge): the series an operator's dashboards and alerts read, with values that moved."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.celery_client import TaskClient
from lookalike.settings import Settings
from lookalike.task_queues import INDEX_ITEMS
from support import labelled_images, post_item, wait_for_task

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples) -> Callable[..., float]:
    """Counters are per process and other tests share it: compare with a scrape taken before."""

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    return moved


def test_metrics_show_the_named_series_after_real_traffic(
    client: Any, embedded_settings: Settings
) -> None:
    before = scrape(client)
    photos = labelled_images(per_category=1, categories=("animals", "food", "vehicles"))
    task_ids = []
    for i, (_, path) in enumerate(photos):
        resp = post_item(client, f"m-{i}", path.read_bytes())
        assert resp.status_code == 202
        task_ids.append(resp.get_json()["task_id"])
    for task_id in task_ids:
        assert wait_for_task(client, task_id)["status"] == "succeeded"
    assert post_item(client, "m-bad", b"not an image").status_code == 422
    assert client.get("/v1/items/no-such-item").status_code == 404
    assert client.get("/v1/items/m-0/similar?limit=2").status_code == 200
    search = client.post(
        "/v1/search",
        data={"image": (io.BytesIO(photos[1][1].read_bytes()), "q.png")},
        content_type="multipart/form-data",
    )
    assert search.status_code == 200
    # A task that fails outright (its payload is not a list of items).
    tasks: TaskClient = client.application.extensions["tasks"]
    broken = tasks.result(tasks.send(INDEX_ITEMS, None))
    broken.get(timeout=60, propagate=False)
    assert broken.state == "FAILURE"

    after = scrape(client)
    moved = delta(before, after)
    # Requests by route template (never the raw path) and status.
    assert (
        moved("lookalike_http_requests_total", method="POST", route="/v1/items", status="202") == 3
    )
    assert (
        moved("lookalike_http_requests_total", method="POST", route="/v1/items", status="422") == 1
    )
    assert (
        moved(
            "lookalike_http_requests_total",
            method="GET",
            route="/v1/items/<item_id>",
            status="404",
        )
        == 1
    )
    assert not any("no-such-item" in dict(labels).get("route", "") for _, labels in after)
    assert (
        moved("lookalike_http_request_duration_seconds_count", method="POST", route="/v1/search")
        == 1
    )
    assert (
        moved(
            "lookalike_http_request_duration_seconds_bucket",
            method="POST",
            route="/v1/search",
            le="+Inf",
        )
        == 1
    )
    # Queue depth per queue: everything was consumed.
    assert ("lookalike_queue_depth", frozenset({("queue", "ingest")})) in after
    assert value(after, "lookalike_queue_depth", queue="ingest") == 0
    assert value(after, "lookalike_queue_depth", queue="query") == 0
    assert value(after, "lookalike_broker_up") == 1
    # Task outcomes, from the worker's signals.
    ingest = {"task": "worker.index_items", "queue": "ingest"}
    assert moved("lookalike_tasks_total", **ingest, outcome="succeeded") == 3
    assert moved("lookalike_tasks_total", **ingest, outcome="failed") == 1
    assert (
        moved(
            "lookalike_tasks_total", task="worker.embed_query", queue="query", outcome="succeeded"
        )
        == 1
    )
    assert moved("lookalike_task_duration_seconds_count", task="worker.index_items") == 4
    assert moved("lookalike_items_total", outcome="indexed") == 3
    # Embedding: latency, images (rate() gives images/s), last throughput, batch fill.
    assert moved("lookalike_embed_duration_seconds_count", kind="ingest") == 3
    assert moved("lookalike_embed_duration_seconds_count", kind="query") == 1
    assert moved("lookalike_embed_images_total", kind="ingest") == 3
    assert value(after, "lookalike_embed_images_per_second", kind="ingest") > 0
    assert moved("lookalike_embed_batch_fill_ratio_count", kind="ingest") == 3
    # One image per task against the model's batch size: each call was 1/batch full.
    batch = embedded_settings.embed_batch_size
    assert batch > 1
    assert moved("lookalike_embed_batch_fill_ratio_sum", kind="ingest") == pytest.approx(3 / batch)
    # Vectors in the collection.
    assert value(after, "lookalike_collection_vectors", collection="catalog") == 3
    assert value(after, "lookalike_vector_store_up") == 1


def test_request_id_is_echoed_or_made(client: Any) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "lb-1234-abcd"})
    assert given.headers["X-Request-ID"] == "lb-1234-abcd"
    made = client.get("/healthz")
    assert len(made.headers["X-Request-ID"]) == 32
    # A header that could forge log lines is replaced, not echoed.
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" level=ERROR'})
    assert forged.headers["X-Request-ID"] != 'x" level=ERROR'


@pytest.fixture
def unreachable_qdrant(tmp_path: Path, model_cache_dir: Path) -> Iterator[Any]:
    """An embedded service whose vector store is a Qdrant server that is not there."""
    import socket

    from launcher.embedded import start_embedded

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "data",
        model_cache=model_cache_dir,
        qdrant_url=f"http://127.0.0.1:{port}",
    )
    service = start_embedded(settings)
    yield service
    service.stop()


def test_a_store_outage_counts_retries_and_store_down(unreachable_qdrant: Any) -> None:
    client = unreachable_qdrant.app.test_client()
    before = scrape(client)
    assert value(before, "lookalike_vector_store_up") == 0
    assert ("lookalike_collection_vectors", frozenset({("collection", "catalog")})) not in before
    (_, photo), *_ = labelled_images(per_category=1, categories=("food",))
    assert post_item(client, "r-1", photo.read_bytes()).status_code == 202
    retried = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not retried:
        time.sleep(0.2)
        retried = delta(before, scrape(client))(
            "lookalike_tasks_total", task="worker.index_items", queue="ingest", outcome="retried"
        )
    assert retried >= 1


def test_metrics_need_no_api_key_when_the_api_does(settings: Settings) -> None:
    from api import create_app

    app = create_app(settings.replace(api_keys_write="write-key-2026"))
    client = app.test_client()
    assert client.get("/v1/items").status_code == 401
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert "lookalike_http_requests_total" in resp.get_data(as_text=True)
    # Prometheus' exposition type, its charset once.
    content_type = resp.headers["Content-Type"]
    assert content_type.startswith("text/plain; version=") and content_type.count("charset") == 1
    samples = scrape(client)
    assert value(samples, "lookalike_collection_vectors", collection="catalog") == 0
    assert value(samples, "lookalike_queue_depth", queue="query") == 0
