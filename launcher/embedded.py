"""The embedded default: API and a real Celery worker in one process, nothing else to run."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from celery.concurrency.thread import TaskPool
from celery.worker import WorkController
from flask import Flask

from api import create_app
from lookalike.settings import Settings
from lookalike.store import open_store
from lookalike.task_queues import QUEUES
from worker.celery_app import create_celery

log = logging.getLogger(__name__)


class EmbeddedThreadPool(TaskPool):
    """The threads pool, minus Celery's guard against waiting on results: in the embedded
    default the API's request threads live in the worker's process and wait for query
    embeddings. The tasks themselves never wait on other tasks."""

    task_join_will_block = False


@dataclass
class EmbeddedService:
    app: Flask
    worker: WorkController
    thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.stop(in_sighandler=False, exitcode=0)
        self.thread.join(timeout)
        self.worker.app.lookalike.close()


def start_embedded(settings: Settings) -> EmbeddedService:
    """Open the shard once, give it to both API and worker, start the worker thread."""
    if not settings.embedded_broker:
        raise ValueError("the embedded default runs only without LOOKALIKE_REDIS_URL")
    store = open_store(settings)
    celery_app = create_celery(settings, store=store)
    # The threads pool runs each task with the process's default app; make it this one.
    celery_app.set_default()
    worker = WorkController(
        app=celery_app,
        hostname="embedded@localhost",
        pool_cls=EmbeddedThreadPool,
        concurrency=max(1, settings.embedded_worker_threads),
        queues=list(QUEUES),
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="embedded-worker", daemon=True)
    thread.start()
    app = create_app(settings, store=store)
    app.extensions["lookalike.store"].open_soon()
    log.info("embedded worker started (queues: %s)", ", ".join(QUEUES))
    return EmbeddedService(app, worker, thread)
