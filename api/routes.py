"""HTTP routes: items, images and thumbnails, tasks and jobs, probes, the gallery's pages.

The similarity queries live in :mod:`api.queries`, which shares the item helpers here
(`find_item`, `item_json`, `uploaded_image`); the request context is :mod:`api.context`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file, url_for
from PIL import Image

from api import context
from api.auth import keyring, signed_url
from api.contract import FacetsArgs, ItemsArgs, JobsArgs, TagsArgs, ThumbnailArgs, parse_query
from api.errors import APIError
from api.params import filters_from_args, text_search
from api.readiness import served_by_workers
from api.thumbnails import MIMETYPE
from lookalike.images import ImageProblem, check_image, sha256_hex, validate_image
from lookalike.schema import (
    DEFAULT_TENANT,
    LABELS_FIELD,
    TAGS_FIELD,
    InvalidMetadata,
    point_id,
)
from lookalike.store import (
    StoredItem,
    StoreError,
    StoreUnavailable,
    mirror_versions,
)
from lookalike.task_queues import INDEX_ITEMS

bp = Blueprint("api", __name__)

MAX_LIMIT = 100
# In a browser the gallery's images are loaded once and kept; a re-uploaded item gets new
# URLs (they carry the image's hash), so nothing stale is shown.
IMAGE_MAX_AGE_S = 24 * 3600


def uploaded_image(field: str = "image", *, header_only: bool = False) -> bytes:
    """The uploaded image's bytes, checked: read through (lookalike.images.validate_image:
    a damaged or truncated file is refused here), or with ``header_only`` only its header
    (format, size), for a photo a worker decodes next anyway and whose problems it reports
    with the same codes."""
    upload = request.files.get(field)
    if upload is None:
        raise APIError(400, "missing_field", f"a multipart file field '{field}' is required", field)
    data = upload.read()
    if len(data) > context.settings().max_upload_bytes:
        raise APIError(
            413,
            "payload_too_large",
            f"images may be at most {context.settings().max_upload_bytes} bytes",
        )
    try:
        if header_only:
            check_image(data, max_pixels=context.settings().max_image_pixels)
        else:
            validate_image(data, max_pixels=context.settings().max_image_pixels)
    except ImageProblem as exc:
        raise APIError(422, exc.code, exc.message, field) from exc
    return data


def _metadata() -> dict[str, Any] | None:
    """The item's metadata form field, checked against the catalog schema; None when the
    form has none (a re-post then keeps the stored metadata)."""
    raw = request.form.get("metadata")
    if raw is None:
        return None
    if raw == "":
        return {}
    if len(raw.encode()) > context.settings().max_metadata_bytes:
        raise APIError(
            400,
            "metadata_too_large",
            f"metadata may be at most {context.settings().max_metadata_bytes} bytes",
            "metadata",
        )
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise APIError(
            400, "invalid_metadata", f"metadata is not valid JSON: {exc}", "metadata"
        ) from exc
    if not isinstance(value, dict):
        raise APIError(400, "invalid_metadata", "metadata must be a JSON object", "metadata")
    return checked_metadata(value, "metadata")


def checked_metadata(value: dict[str, Any], field: str) -> dict[str, Any]:
    """Metadata as stored: each declared field of its declared type (422 naming it)."""
    try:
        return context.catalog().check_metadata(value)
    except InvalidMetadata as exc:
        raise APIError(422, "invalid_metadata", exc.message, f"{field}.{exc.field}") from exc


def stored_metadata(point_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The metadata stored for these points (those that exist), read in one call."""
    if not point_ids:
        return {}
    found = context.store().retrieve(point_ids)
    return {item.point_id: dict(item.payload.get("metadata") or {}) for item in found}


def _image_params(tenant: str, item_id: str, sha256: str | None) -> dict[str, Any]:
    """Query parameters that let a browser load an item's image without headers: the tenant,
    the signature when keys are configured, and the image's hash against stale caches."""
    params: dict[str, Any] = {}
    keys = keyring()
    if tenant != DEFAULT_TENANT or keys.enabled:
        params["tenant"] = tenant
    if keys.enabled:
        params["sig"] = keys.sign(tenant, item_id)
    if sha256:
        params["v"] = sha256[:16]
    return params


# Stands for the item id in a URL built once per request (_item_urls).
_ID_SLOT = "__lookalike_item_id__"
# werkzeug's safe characters for a path segment (BaseConverter.to_url) and a query string
# (werkzeug.urls._urlencode).
_PATH_SAFE = "!$&'()*+,/:;=@"
_QUERY_SAFE = "!$'()*,/:;?@"


def _item_urls(item_id: str, params: dict[str, Any]) -> tuple[str, str]:
    """The item's image and thumbnail URLs: what ``url_for`` gives, without its cost for
    every hit of a result (werkzeug's URL building was a fifth of a similar-by-id request's
    CPU time). The routes are resolved once per request, the id and the query string are
    encoded as werkzeug encodes them (tests/api compares the two)."""
    templates = g.get("lookalike_item_urls")
    if templates is None:
        templates = g.lookalike_item_urls = tuple(
            url_for(endpoint, item_id=_ID_SLOT).split(_ID_SLOT, 1)
            for endpoint in ("api.item_image", "api.item_thumbnail")
        )
    segment = quote(item_id, safe=_PATH_SAFE)
    query = "?" + urlencode(params, safe=_QUERY_SAFE) if params else ""
    (image_head, image_tail), (thumb_head, thumb_tail) = templates
    return (
        f"{image_head}{segment}{image_tail}{query}",
        f"{thumb_head}{segment}{thumb_tail}{query}",
    )


def item_json(payload: dict[str, Any], score: float | None = None) -> dict[str, Any]:
    item_id = payload["item_id"]
    tenant = payload.get("tenant", DEFAULT_TENANT)
    params = _image_params(tenant, item_id, payload.get("image_sha256"))
    image_url, thumbnail_url = _item_urls(item_id, params)
    body = {
        "id": item_id,
        "tenant": tenant,
        "metadata": payload.get("metadata", {}),
        "image_url": image_url,
        "thumbnail_url": thumbnail_url,
        "image_sha256": payload.get("image_sha256"),
        "model": payload.get("model"),
        "model_version": payload.get("model_version"),
        "ingested_at": payload.get("ingested_at"),
        # The classifier's (worker/model/tags.py); none for an item indexed without tags.
        "labels": [
            {"name": lb["name"], "score": lb["score"]} for lb in payload.get(LABELS_FIELD, [])
        ],
        "tags": payload.get(TAGS_FIELD, []),
    }
    if score is not None:
        body["score"] = round(score, 6)
    return body


def find_item(item_id: str, tenant: str, *, with_vector: bool = False) -> StoredItem:
    found = context.store().retrieve([point_id(item_id, tenant)], with_vectors=with_vector)
    if not found:
        raise APIError(404, "item_not_found", f"no item with id {item_id!r}", "id")
    return found[0]


def _item_image_path(item: StoredItem) -> Path:
    sha = item.payload.get("image_sha256") or ""
    try:
        path = context.blobs().path(sha)
    except ValueError:
        path = None
    if path is None or not path.exists():
        raise APIError(404, "image_not_found", "the item's image is missing from the image store")
    return path


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@bp.app_errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> tuple[Response, int]:
    return APIError(
        503, "store_unavailable", f"the vector store is unavailable: {exc}"
    ).to_response()


# --------------------------------------------------------------------------- probes, pages


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        context.store().count()
        checks["vector_store"] = "ok"
    except (APIError, StoreError) as exc:
        checks["vector_store"] = f"unavailable: {getattr(exc, 'message', exc)}"
    try:
        context.tasks().ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    serves = served_by_workers(
        context.tasks(), context.settings(), broker_ok=checks["broker"] == "ok"
    )
    # Search by photo waits on a worker inside the request: without one on the query queue it
    # cannot be served, so the API is not ready. Ingest tasks wait in the queue (an autoscaler
    # may start ingest workers from zero on its length): said, but not a reason to be unready.
    ready = all(v == "ok" for v in checks.values()) and serves["search_by_photo"] == "ok"
    return (
        jsonify(status="ready" if ready else "not_ready", checks=checks, serves=serves),
        200 if ready else 503,
    )


@bp.get("/")
def gallery() -> Response:
    return current_app.send_static_file("index.html")


@bp.get("/jobs")
def jobs_page() -> Response:
    return current_app.send_static_file("jobs.html")


# --------------------------------------------------------------------------- items


@bp.post("/v1/items")
def add_item() -> tuple[Response, int]:
    tenant = context.tenant()
    item_id = context.item_id(request.form.get("id"))
    job = request.form.get("job") or None
    if job is not None:
        job = context.item_id(job, "job")
    metadata = _metadata()
    data = uploaded_image()
    # No metadata field (None): the worker keeps an existing item's stored metadata (never a
    # silent wipe), read when it writes the new vector; a new item starts with none.
    sha = sha256_hex(data)
    context.blobs().put(sha, data, tenant=tenant)
    item = {"id": item_id, "tenant": tenant, "image_sha256": sha, "metadata": metadata}
    meta = {"items": [item_id], "tenant": tenant, "job": job}
    task_id = context.tasks().send(INDEX_ITEMS, [item], meta=meta)
    return (
        jsonify(
            task_id=task_id,
            item_id=item_id,
            status_url=url_for("api.task_status", task_id=task_id),
        ),
        202,
    )


@bp.get("/v1/items")
def list_items() -> Response:
    tenant = context.tenant()
    args = parse_query(ItemsArgs, request.args)
    limit, cursor, sort = args.limit, args.cursor or None, args.sort
    schema = context.catalog()
    where: dict[str, Any] = {"tenant": tenant, **filters_from_args(request.args, schema)}
    if args.q is not None:
        where.update(text_search(args.q, schema))
    store = context.store()
    try:
        if sort == "newest":
            items, next_cursor = store.scroll_newest(limit=limit, cursor=cursor, where=where)
        else:
            items, next_cursor = store.scroll(limit=limit, offset=cursor, where=where)
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise APIError(400, "invalid_cursor", "the cursor is not valid", "cursor") from exc
    return jsonify(
        items=[item_json(i.payload) for i in items],
        next_cursor=next_cursor,
        total=context.store().count(where),
    )


@bp.get("/v1/facets")
def facets() -> Response:
    """The values of a declared facet field among the tenant's items (under the same
    filters), most frequent first."""
    tenant = context.tenant()
    schema = context.catalog()
    facets = [f.name for f in schema.with_role("facet")]
    args = parse_query(FacetsArgs, request.args)
    name = args.field if args.field is not None else (facets[0] if facets else "")
    declared = schema.field(name)
    if declared is None or "facet" not in declared.roles:
        raise APIError(
            400,
            "invalid_parameter",
            f"field must be one of {', '.join(facets) or '(none)'}",
            "field",
        )
    filters = filters_from_args(request.args, schema)
    filters.pop(declared.path, None)  # a field's own filter would hide its other values
    found = context.store().facet(
        declared.path, where={"tenant": tenant, **filters}, limit=args.limit
    )
    return jsonify(field=name, values=[{"value": f.value, "count": f.count} for f in found])


@bp.get("/v1/tags")
def tags() -> Response:
    """The tags of the tenant's items (under the catalog's filters), with how many items
    carry each, most frequent first: what ``q`` finds."""
    args = parse_query(TagsArgs, request.args)
    where = {"tenant": context.tenant(), **filters_from_args(request.args, context.catalog())}
    found = context.store().facet(TAGS_FIELD, where=where, limit=args.limit)
    return jsonify(tags=[{"tag": f.value, "count": f.count} for f in found])


@bp.get("/v1/schema")
def catalog_schema() -> Response:
    """The catalog's declared fields (LOOKALIKE_CATALOG_SCHEMA): what the indexer types its
    manifests by and the gallery draws its filters from."""
    context.tenant()  # the same key rules as every /v1 route
    return jsonify(context.catalog().as_json())


@bp.get("/v1/items/<item_id>")
def get_item(item_id: str) -> Response:
    item = find_item(context.item_id(item_id), context.tenant())
    return jsonify(item_json(item.payload))


@bp.delete("/v1/items/<item_id>")
def delete_item(item_id: str) -> tuple[str, int]:
    tenant = context.tenant()
    item = find_item(context.item_id(item_id), tenant)
    context.store().delete([item.point_id])
    for version in mirror_versions(context.store()):  # a reindex's next, a rollback's previous
        version.delete([item.point_id])
    return "", 204


@bp.get("/v1/items/<item_id>/image")
@signed_url
def item_image(item_id: str) -> Response:
    item = find_item(context.item_id(item_id), context.tenant())
    path = _item_image_path(item)
    with Image.open(path) as img:
        mimetype = Image.MIME.get(img.format or "", "application/octet-stream")
    return send_file(path, mimetype=mimetype, max_age=IMAGE_MAX_AGE_S)


@bp.get("/v1/items/<item_id>/thumbnail")
@signed_url
def item_thumbnail(item_id: str) -> Response:
    size = parse_query(ThumbnailArgs, request.args).size
    item = find_item(context.item_id(item_id), context.tenant())
    source = _item_image_path(item)
    path = context.thumbnails().get(item.payload["image_sha256"], source, size)
    return send_file(path, mimetype=MIMETYPE, max_age=IMAGE_MAX_AGE_S)


# --------------------------------------------------------------------------- tasks and jobs


def _describe_task(
    task_id: str, state: str, result: Any, submitted: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"task_id": task_id}
    if state == "PENDING":
        body["status"] = "queued"
        body["items"] = (submitted or {}).get("items", [])
    elif state == "SUCCESS":
        outcome = result if isinstance(result, dict) else {}
        failed = outcome.get("failed", [])
        indexed = outcome.get("indexed", [])
        body["status"] = "failed" if failed and not indexed else "succeeded"
        body["indexed"] = indexed
        body["failed"] = failed
    elif state == "FAILURE":
        body["status"] = "failed"
        exc_type = result.get("exc_type") if isinstance(result, dict) else None
        name = exc_type or type(result).__name__
        body["error"] = {"code": "task_failed", "message": name}
    elif state == "RETRY":
        body["status"] = "retrying"
    else:  # STARTED, RECEIVED
        body["status"] = "running"
    return body


@bp.get("/v1/tasks/<task_id>")
def task_status(task_id: str) -> Response:
    tenant = context.tenant()
    submitted = context.tasks().submitted(task_id)
    if submitted is not None and submitted.get("tenant", tenant) != tenant:
        # Another tenant's task: as unknown to this tenant as an id never issued.
        raise APIError(404, "task_not_found", "unknown task id", "task_id")
    result = context.tasks().result(task_id)
    state = result.state
    if state == "PENDING" and submitted is None:
        raise APIError(
            404, "task_not_found", "unknown task id (or its record has expired)", "task_id"
        )
    return jsonify(_describe_task(task_id, state, result.result, submitted))


MAX_TASK_IDS = 100


@bp.get("/v1/tasks")
def task_statuses() -> Response:
    """Many tasks' statuses in one request: an ingestion job follows its queued batches with
    one call instead of one per task. Ids this tenant does not know are listed apart."""
    tenant = context.tenant()
    ids = list(
        dict.fromkeys(i.strip() for raw in request.args.getlist("ids") for i in raw.split(","))
    )
    ids = [i for i in ids if i]
    if not ids:
        raise APIError(400, "missing_field", "ids is required (task ids, comma-separated)", "ids")
    if len(ids) > MAX_TASK_IDS or any(len(i) > 200 for i in ids):
        raise APIError(
            400, "invalid_parameter", f"at most {MAX_TASK_IDS} task ids of 200 characters", "ids"
        )
    tasks, not_found = [], []
    submissions = context.tasks().submitted_many(ids)
    states = context.tasks().states(ids)
    for task_id, submitted, (state, result) in zip(ids, submissions, states, strict=True):
        foreign = submitted is not None and submitted.get("tenant", tenant) != tenant
        if foreign or (state == "PENDING" and submitted is None):
            not_found.append(task_id)
        else:
            tasks.append(_describe_task(task_id, state, result, submitted))
    return jsonify(tasks=tasks, not_found=not_found)


@bp.get("/v1/jobs")
def jobs() -> Response:
    """The tenant's latest ingestion tasks, and their progress per job label."""
    tenant = context.tenant()
    limit = parse_query(JobsArgs, request.args).limit
    entries = context.tasks().history.recent(tenant, limit)
    states = context.tasks().states([e["task_id"] for e in entries])
    tasks = []
    for entry, (state, result) in zip(entries, states, strict=True):
        task = _describe_task(entry["task_id"], state, result, entry)
        task["items"] = entry.get("items", [])
        task["job"] = entry.get("job")
        task["submitted_at"] = _iso(entry.get("submitted_at"))
        tasks.append(task)
    by_job: dict[str | None, dict[str, Any]] = {}
    for task in tasks:
        job = by_job.setdefault(
            task["job"],
            {
                "job": task["job"],
                "tasks": 0,
                "items": 0,
                **dict.fromkeys(_STATUSES, 0),
                "items_indexed": 0,
                "items_failed": 0,
                "first_submitted_at": None,
                "last_submitted_at": task["submitted_at"],
            },
        )
        job["tasks"] += 1
        job["items"] += len(task["items"])
        job[task["status"]] += 1
        job["items_indexed"] += len(task.get("indexed", []))
        job["items_failed"] += len(task.get("failed", [])) or (1 if task.get("error") else 0)
        job["first_submitted_at"] = task["submitted_at"]
        job["done"] = job["succeeded"] + job["failed"] == job["tasks"]
    summary = {status: sum(1 for t in tasks if t["status"] == status) for status in _STATUSES}
    return jsonify(
        tenant=tenant,
        generated_at=_iso(time.time()),
        summary={"tasks": len(tasks), **summary},
        jobs=list(by_job.values()),
        tasks=tasks,
    )


_STATUSES = ("queued", "running", "retrying", "succeeded", "failed")
