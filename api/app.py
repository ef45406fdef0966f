"""Application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from api import batches, duplicates, explain, openapi, queries, reindex, routes
from api.auth import init_auth
from api.celery_client import celery_init_app
from api.errors import register_error_handlers
from api.http_metrics import init_metrics
from api.thumbnails import Thumbnails
from lookalike.blobs import BlobStore
from lookalike.settings import Settings
from lookalike.store import LazyStore, VectorStore

log = logging.getLogger(__name__)


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
    app.extensions["lookalike.store"] = LazyStore(settings, store)
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
