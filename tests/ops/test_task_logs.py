"""Each task's result (a batch's lists of item ids) is logged at DEBUG, not INFO."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.app import trace

from lookalike.logs import configure_logging
from lookalike.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _celery_success_line() -> None:
    # What Celery's tracer logs when a task returns (celery/app/trace.py).
    result = {"indexed": [f"sku-{i}" for i in range(32)], "failed": []}
    trace.info(trace.LOG_SUCCESS, {"id": "t-1", "name": "worker.index_items",
                                   "return_value": result, "runtime": 0.8, "args": "",
                                   "kwargs": ""})  # fmt: skip


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_task_results_only_at_debug(
    level: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging(Settings(data_dir=tmp_path), level)
    _celery_success_line()
    logging.getLogger("celery.app.trace").warning("a real warning stays")
    err = capsys.readouterr().err
    assert "a real warning stays" in err
    if level == "INFO":
        assert "succeeded in" not in err and "sku-31" not in err
    else:
        assert "DEBUG celery.app.trace" in err and "sku-31" in err
