"""The API's Celery client: it sends tasks by name and never imports the worker code."""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from flask import Flask

from lookalike.settings import Settings
from lookalike.tasks import TASK_QUEUES, celery_config

_SUBMITTED_PREFIX = "lookalike-submitted-"


class TaskClient:
    def __init__(self, settings: Settings) -> None:
        self.celery = Celery("lookalike-api", set_as_current=False)
        self.celery.conf.update(celery_config(settings.redis_url))

    def send(self, name: str, *args: Any, meta: dict[str, Any] | None = None) -> str:
        result = self.celery.send_task(name, args=list(args), queue=TASK_QUEUES[name])
        if meta is not None:
            # Remember the submission, so a queued task is told apart from an unknown id
            # (Celery reports both as PENDING).
            self.celery.backend.set(_SUBMITTED_PREFIX + result.id, json.dumps(meta))
        return str(result.id)

    def submitted(self, task_id: str) -> dict[str, Any] | None:
        raw = self.celery.backend.get(_SUBMITTED_PREFIX + task_id)
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    def result(self, task_id: str) -> Any:
        return self.celery.AsyncResult(task_id)

    def ping_broker(self, timeout: float = 2.0) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)


def celery_init_app(app: Flask, settings: Settings) -> TaskClient:
    client = TaskClient(settings)
    app.extensions["tasks"] = client
    return client
