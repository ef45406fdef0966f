"""The worker's Celery application factory."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from lookalike.logs import install_celery_hooks
from lookalike.settings import Settings
from lookalike.store import VectorStore
from lookalike.tasks import QUEUES, celery_config
from worker import metrics
from worker.runtime import WorkerRuntime


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
    # Registers the tasks with every app, this one included.
    import worker.tasks  # noqa: F401

    def _close_runtime(sender: Any = None, **_: Any) -> None:
        # Flushes and releases the embedded shard, so the next owner can open it.
        if getattr(sender, "app", app) is app:
            runtime_of(app).close()

    # weak=False: the closure would otherwise be garbage-collected with this frame.
    signals.worker_shutdown.connect(_close_runtime, weak=False)
    signals.worker_process_shutdown.connect(_close_runtime, weak=False)
    return app


def runtime_of(app: Celery) -> WorkerRuntime:
    return app.lookalike
