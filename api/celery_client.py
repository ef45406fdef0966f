"""The API's Celery client: it sends tasks by name and never imports the worker code."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from celery import Celery
from flask import Flask

from lookalike.logs import TASK_HEADER, current_request_id
from lookalike.settings import Settings
from lookalike.task_queues import QUEUES, TASK_QUEUES, celery_config

_SUBMITTED_PREFIX = "lookalike-submitted-"
# How long /readyz trusts its last count of the workers on each queue.
CONSUMERS_TTL_S = 5.0


class TaskClient:
    def __init__(self, settings: Settings) -> None:
        self.celery = Celery("lookalike-api", set_as_current=False)
        self.celery.conf.update(
            celery_config(
                settings.redis_url,
                visibility_timeout_s=settings.broker_visibility_timeout_s,
                max_retries=settings.task_max_retries,
            )
        )
        self.history = TaskHistory(settings.redis_url, settings.jobs_history)
        self._consumers: tuple[float, dict[str, int]] | None = None
        self._consumers_lock = threading.Lock()

    def send(self, name: str, *args: Any, meta: dict[str, Any] | None = None) -> str:
        # The request id travels in the message headers, so the worker logs it too.
        request_id = current_request_id()
        headers = {TASK_HEADER: request_id} if request_id else None
        result = self.celery.send_task(
            name, args=list(args), queue=TASK_QUEUES[name], headers=headers
        )
        if meta is not None:
            # Remember the submission, so a queued task is told apart from an unknown id
            # (Celery reports both as PENDING).
            self.celery.backend.set(_SUBMITTED_PREFIX + result.id, json.dumps(meta))
            if "tenant" in meta:
                self.history.add(meta["tenant"], {"task_id": result.id, **meta})
        return str(result.id)

    def submitted(self, task_id: str) -> dict[str, Any] | None:
        raw = self.celery.backend.get(_SUBMITTED_PREFIX + task_id)
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    def submitted_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        """:meth:`submitted` of each task, read in one round trip."""
        keys = [_SUBMITTED_PREFIX + task_id for task_id in task_ids]
        values = self._mget(keys)
        return [None if raw is None else json.loads(raw) for raw in values]

    def _mget(self, keys: list[str] | list[bytes]) -> list[Any]:
        """The backend's values of ``keys``, in order (None where missing)."""
        if not keys:
            return []
        raw = self.celery.backend.mget(keys)
        # The Redis backend answers a list, the in-memory cache a dict keyed by key.
        return [raw.get(k) for k in keys] if isinstance(raw, dict) else list(raw)

    def result(self, task_id: str) -> Any:
        return self.celery.AsyncResult(task_id)

    def states(self, task_ids: list[str]) -> list[tuple[str, Any]]:
        """(Celery state, result) of each task, read in one round trip."""
        backend = self.celery.backend
        values = self._mget([backend.get_key_for_task(task_id) for task_id in task_ids])
        states: list[tuple[str, Any]] = []
        for value in values:
            if value is None:
                states.append(("PENDING", None))
                continue
            meta = backend.decode_result(value)
            states.append((meta["status"], meta.get("result")))
        return states

    def ping_broker(self, timeout: float = 2.0) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    def consumers(self, timeout: float = 1.0) -> dict[str, int]:
        """How many worker processes consume each queue (Celery's remote control: every
        worker answers ``active_queues`` within ``timeout``). Cached for a few seconds, so a
        readiness probe every few seconds asks the workers at most that often."""
        with self._consumers_lock:
            now = time.monotonic()
            if self._consumers is not None and now - self._consumers[0] < CONSUMERS_TTL_S:
                return dict(self._consumers[1])
            replies = self.celery.control.inspect(timeout=timeout).active_queues() or {}
            counts = dict.fromkeys(QUEUES, 0)
            for queues in replies.values():
                for queue in queues or []:
                    counts[queue["name"]] = counts.get(queue["name"], 0) + 1
            self._consumers = (time.monotonic(), counts)
            return dict(counts)


def celery_init_app(app: Flask, settings: Settings) -> TaskClient:
    client = TaskClient(settings)
    app.extensions["tasks"] = client
    return client


class TaskHistory:
    """The latest submissions of each tenant, newest first, for the jobs view.

    In Redis (a capped list per tenant, expiring with the task results) when the API talks to
    Redis, so every API process sees the same; in memory in the embedded default, whose task
    results live in memory too.
    """

    def __init__(self, redis_url: str, size: int) -> None:
        self.size = size
        self._memory: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)

    def add(self, tenant: str, entry: dict[str, Any]) -> None:
        record = json.dumps({**entry, "submitted_at": time.time()})
        if self._redis is None:
            with self._lock:
                self._memory.setdefault(tenant, deque(maxlen=self.size)).appendleft(record)
            return
        key = _HISTORY_PREFIX + tenant
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, record)
            pipe.ltrim(key, 0, self.size - 1)
            pipe.expire(key, _HISTORY_TTL_S)
            pipe.execute()

    def recent(self, tenant: str, limit: int) -> list[dict[str, Any]]:
        if self._redis is None:
            with self._lock:
                records = list(self._memory.get(tenant, ()))[:limit]
        else:
            records = self._redis.lrange(_HISTORY_PREFIX + tenant, 0, limit - 1)
        return [json.loads(r) for r in records]


_HISTORY_PREFIX = "lookalike-history:"
# As long as Celery keeps the results the history points to (celery_config's result_expires).
_HISTORY_TTL_S = 7 * 24 * 3600
