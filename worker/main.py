"""Entry point for `celery -A worker.main worker`: builds the app from the environment."""

import logging
from typing import Any

from celery import signals

from lookalike.settings import Settings
from lookalike.topology import worker_topology_warning
from worker.celery_app import create_celery

settings = Settings.from_env()
app = create_celery(settings)


@signals.worker_ready.connect(weak=False)
def _say_if_the_layout_only_works_alone(**_: Any) -> None:
    warning = worker_topology_warning(settings)
    if warning is not None:
        logging.getLogger("worker").warning(warning)
