"""Celery tasks. Each takes small JSON payloads and is safe to run twice.

Queues are assigned in one place, `lookalike.task_queues.TASK_QUEUES` (the task_routes setting).
"""

from __future__ import annotations

import base64
from typing import Any

from celery import Task, shared_task

from lookalike.images import check_box
from lookalike.store import StoreUnavailable
from lookalike.task_queues import EMBED_QUERY, EXPLAIN, INDEX_ITEMS, REINDEX_ITEMS
from worker import pipeline
from worker.resources import runtime_of

# Only an unreachable vector store is transient; a bad image is recorded, not retried.
# (LOOKALIKE_TASK_MAX_RETRIES overrides max_retries through task_annotations.)
_RETRY_STORE_OUTAGES: dict[str, Any] = {
    "autoretry_for": (StoreUnavailable,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(bind=True, name=INDEX_ITEMS, acks_late=True, **_RETRY_STORE_OUTAGES)
def index_items(self: Task, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Embed and upsert a batch of items ({id, tenant, image_sha256, metadata})."""
    return pipeline.index_items(runtime_of(self.app), items).as_dict()


@shared_task(bind=True, name=REINDEX_ITEMS, acks_late=True, **_RETRY_STORE_OUTAGES)
def reindex_items(self: Task, target: str, point_ids: list[str]) -> dict[str, Any]:
    """Re-embed stored items into the catalog version ``target`` with that version's model."""
    return pipeline.reindex_items(runtime_of(self.app), target, point_ids)


@shared_task(bind=True, name=EMBED_QUERY, acks_late=True)
def embed_query(self: Task, image_b64: str, box: list[float] | None = None) -> dict[str, Any]:
    """Embed a query photo, or its region ``box`` (normalised x, y, width, height, checked
    by the API); the vector goes back to the API through the result backend."""
    region = check_box((box[0], box[1], box[2], box[3])) if box is not None else None
    return pipeline.embed_query(runtime_of(self.app), base64.b64decode(image_b64), region)


@shared_task(bind=True, name=EXPLAIN, acks_late=True)
def explain(
    self: Task, query: dict[str, str], result_sha: str, box: list[float] | None = None
) -> dict[str, Any]:
    """Why an item matches a query: ``query`` is ``{"image_sha256"}`` (a stored item) or
    ``{"image_b64"}`` (a photo, with an optional region ``box``); heatmaps and score split."""
    region = check_box((box[0], box[1], box[2], box[3])) if box is not None else None
    source: dict[str, Any] = dict(query)
    if "image_b64" in source:
        source = {"image": base64.b64decode(source.pop("image_b64"))}
    return pipeline.explain(runtime_of(self.app), source, result_sha, region)
