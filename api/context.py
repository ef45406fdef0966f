"""The request's context, for every blueprint of the API: the app's settings, store, catalog
schema, task client, image stores, the request's tenant, and a path's or body's item id and
JSON body. Routes read them here; no module imports another one's private helpers."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from api.auth import request_tenant
from api.celery_client import TaskClient
from api.errors import APIError
from api.thumbnails import Thumbnails
from lookalike.blobs import BlobStore
from lookalike.schema import CatalogSchema, InvalidId, validate_id
from lookalike.settings import Settings
from lookalike.store import StoreError, StoreUnavailable, VectorStore


def settings() -> Settings:
    return current_app.extensions["lookalike.settings"]


def store() -> VectorStore:
    try:
        return current_app.extensions["lookalike.store"].get()
    except StoreUnavailable as exc:
        raise APIError(503, "store_unavailable", f"the vector store is unavailable: {exc}") from exc
    except StoreError as exc:
        # The catalog cannot be opened as configured: most often it was built with another
        # vector size (LOOKALIKE_MODEL / LOOKALIKE_FEATURES changed). An operator's matter,
        # said as such on every route, as /readyz says it.
        raise APIError(
            503, "store_misconfigured", f"the catalog cannot be opened as configured: {exc}"
        ) from exc


def catalog() -> CatalogSchema:
    return settings().catalog


def tasks() -> TaskClient:
    return current_app.extensions["tasks"]


def blobs() -> BlobStore:
    return current_app.extensions["lookalike.blobs"]


def thumbnails() -> Thumbnails:
    return current_app.extensions["lookalike.thumbnails"]


def tenant() -> str:
    """The tenant the request acts for (its X-Tenant header or its API key's)."""
    return request_tenant()


def item_id(raw: str | None, field: str = "id") -> str:
    """An item id from a path or a form, checked."""
    if raw is None:
        raise APIError(400, "missing_field", f"{field} is required", field)
    try:
        return validate_id(raw, field)
    except InvalidId as exc:
        raise APIError(400, "invalid_id", str(exc), field) from exc


def json_payload() -> Any:
    """The request's JSON (a 415 when it is not JSON, a 400 when it does not parse)."""
    body = request.get_json(silent=True)
    if body is None:
        raise APIError(
            415 if not request.is_json else 400,
            "unsupported_media_type" if not request.is_json else "invalid_json",
            "the body must be a JSON object (Content-Type: application/json)",
            "body",
        )
    return body


def json_body() -> dict[str, Any]:
    """The request's JSON object (a 400 ``invalid_json`` when it is not an object)."""
    body = json_payload()
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "the body must be a JSON object", "body")
    return body
