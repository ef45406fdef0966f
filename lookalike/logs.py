"""Logging for every process: plain text for a terminal, or one JSON object per line.

A request id follows an item from the API through the queue to the worker: the API takes it
from the ``X-Request-ID`` header (or makes one), sends it as a Celery message header, and the
worker sets it again around the task, so ``grep <request id>`` over the API's and the
workers' logs shows everything that happened to one upload.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from lookalike.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries it (custom headers reach `task.request`).
TASK_HEADER = "request_id"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lookalike_request_id", default=None
)
# What a client may send: ids from load balancers and tracing proxies (UUIDs, hex, base64-ish),
# nothing that could forge a log line.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

# LogRecord's own attributes; anything else on a record was passed with `extra=` and is kept.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "task_id",
    "task_name",
}


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(raw: str | None) -> str:
    """The client's id when it is a sane one, else a fresh one."""
    if raw and _VALID_REQUEST_ID.fullmatch(raw):
        return raw
    return new_request_id()


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(request_id)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


class ContextFilter(logging.Filter):
    """Stamps each record with the request id and, inside a Celery task, the task's id/name."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        task_id = task_name = None
        celery_state = sys.modules.get("celery._state")
        if celery_state is not None:
            task = celery_state.get_current_task()
            if task is not None and task.request.id is not None:
                task_id, task_name = task.request.id, task.name
        record.task_id = task_id
        record.task_name = task_name
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, task ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "task_id", "task_name"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class TaskResultsAtDebug(logging.Filter):
    """Celery's "Task ... succeeded in 0.8s: <the task's whole result>" line, at DEBUG
    instead of INFO: a batch's result lists every item id, so at INFO a demo's terminal or a
    production log fills with them (issue #22). Per-item failures are still logged at WARNING
    (worker/pipeline.py) and every result stays readable in GET /v1/tasks/{id}."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or "succeeded in" not in str(record.msg):
            return True
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_TASK_RESULTS_FILTER = TaskResultsAtDebug()


def configure_logging(settings: Settings, level: int | str | None = None) -> None:
    """Replace the root logger's handlers with one stderr handler in the configured format.

    Called once per process: by `lookalike serve`, and by a Celery worker through the
    `setup_logging` signal (which keeps Celery from installing its own handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level is not None else settings.log_level.upper())
    # The filter of the logger Celery writes task outcomes to (added once per process).
    logging.getLogger("celery.app.trace").addFilter(_TASK_RESULTS_FILTER)
    # Python warnings become log records too (one format on stderr); native libraries'
    # own stderr lines (TFLite's "Created TensorFlow Lite XNNPACK delegate") cannot.
    logging.captureWarnings(True)


def _bind_task_request_id(task: Any = None, **_: Any) -> None:
    if task is not None:
        task.request.lookalike_log_token = bind_request_id(task.request.get(TASK_HEADER))


def _unbind_task_request_id(task: Any = None, **_: Any) -> None:
    token = getattr(getattr(task, "request", None), "lookalike_log_token", None)
    if token is not None:
        with contextlib.suppress(ValueError):  # bound in another context: nothing to undo
            unbind_request_id(token)


def _celery_setup_logging(loglevel: int | None = None, **_: Any) -> None:
    settings = Settings.from_env()
    # LOOKALIKE_LOG_LEVEL when it is set, else the worker's --loglevel.
    explicit = "LOOKALIKE_LOG_LEVEL" in os.environ
    configure_logging(settings, None if explicit or loglevel is None else loglevel)


def install_celery_hooks() -> None:
    """In a Celery worker: our log format instead of Celery's, and the request id of the
    message bound around each task. Idempotent."""
    from celery import signals

    signals.setup_logging.connect(
        _celery_setup_logging, weak=False, dispatch_uid="lookalike.logs.setup"
    )
    signals.task_prerun.connect(
        _bind_task_request_id, weak=False, dispatch_uid="lookalike.logs.bind"
    )
    signals.task_postrun.connect(
        _unbind_task_request_id, weak=False, dispatch_uid="lookalike.logs.unbind"
    )
