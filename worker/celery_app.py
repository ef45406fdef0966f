"""The worker's Celery application factory."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.concurrency import get_implementation
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from kombu import Queue

from lookalike.logs import install_celery_hooks
from lookalike.settings import Settings
from lookalike.store import VectorStore
from lookalike.task_queues import QUEUES, celery_config
from worker import task_metrics as metrics
from worker.resources import WorkerRuntime, runtime_of


def create_celery(settings: Settings | None = None, store: VectorStore | None = None) -> Celery:
    """Build the worker app; `store` lets the embedded default share one open shard with the API."""
    settings = settings or Settings.from_env()
    app = Celery("lookalike", set_as_current=False)
    app.conf.update(
        celery_config(
            settings.redis_url,
            visibility_timeout_s=settings.broker_visibility_timeout_s,
            max_retries=settings.task_max_retries,
        )
    )
    app.conf.task_queues = [Queue(name) for name in QUEUES]
    app.lookalike = WorkerRuntime(settings, store)
    # JSON logs with the request id of each task, and Prometheus metrics (docs/operations.md).
    install_celery_hooks()
    metrics.install_signal_handlers()
    # Registers the tasks (shared_task) with every app, this one included.
    import worker.tasks  # noqa: F401

    def _close_runtime(sender: Any = None, **_: Any) -> None:
        # Flushes and releases the embedded shard, so the next owner can open it.
        if getattr(sender, "app", app) is app:
            runtime_of(app).close()

    def _count_task_threads(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            runtime_of(app).task_threads = task_threads(sender.pool_cls, sender.concurrency)

    # weak=False: the closure would otherwise be garbage-collected with this frame.
    signals.worker_init.connect(_count_task_threads, weak=False)
    signals.worker_shutdown.connect(_close_runtime, weak=False)
    signals.worker_process_shutdown.connect(_close_runtime, weak=False)
    return app


def task_threads(pool: Any, concurrency: Any) -> int:
    """How many threads of one worker process run tasks: the concurrency of a threads pool,
    one for ``solo`` and for each child of ``prefork``."""
    pool_cls = get_implementation(pool)
    if isinstance(pool_cls, type) and issubclass(pool_cls, ThreadTaskPool):
        return concurrency if isinstance(concurrency, int) and concurrency > 0 else 1
    return 1
