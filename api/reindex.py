"""Model upgrades without downtime: re-embed the catalog into a new version, switch, roll back.

The catalog is an alias over versions (lookalike/store/). ``indexer reindex --model NAME``
drives these calls:

1. ``POST /v1/reindex``: create the version ``<catalog>__<model>__<n>`` and name it ``next``.
   From then on every ingested batch is also written there, embedded with the new model.
2. ``POST /v1/reindex/batches`` a page at a time: queue the re-embedding of the active
   version's points (any tenant) into ``next``. Queries keep being served from the active one.
3. ``POST /v1/reindex/verify`` a page at a time, both sides: re-queue what is missing or
   stale in ``next``, copy metadata changes, delete what was deleted meanwhile.
4. ``POST /v1/reindex/switch``: ``active`` := next, ``previous`` := the old one, atomically.
   ``POST /v1/reindex/rollback`` swaps them back; ``POST /v1/reindex/commit`` drops
   ``previous`` (ingestion then embeds with one model again); ``POST /v1/reindex/abort``
   drops an unfinished ``next``.

These change every tenant's catalog: with API keys configured they need a write key that is
not bound to a tenant, and each names the catalog it means (``collection``), so a script
pointed at the wrong service does nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, url_for

from api.batches import json_body
from api.errors import APIError
from api.routes import _settings, _store, _tasks
from lookalike.models import MODELS
from lookalike.schema import ModelNotBuilt
from lookalike.settings import SettingsError
from lookalike.store import StoreError, StoreUnavailable, VectorStore, Version
from lookalike.task_queues import REINDEX_ITEMS

bp = Blueprint("reindex", __name__)

MAX_PAGE = 1000
DEFAULT_PAGE = 256


def _admin() -> None:
    principal = g.get("lookalike_principal")
    if principal is not None and (not principal.can_write or principal.tenant is not None):
        raise APIError(
            403,
            "admin_only",
            "a reindex changes every tenant's catalog: it needs a write key bound to no tenant",
        )


def _body() -> dict[str, Any]:
    """The JSON body, checked to name this service's catalog."""
    _admin()
    body = json_body()
    if "collection" not in body:
        raise APIError(
            400, "missing_field", "collection (the catalog's name) is required", "collection"
        )
    if body["collection"] != _settings().collection:
        raise APIError(
            400,
            "wrong_collection",
            f"this service's catalog is {_settings().collection!r}",
            "collection",
        )
    return body


def _page(body: dict[str, Any]) -> tuple[str | None, int]:
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise APIError(400, "invalid_parameter", "cursor must be a string or null", "cursor")
    limit = body.get("limit", DEFAULT_PAGE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise APIError(
            400, "invalid_parameter", f"limit must be an integer from 1 to {MAX_PAGE}", "limit"
        )
    return cursor, limit


def _scroll(store: VectorStore, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    try:
        return store.scroll(limit=limit, offset=cursor)
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise APIError(400, "invalid_cursor", "the cursor is not valid", "cursor") from exc


def _model(version: Version | None) -> str | None:
    if version is None:
        return None
    return version.label if version.label in MODELS else _settings().model


def _describe(store: VectorStore, version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "name": version.name,
        "model": _model(version),
        "count": store.version(version.name).count(),
    }


def _status(store: VectorStore) -> dict[str, Any]:
    aliases = store.aliases()
    return {
        "collection": store.collection,
        "active": _describe(store, aliases.active),
        "previous": _describe(store, aliases.previous),
        "next": _describe(store, aliases.next),
        "versions": [{"name": v.name, "model": _model(v)} for v in store.versions()],
    }


def _next(store: VectorStore) -> Version:
    upcoming = store.aliases().next
    if upcoming is None:
        raise APIError(409, "no_reindex", "no reindex is in progress (POST /v1/reindex)")
    return upcoming


@bp.get("/v1/reindex")
def status() -> Response:
    _admin()
    return jsonify(_status(_store()))


@bp.post("/v1/reindex")
def start() -> tuple[Response, int]:
    """Start a reindex into a new version for ``model``, or resume the one in progress."""
    body = _body()
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        raise APIError(
            400, "invalid_parameter", f"model must be one of {', '.join(MODELS)}", "model"
        )
    try:
        dim = _settings().replace(model=model).vector_size()
    except (SettingsError, ModelNotBuilt) as exc:
        raise APIError(409, "model_unavailable", str(exc), "model") from exc
    store = _store()
    upcoming = store.aliases().next
    if upcoming is not None:
        if _model(upcoming) != model:
            raise APIError(
                409,
                "reindex_in_progress",
                f"a reindex to {_model(upcoming)} is in progress: finish or abort it first",
                "model",
            )
        return jsonify(started=False, **_status(store)), 200
    version = store.create_version(model, dim)
    store.set_aliases(next=version.name)
    return jsonify(started=True, **_status(store)), 201


@bp.post("/v1/reindex/batches")
def queue_page() -> tuple[Response, int]:
    """Queue the re-embedding of one page of the active version (every tenant)."""
    body = _body()
    cursor, limit = _page(body)
    store = _store()
    target = _next(store)
    points, next_cursor = _scroll(store, cursor, limit)
    if not points:
        return jsonify(task_id=None, status_url=None, count=0, next_cursor=next_cursor), 200
    task_id = _tasks().send(
        REINDEX_ITEMS,
        target.name,
        [p.point_id for p in points],
        meta={"items": [p.payload.get("item_id", "") for p in points], "job": "reindex"},
    )
    return (
        jsonify(
            task_id=task_id,
            status_url=url_for("api.task_status", task_id=task_id),
            count=len(points),
            next_cursor=next_cursor,
        ),
        202,
    )


def _same_payload(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("item_id", "tenant", "metadata"))


@bp.post("/v1/reindex/verify")
def verify_page() -> tuple[Response, int]:
    """Compare one page of a side (``source``: the active version, ``target``: next) with the
    other and repair the difference: re-queue missing or stale items, copy metadata, delete."""
    body = _body()
    cursor, limit = _page(body)
    side = body.get("side", "source")
    if side not in ("source", "target"):
        raise APIError(400, "invalid_parameter", "side must be source or target", "side")
    store = _store()
    target = store.version(_next(store).name)
    requeue: list[str] = []
    updated = deleted = 0
    if side == "source":
        points, next_cursor = _scroll(store, cursor, limit)
        there = {p.point_id: p for p in target.retrieve([p.point_id for p in points])}
        for point in points:
            copy = there.get(point.point_id)
            if copy is None or copy.payload.get("image_sha256") != point.payload.get(
                "image_sha256"
            ):
                requeue.append(point.point_id)
            elif not _same_payload(point.payload, copy.payload):
                fields = ("item_id", "tenant", "metadata")
                target.set_payload(point.point_id, {k: point.payload.get(k) for k in fields})
                updated += 1
    else:
        points, next_cursor = _scroll(target, cursor, limit)
        alive = {p.point_id for p in store.retrieve([p.point_id for p in points])}
        gone = [p.point_id for p in points if p.point_id not in alive]
        if gone:
            target.delete(gone)
        deleted = len(gone)
    task_id = None
    if requeue:
        task_id = _tasks().send(
            REINDEX_ITEMS, target.collection, requeue, meta={"items": [], "job": "reindex"}
        )
    return (
        jsonify(
            checked=len(points),
            requeued=len(requeue),
            updated=updated,
            deleted=deleted,
            task_id=task_id,
            next_cursor=next_cursor,
        ),
        202 if task_id else 200,
    )


@bp.post("/v1/reindex/switch")
def switch() -> Response:
    """Serve the new version: ``active`` := next, ``previous`` := the old one, at once."""
    _body()
    store = _store()
    target = _next(store)
    aliases = store.aliases()
    assert aliases.active is not None
    stale = aliases.previous
    store.set_aliases(active=target.name, previous=aliases.active.name, next=None)
    if stale is not None and stale.name not in (target.name, aliases.active.name):
        store.drop_version(stale.name)  # two upgrades old: one rollback step is kept
    return jsonify(_status(store))


@bp.post("/v1/reindex/rollback")
def rollback() -> Response:
    """Serve the previous version again (and keep the newer one as ``previous``)."""
    _body()
    store = _store()
    aliases = store.aliases()
    if aliases.previous is None or aliases.active is None:
        raise APIError(409, "no_previous", "there is no previous version to roll back to")
    store.set_aliases(active=aliases.previous.name, previous=aliases.active.name)
    return jsonify(_status(store))


@bp.post("/v1/reindex/commit")
def commit() -> Response:
    """Keep the active version for good: drop ``previous`` (no rollback after this)."""
    _body()
    store = _store()
    previous = store.aliases().previous
    if previous is None:
        raise APIError(409, "no_previous", "there is no previous version to drop")
    store.set_aliases(previous=None)
    store.drop_version(previous.name)
    return jsonify(_status(store))


@bp.post("/v1/reindex/abort")
def abort() -> Response:
    """Give up a reindex in progress: drop the ``next`` version."""
    _body()
    store = _store()
    target = _next(store)
    store.set_aliases(next=None)
    store.drop_version(target.name)
    return jsonify(_status(store))


def openapi_paths() -> dict[str, Any]:
    from api.openapi import _json, _json_body, _op

    version = {
        "type": "object",
        "nullable": True,
        "required": ["name", "model", "count"],
        "properties": {
            "name": {"type": "string"},
            "model": {"type": "string"},
            "count": {"type": "integer"},
        },
    }
    status_schema: dict[str, Any] = {
        "type": "object",
        "required": ["collection", "active", "previous", "next", "versions"],
        "properties": {
            "collection": {"type": "string"},
            "active": version,
            "previous": version,
            "next": version,
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "model"],
                    "properties": {"name": {"type": "string"}, "model": {"type": "string"}},
                },
            },
        },
    }
    collection = {"type": "string", "description": "the catalog's name, as a confirmation"}
    plain = _json_body(
        {"type": "object", "required": ["collection"], "properties": {"collection": collection}}
    )
    page = {
        "collection": collection,
        "cursor": {"type": "string", "nullable": True},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    }
    queued = {
        "type": "object",
        "required": ["task_id", "status_url", "count", "next_cursor"],
        "properties": {
            "task_id": {"type": "string", "nullable": True},
            "status_url": {"type": "string", "nullable": True},
            "count": {"type": "integer"},
            "next_cursor": {"type": "string", "nullable": True},
        },
    }
    verified = {
        "type": "object",
        "required": ["checked", "requeued", "updated", "deleted", "task_id", "next_cursor"],
        "properties": {
            "checked": {"type": "integer"},
            "requeued": {"type": "integer"},
            "updated": {"type": "integer"},
            "deleted": {"type": "integer"},
            "task_id": {"type": "string", "nullable": True},
            "next_cursor": {"type": "string", "nullable": True},
        },
    }
    started = {
        **status_schema,
        "required": [*status_schema["required"], "started"],
        "properties": {**status_schema["properties"], "started": {"type": "boolean"}},
    }

    def admin(summary: str, responses: dict[str, Any], body: Any, errors: tuple[int, ...]) -> Any:
        return _op(summary, responses, body=body, errors=(415, 503, *errors), tag="reindex")

    return {
        "/v1/reindex": {
            "get": _op(
                "the catalog's versions: active, previous (for rollback), next (being built)",
                {"200": _json(status_schema, "versions and their point counts")},
                errors=(503,),
                tag="reindex",
            ),
            "post": admin(
                "start re-embedding the catalog with another model (or resume)",
                {
                    "201": _json(started, "a new version is being built"),
                    "200": _json(started, "this reindex was already in progress"),
                },
                _json_body(
                    {
                        "type": "object",
                        "required": ["collection", "model"],
                        "properties": {
                            "collection": collection,
                            "model": {"type": "string", "enum": list(MODELS)},
                        },
                    }
                ),
                (409,),
            ),
        },
        "/v1/reindex/batches": {
            "post": admin(
                "queue the re-embedding of one page of the active version",
                {
                    "202": _json(queued, "queued"),
                    "200": _json(queued, "nothing left on this page"),
                },
                _json_body({"type": "object", "required": ["collection"], "properties": page}),
                (409,),
            )
        },
        "/v1/reindex/verify": {
            "post": admin(
                "compare a page of one side with the other and repair the difference",
                {
                    "200": _json(verified, "checked; nothing to re-embed"),
                    "202": _json(verified, "checked; re-embedding queued"),
                },
                _json_body(
                    {
                        "type": "object",
                        "required": ["collection"],
                        "properties": {
                            **page,
                            "side": {
                                "type": "string",
                                "enum": ["source", "target"],
                                "default": "source",
                            },
                        },
                    }
                ),
                (409,),
            )
        },
        **{
            f"/v1/reindex/{name}": {
                "post": admin(
                    summary, {"200": _json(status_schema, "the versions now")}, plain, (409,)
                )
            }
            for name, summary in (
                ("switch", "serve the new version (atomically); keep the old one for rollback"),
                ("rollback", "serve the previous version again"),
                ("commit", "drop the previous version (no rollback after this)"),
                ("abort", "drop the version a reindex was building"),
            )
        },
    }
