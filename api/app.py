"""Application factory."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask

from api import batches, duplicates, explain, openapi, queries, reindex, routes
from api.auth import init_auth
from api.celery_client import celery_init_app
from api.errors import register_error_handlers
from api.metrics import init_metrics
from api.thumbnails import Thumbnails
from lookalike.blobs import BlobStore
from lookalike.schema import vector_size
from lookalike.settings import Settings
from lookalike.store import StoreError, VectorStore, open_store

log = logging.getLogger(__name__)


class StoreHandle:
    """Opens the vector store on first use, so the app starts even while Qdrant is down."""

    def __init__(self, settings: Settings, store: VectorStore | None) -> None:
        self._settings = settings
        self._store = store
        self._ready = False
        self._lock = threading.Lock()

    def get(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self._settings)
            if not self._ready:
                self._store.ensure_collection(vector_size(self._settings))
                self._ready = True
            return self._store

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


def create_app(
    settings: Settings | None = None,
    *,
    store: VectorStore | None = None,
    config: dict[str, Any] | None = None,
) -> Flask:
    """Build the API. `store` lets the embedded default share one open shard with its worker."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    # Room for the form fields beside the image.
    app.config["MAX_CONTENT_LENGTH"] = (
        settings.max_upload_bytes + settings.max_metadata_bytes + 4096
    )
    app.config["JSON_SORT_KEYS"] = False
    app.config.update(config or {})
    app.extensions["lookalike.settings"] = settings
    app.extensions["lookalike.store"] = StoreHandle(settings, store)
    app.extensions["lookalike.blobs"] = BlobStore(settings.image_dir)
    app.extensions["lookalike.thumbnails"] = Thumbnails(settings.thumbnail_dir)
    celery_init_app(app, settings)
    register_error_handlers(app)
    init_metrics(app)

    init_auth(app, settings)

    blueprints = (
        routes.bp,
        queries.bp,
        explain.bp,
        openapi.bp,
        batches.bp,
        duplicates.bp,
        reindex.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    openapi.init_query_checks(app)
    log.debug("API created (embedded broker: %s)", settings.embedded_broker)
    return app
