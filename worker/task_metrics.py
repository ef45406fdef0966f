"""Prometheus metrics of a worker process: tasks, items and the embedding model.

Task outcomes come from Celery's signals; embedding time, images and batch fill from
`worker.pipeline`. A worker started with ``LOOKALIKE_WORKER_METRICS_PORT`` serves them on that
port; in the embedded default they are in the API's process and on its ``/metrics``.

One process per metrics endpoint: run workers with ``--pool threads`` or ``--pool solo`` (the
recommended pools, see docs/operations.md). A prefork pool's children would each count alone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from lookalike.settings import Settings
from lookalike.task_queues import TASK_QUEUES

log = logging.getLogger(__name__)

TASKS = Counter(
    "lookalike_tasks",
    "Celery tasks finished by this worker, by task, queue and outcome "
    "(succeeded, failed, retried).",
    ["task", "queue", "outcome"],
)
TASK_DURATION = Histogram(
    "lookalike_task_duration_seconds",
    "Run time of a task on this worker, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ITEMS = Counter(
    "lookalike_items",
    "Catalog items processed by ingest tasks, by outcome (indexed, failed).",
    ["outcome"],
)
EMBED_LATENCY = Histogram(
    "lookalike_embed_duration_seconds",
    "Wall time of one embedding call (framing and model inference of one task's images), by "
    "kind (ingest, query).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EMBED_IMAGES = Counter(
    "lookalike_embed_images",
    "Images embedded; rate() of it is the throughput in images/s, by kind.",
    ["kind"],
)
EMBED_RATE = Gauge(
    "lookalike_embed_images_per_second",
    "Throughput of the last embedding call, images/s, by kind.",
    ["kind"],
)
BATCH_FILL = Histogram(
    "lookalike_embed_batch_fill_ratio",
    "How full the model's batches were: images / (model calls x LOOKALIKE_EMBED_BATCH_SIZE). "
    "Low values on ingest mean the indexer sends too few items per task for the batch size.",
    ["kind"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
STAGE_CPU = Counter(
    "lookalike_worker_stage_cpu_seconds",
    "CPU time of the task thread in each stage of ingest tasks: read (the image store), "
    "decode (shrink-on-load), keypoints (the near-duplicate "
    "keypoints, with their own decode when shrink-on-load kept too few pixels), embed (framing "
    "and the model; inference threads beyond the task's own are not counted), upsert.",
    ["stage"],
)

_started: dict[str, float] = {}
_started_lock = threading.Lock()
_server_lock = threading.Lock()
_server_port: int | None = None


def observe_embedding(kind: str, images: int, seconds: float, batch_size: int) -> None:
    """One call of the embedder on `images` images that took `seconds`."""
    if images <= 0:
        return
    EMBED_LATENCY.labels(kind).observe(seconds)
    EMBED_IMAGES.labels(kind).inc(images)
    if seconds > 0:
        EMBED_RATE.labels(kind).set(images / seconds)
    calls = -(-images // batch_size)
    BATCH_FILL.labels(kind).observe(images / (calls * batch_size))


def observe_stage(stage: str, cpu_seconds: float) -> None:
    """``cpu_seconds`` of the task thread (time.thread_time) spent in an ingest stage."""
    STAGE_CPU.labels(stage).inc(max(0.0, cpu_seconds))


def observe_items(indexed: int, failed: int) -> None:
    if indexed:
        ITEMS.labels("indexed").inc(indexed)
    if failed:
        ITEMS.labels("failed").inc(failed)


def _task_labels(sender: Any) -> tuple[str, str]:
    name = str(getattr(sender, "name", None) or "unknown")
    return name, TASK_QUEUES.get(name, "unknown")


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        with _started_lock:
            _started[task_id] = time.perf_counter()


def _on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    with _started_lock:
        started = _started.pop(task_id or "", None)
    if started is not None:
        TASK_DURATION.labels(_task_labels(sender)[0]).observe(time.perf_counter() - started)


def _on_success(sender: Any = None, **_: Any) -> None:
    TASKS.labels(*_task_labels(sender), "succeeded").inc()


def _on_failure(sender: Any = None, **_: Any) -> None:
    TASKS.labels(*_task_labels(sender), "failed").inc()


def _on_retry(sender: Any = None, **_: Any) -> None:
    TASKS.labels(*_task_labels(sender), "retried").inc()


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    runtime = getattr(getattr(sender, "app", None), "lookalike", None)
    if runtime is not None:
        serve_metrics(runtime.settings)


def install_signal_handlers() -> None:
    """Count task outcomes in this process, and serve them when the worker starts with
    LOOKALIKE_WORKER_METRICS_PORT (idempotent: one connection per signal)."""
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="lookalike.metrics.srv")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="lookalike.metrics.pre")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="lookalike.metrics.post")
    signals.task_success.connect(_on_success, weak=False, dispatch_uid="lookalike.metrics.ok")
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid="lookalike.metrics.fail")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid="lookalike.metrics.retry")


def serve_metrics(settings: Settings) -> int | None:
    """Start the metrics HTTP server once per process when a port is configured."""
    global _server_port
    if not settings.worker_metrics_port:
        return None
    with _server_lock:
        if _server_port is None:
            start_http_server(settings.worker_metrics_port)
            _server_port = settings.worker_metrics_port
            log.info("worker metrics on :%d/metrics", _server_port)
        return _server_port
