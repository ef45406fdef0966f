"""Which process layouts can work, decided from the settings before anything starts.

The valid combinations (docs/operations.md, "Topologies"):

* **embedded** (no ``LOOKALIKE_REDIS_URL``): one process, ``lookalike serve``, runs the API
  and a worker thread that share one qdrant-edge shard (or a Qdrant server, with
  ``LOOKALIKE_QDRANT_URL``). No ``celery`` worker processes: nothing reaches them.
* **separate processes** (``LOOKALIKE_REDIS_URL`` set): the API (``lookalike serve``) and
  ``celery -A worker.main worker`` processes, every one of them on the same Qdrant server
  (``LOOKALIKE_QDRANT_URL=http://...``). The embedded shard cannot serve this: its files are
  locked by the one process that opens them, so the API and the workers cannot all open it;
  ``:memory:`` would give each process a catalog of its own.
* **a lone worker on the embedded shard** (``LOOKALIKE_REDIS_URL`` set, no
  ``LOOKALIKE_QDRANT_URL``, no API): one worker process owns the shard, fed through Redis by
  a script; an API cannot run beside it. Allowed for the worker, refused for the API.
"""

from __future__ import annotations

from lookalike.settings import Settings


def api_topology_problem(settings: Settings) -> str | None:
    """Why ``lookalike serve`` cannot work with these settings (a message that says what to
    set), or None."""
    if settings.embedded_broker:
        return None
    if not settings.qdrant_url:
        return (
            "LOOKALIKE_REDIS_URL is set, so the API runs alone and separate celery workers "
            "index and embed; but LOOKALIKE_QDRANT_URL is not, so the API would open the "
            f"embedded qdrant-edge shard ({settings.qdrant_path}), which only one process can "
            "hold: the workers could not write to it. Set LOOKALIKE_QDRANT_URL to a Qdrant "
            "server (e.g. http://127.0.0.1:6333; docker-compose.yml runs one) for the API and "
            "every worker, or unset LOOKALIKE_REDIS_URL to run the embedded default (API and "
            "worker in one process)."
        )
    if settings.qdrant_url == ":memory:":
        return (
            "LOOKALIKE_QDRANT_URL=:memory: keeps the catalog inside one process, but "
            "LOOKALIKE_REDIS_URL is set, so separate worker processes would write to catalogs "
            "of their own. Set LOOKALIKE_QDRANT_URL to a Qdrant server shared by the API and "
            "the workers, or unset LOOKALIKE_REDIS_URL."
        )
    return None


def worker_topology_warning(settings: Settings) -> str | None:
    """What a worker process should say at start when its layout only works alone."""
    if settings.embedded_broker:
        return (
            "LOOKALIKE_REDIS_URL is not set: a celery worker process receives nothing (the "
            "embedded default runs its worker inside `lookalike serve`). Set "
            "LOOKALIKE_REDIS_URL for separate worker processes."
        )
    if not settings.qdrant_url:
        return (
            "no LOOKALIKE_QDRANT_URL: this worker opens the embedded shard at "
            f"{settings.qdrant_path}, which no API and no other worker can open meanwhile "
            "(only a lone worker works this way). Set LOOKALIKE_QDRANT_URL to a Qdrant server "
            "for an API and several workers."
        )
    if settings.qdrant_url == ":memory:":
        return "LOOKALIKE_QDRANT_URL=:memory:: this worker's catalog is its own, seen by nobody"
    return None
