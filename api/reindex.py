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

``GET /v1/vectors?field=F`` pages through the active version's stored vectors with their
items' value of a keyword field: what ``indexer train-head --from-catalog`` trains a head on
(served then by a reindex with ``head``).

These change every tenant's catalog: with API keys configured they need a write key that is
not bound to a tenant, and each names the catalog it means (``collection``), so a script
pointed at the wrong service does nothing.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request, url_for

from api import context
from api.contract import (
    ReindexBody,
    ReindexPageBody,
    ReindexStartBody,
    ReindexVerifyBody,
    VectorsArgs,
    parse_body,
    parse_query,
)
from api.errors import APIError
from lookalike.models import CUSTOM_MODEL
from lookalike.schema import ModelNotBuilt, head_manifest_path
from lookalike.settings import SettingsError
from lookalike.store import StoreError, StoreUnavailable, VectorStore, Version
from lookalike.store.versions import VersionModel, label_model, model_of, requested_label
from lookalike.task_queues import REINDEX_ITEMS

bp = Blueprint("reindex", __name__)

Body = TypeVar("Body", bound=ReindexBody)


def _admin() -> None:
    principal = g.get("lookalike_principal")
    if principal is not None and (not principal.can_write or principal.tenant is not None):
        raise APIError(
            403,
            "admin_only",
            "a reindex changes every tenant's catalog: it needs a write key bound to no tenant",
        )


def _body(model: type[Body]) -> Body:
    """The JSON body, read by ``model`` and checked to name this service's catalog."""
    _admin()
    body = parse_body(model, context.json_body())
    if body.collection != context.settings().collection:
        raise APIError(
            400,
            "wrong_collection",
            f"this service's catalog is {context.settings().collection!r}",
            "collection",
        )
    return body


def _scroll(store: VectorStore, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    try:
        return store.scroll(limit=limit, offset=cursor)
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise APIError(400, "invalid_cursor", "the cursor is not valid", "cursor") from exc


def _model(version: Version | None) -> VersionModel:
    settings = context.settings()
    return model_of(version, settings.model, settings.head)


def _name(version: Version) -> dict[str, Any]:
    filled = _model(version)
    return {"name": version.name, "model": filled.label, "head": filled.head or None}


def _describe(store: VectorStore, version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {**_name(version), "count": store.version(version.name).count()}


def _status(store: VectorStore) -> dict[str, Any]:
    aliases = store.aliases()
    return {
        "collection": store.collection,
        "active": _describe(store, aliases.active),
        "previous": _describe(store, aliases.previous),
        "next": _describe(store, aliases.next),
        "versions": [_name(v) for v in store.versions()],
    }


def _next(store: VectorStore) -> Version:
    upcoming = store.aliases().next
    if upcoming is None:
        raise APIError(409, "no_reindex", "no reindex is in progress (POST /v1/reindex)")
    return upcoming


@bp.get("/v1/reindex")
def status() -> Response:
    _admin()
    return jsonify(_status(context.store()))


@bp.post("/v1/reindex")
def start() -> tuple[Response, int]:
    """Start a reindex into a new version for ``model`` (and ``head``; ``"none"``: the
    model's own vectors, whatever LOOKALIKE_HEAD names), or resume the one in progress."""
    body = _body(ReindexStartBody)
    label = requested_label(body.model, body.head or "")
    settings = context.settings()
    wanted = label_model(label, settings.model, settings.head)
    dim = _dimension(wanted, "head" if wanted.head else "model")
    store = context.store()
    upcoming = store.aliases().next
    if upcoming is not None:
        if _model(upcoming) != wanted:
            raise APIError(
                409,
                "reindex_in_progress",
                f"a reindex to {_model(upcoming).label} is in progress: finish or abort it first",
                "model",
            )
        return jsonify(started=False, **_status(store)), 200
    version = store.create_version(label, dim)
    store.set_aliases(next=version.name)
    return jsonify(started=True, **_status(store)), 201


def _dimension(wanted: VersionModel, field: str) -> int:
    """The vector size of a version filled by ``wanted``; 409 when its model or head is not
    in the model cache, or the head was trained on another backbone's vectors."""
    settings = context.settings().replace(model=wanted.model, head=wanted.head)
    try:
        dim = settings.vector_size()
        if wanted.head:
            manifest = json.loads(head_manifest_path(settings.model_dir, wanted.head).read_text())
            base = manifest["base"]["model"]
            # (A user's own model's name is custom-<file>: the worker checks its heads.)
            if base != wanted.model and wanted.model != CUSTOM_MODEL:
                raise APIError(
                    409,
                    "model_unavailable",
                    f"head {wanted.head!r} was trained on {base} vectors, not {wanted.model}",
                    field,
                )
    except (SettingsError, ModelNotBuilt, OSError, ValueError, KeyError, TypeError) as exc:
        raise APIError(409, "model_unavailable", str(exc), field) from exc
    return dim


@bp.get("/v1/vectors")
def vectors() -> Response:
    """A page of the active version's points (every tenant) that have a value of a keyword
    field, with their vectors: what `indexer train-head --from-catalog` trains a head on.
    Points without a value are counted, not returned, unless ``unlabelled`` asks for them
    too (``value`` null: what ``train-head --unlabelled`` pseudo-labels)."""
    _admin()
    args = parse_query(VectorsArgs, request.args)
    schema = context.catalog()
    declared = schema.field(args.field)
    if declared is None or declared.type != "keyword":
        names = [f.name for f in schema.fields if f.type == "keyword"]
        raise APIError(
            400,
            "invalid_parameter",
            f"field must be a keyword field of the catalog: {', '.join(names) or '(none)'}",
            "field",
        )
    store = context.store()
    points, next_cursor = _scroll(store, args.cursor, args.limit)
    valued: dict[str, str | None] = {
        p.point_id: value
        for p in points
        if isinstance(value := (p.payload.get("metadata") or {}).get(args.field), str) and value
    }
    if args.unlabelled:
        valued.update({p.point_id: None for p in points if p.point_id not in valued})
    items = []
    for point in store.retrieve(list(valued), with_vectors=True):
        if point.vector is None:
            continue
        items.append(
            {
                "id": point.payload.get("item_id", ""),
                "tenant": point.payload.get("tenant", ""),
                "value": valued[point.point_id],
                "model": point.payload.get("model", ""),
                "model_version": point.payload.get("model_version", ""),
                "vector": point.vector.tolist(),
            }
        )
    active = store.aliases().active
    return jsonify(
        field=args.field,
        version=active.name if active is not None else None,
        items=items,
        skipped=len(points) - len(items),
        next_cursor=next_cursor,
    )


@bp.post("/v1/reindex/batches")
def queue_page() -> tuple[Response, int]:
    """Queue the re-embedding of one page of the active version (every tenant)."""
    body = _body(ReindexPageBody)
    store = context.store()
    target = _next(store)
    points, next_cursor = _scroll(store, body.cursor, body.limit)
    if not points:
        return jsonify(task_id=None, status_url=None, count=0, next_cursor=next_cursor), 200
    task_id = context.tasks().send(
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
    body = _body(ReindexVerifyBody)
    cursor, limit, side = body.cursor, body.limit, body.side
    store = context.store()
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
        task_id = context.tasks().send(
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
    _body(ReindexBody)
    store = context.store()
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
    _body(ReindexBody)
    store = context.store()
    aliases = store.aliases()
    if aliases.previous is None or aliases.active is None:
        raise APIError(409, "no_previous", "there is no previous version to roll back to")
    store.set_aliases(active=aliases.previous.name, previous=aliases.active.name)
    return jsonify(_status(store))


@bp.post("/v1/reindex/commit")
def commit() -> Response:
    """Keep the active version for good: drop ``previous`` (no rollback after this)."""
    _body(ReindexBody)
    store = context.store()
    previous = store.aliases().previous
    if previous is None:
        raise APIError(409, "no_previous", "there is no previous version to drop")
    store.set_aliases(previous=None)
    store.drop_version(previous.name)
    return jsonify(_status(store))


@bp.post("/v1/reindex/abort")
def abort() -> Response:
    """Give up a reindex in progress: drop the ``next`` version."""
    _body(ReindexBody)
    store = context.store()
    target = _next(store)
    store.set_aliases(next=None)
    store.drop_version(target.name)
    return jsonify(_status(store))
