"""Opening the store: ``open_store`` picks the backend the settings ask for; ``LazyStore``
opens it on first use (the API and the worker share it), so a process starts even while
Qdrant is down and opens the store, and makes or checks its collection, once."""

from __future__ import annotations

import logging
import threading

from lookalike.settings import Settings
from lookalike.store.base import VectorStore
from lookalike.store.edge import EdgeStore
from lookalike.store.remote import ClientStore
from lookalike.store.types import StoreError
from lookalike.store.versions import model_of

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> VectorStore:
    """The store ``settings`` asks for; nothing is opened or created until first use."""
    # A new catalog starts as version 1, labelled with the model that fills it.
    label = settings.model
    if not settings.qdrant_url:
        return EdgeStore(
            settings.qdrant_path,
            settings.collection,
            initial_label=label,
            index_after_idle_s=settings.index_after_idle_s,
            datatype=settings.vector_datatype,
            schema=settings.catalog,
        )
    from qdrant_client import QdrantClient

    if settings.qdrant_url == ":memory:":
        return ClientStore(
            QdrantClient(":memory:"),
            settings.collection,
            initial_label=label,
            datatype=settings.vector_datatype,
            schema=settings.catalog,
        )
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    return ClientStore(
        client,
        settings.collection,
        initial_label=label,
        datatype=settings.vector_datatype,
        schema=settings.catalog,
        shard_number=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication_factor,
    )


class LazyStore:
    """``get()`` opens the store ``settings`` asks for (or uses ``store``, an open one the
    embedded default shares between API and worker) and makes its collection, once."""

    def __init__(self, settings: Settings, store: VectorStore | None = None) -> None:
        self._settings = settings
        self._store = store
        self._ready = False
        self._lock = threading.Lock()

    def get(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self._settings)
            if not self._ready:
                self._store.ensure_collection(self._active_dim(self._store))
                self._ready = True
            return self._store

    def _active_dim(self, store: VectorStore) -> int:
        """The vector size of what fills the active version: a reindex may have switched the
        catalog to another model or to a head (256-d) since the settings were written."""
        settings = self._settings
        filled = model_of(store.aliases().active, settings.model, settings.head)
        return settings.replace(model=filled.model, head=filled.head).vector_size()

    @property
    def ready(self) -> bool:
        """Whether the store is open and its collection made (or checked)."""
        return self._ready

    def open_soon(self) -> threading.Thread:
        """Open the store and make its collection in a thread, now, instead of in the first
        request that needs it (on a new data folder that request waited ~0.2 s). A failure is
        only logged: requests open the store again and answer with its error."""

        def run() -> None:
            try:
                self.get()
            except StoreError as exc:
                log.warning("the vector store could not be opened at start: %s", exc)

        thread = threading.Thread(target=run, name="open-store", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Close the store (flushing and releasing an embedded shard); a later ``get()``
        opens it again."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
                self._ready = False
