"""Names of the Celery tasks and queues: the contract between the API, the indexer and the
workers. Senders use these names with ``send_task`` and never import the worker."""

from __future__ import annotations

INDEX_ITEMS = "worker.index_items"
EMBED_QUERY = "worker.embed_query"
# Re-embed stored items into another version of the catalog (a model upgrade, indexer reindex).
REINDEX_ITEMS = "worker.reindex_items"

# Bulk ingestion and interactive query-time embedding are separate queues, so a large ingest
# never starves a shopper's search-by-photo.
INGEST_QUEUE = "ingest"
QUERY_QUEUE = "query"
QUEUES = (INGEST_QUEUE, QUERY_QUEUE)

# Why a result matches a query: heatmaps and the score's split (a shopper waits on it).
EXPLAIN = "worker.explain"
TASK_QUEUES = {
    INDEX_ITEMS: INGEST_QUEUE,
    REINDEX_ITEMS: INGEST_QUEUE,
    EMBED_QUERY: QUERY_QUEUE,
    EXPLAIN: QUERY_QUEUE,
}


def celery_config(
    redis_url: str, *, visibility_timeout_s: int = 3600, max_retries: int = 10
) -> dict[str, object]:
    """Celery settings shared by every process; broker and results live in Redis, or in
    memory for the one-process embedded default."""
    broker = redis_url or "memory://localhost/"
    backend = redis_url or "cache+memory://"
    return {
        "broker_url": broker,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": INGEST_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "task_acks_late": True,
        # A task whose worker dies (OOM, SIGKILL) goes back to the queue instead of being lost.
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
        "result_expires": 7 * 24 * 3600,
        # Not the extended result, which stores a task's arguments with each state: a search's
        # photo (1 MB of base64) was JSON-encoded twice into the result and decoded at each
        # poll of the API; an ingest batch's items twice per batch. Nothing reads them.
        "result_extended": False,
        "broker_connection_retry_on_startup": True,
        # A result that cannot be stored because Redis is restarting is stored again (backoff
        # from 10 ms to 10 s, for about 3 minutes) instead of failing a task whose items were
        # indexed: a batch finished just as Redis went down was reported FAILURE for good.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 25,
        # Redis redelivers an unacknowledged message after this long; it must exceed the
        # longest task so a slow batch is not run twice while still running. In memory, a
        # new message wakes the worker (lookalike/membroker.py); the polling interval is a
        # fallback (kombu's default of 1 s would cap a missed wake-up at a task a second).
        # In memory a message is a Python object, so its body is not base64-encoded again for
        # the wire: a search's 1 MB photo was base64-encoded twice and decoded twice.
        "broker_transport_options": (
            {"visibility_timeout": visibility_timeout_s}
            if redis_url
            else {"polling_interval": 0.01, "body_encoding": None}
        ),
        "broker_transport": None if redis_url else "lookalike.membroker:Transport",
        # How often a task meeting an unavailable store is retried before it fails for good.
        "task_annotations": {
            name: {"max_retries": max_retries} for name in (INDEX_ITEMS, REINDEX_ITEMS)
        },
    }
