"""What the service can serve right now, for /readyz: the workers behind ingest and search by
photo (docs/operations.md, "Topologies")."""

from __future__ import annotations

from api.celery_client import TaskClient
from lookalike.settings import Settings
from lookalike.task_queues import INGEST_QUEUE, QUERY_QUEUE


def served_by_workers(tasks: TaskClient, settings: Settings, *, broker_ok: bool) -> dict[str, str]:
    """``{"ingest": ..., "search_by_photo": ...}``: "ok", or why not (for search by photo,
    a reason the API is not ready; for ingest, that tasks wait in the queue)."""
    if settings.embedded_broker:
        # The worker runs inside this process (launcher/embedded.py).
        return {"ingest": "ok", "search_by_photo": "ok"}
    if not broker_ok:
        return {"ingest": "unavailable: broker", "search_by_photo": "unavailable: broker"}
    try:
        counts = tasks.consumers()
    except Exception as exc:  # the remote-control round trip failed: say so, do not crash
        reason = f"unknown: workers did not answer ({type(exc).__name__})"
        return {"ingest": reason, "search_by_photo": reason}
    query, ingest = counts.get(QUERY_QUEUE, 0), counts.get(INGEST_QUEUE, 0)
    return {
        "ingest": "ok"
        if ingest
        else f"waiting: no worker consumes the {INGEST_QUEUE} queue; tasks are queued "
        "until one starts",
        "search_by_photo": "ok"
        if query
        else f"unavailable: no worker consumes the {QUERY_QUEUE} queue "
        f"(celery -A worker.main worker -Q {QUERY_QUEUE})",
    }
