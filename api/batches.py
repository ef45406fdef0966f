"""Bulk catalog writes, for ingestion jobs (``indexer ingest``).

One item per ``POST /v1/items`` makes a million-image catalog a million multipart requests
and a million one-image tasks; a worker embeds best in batches. So a job works in two steps:

1. ``POST /v1/blobs`` (many images per request, each part named by its sha256) or
   ``PUT /v1/blobs/{sha256}`` (one): upload each image once, by its content hash. The API
   checks the hash and reads the image through (lookalike.images.validate_image), so a bad
   file is refused here, alone, with its reason. One request per batch instead of one per
   image is most of what keeps the API's and the indexer's CPU off the cores the model needs
   (docs/performance.md).
2. ``POST /v1/batches``: index up to :data:`MAX_BATCH_ITEMS` items that name their uploaded
   image by hash, as one worker task (the worker embeds them in model-sized batches).

Two more calls keep a catalog in sync without re-embedding anything:
``POST /v1/batches/metadata`` replaces items' metadata, or with ``"mode": "merge"`` sets
only the fields it names (the vector is untouched), and
``POST /v1/batches/delete`` removes items. Both apply at once and also to the version a
reindex is building or the one kept for a rollback (lookalike/store/), so neither a switch
nor a rollback brings a stale item back.

Every call acts for the request's tenant (``X-Tenant`` or its API key's tenant).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, url_for

from api.errors import APIError
from api.params import item_id as valid_item_id
from api.routes import (
    _blobs,
    _catalog,
    _settings,
    _store,
    _tasks,
    _tenant,
    stored_metadata,
)
from lookalike.images import ImageProblem, sha256_hex, validate_image
from lookalike.schema import ID_PATTERN, MAX_ID_LENGTH, InvalidMetadata, point_id
from lookalike.store import StoreError, mirror_versions
from lookalike.task_queues import INDEX_ITEMS

bp = Blueprint("batches", __name__)

MAX_BATCH_ITEMS = 256
# POST /v1/batches/metadata: replace an item's whole metadata, or set the fields given.
METADATA_MODES = ("replace", "merge")
# The largest POST /v1/blobs request; each image in it is also held to max_upload_bytes.
MAX_BLOBS_REQUEST_BYTES = 64 * 2**20
SHA256_PATTERN = "^[0-9a-f]{64}$"
_SHA256_RE = re.compile(SHA256_PATTERN)


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        raise APIError(
            415 if not request.is_json else 400,
            "unsupported_media_type" if not request.is_json else "invalid_json",
            "the body must be a JSON object (Content-Type: application/json)",
            "body",
        )
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "the body must be a JSON object", "body")
    return body


def json_list(body: dict[str, Any], name: str, most: int) -> list[Any]:
    value = body.get(name)
    if value is None:
        raise APIError(400, "missing_field", f"{name} is required", name)
    if not isinstance(value, list) or not value:
        raise APIError(400, "invalid_parameter", f"{name} must be a non-empty list", name)
    if len(value) > most:
        raise APIError(400, "invalid_parameter", f"at most {most} entries in {name}", name)
    return value


def unique_ids(entries: list[Any], name: str, key: str | None = "id") -> list[str]:
    """The item ids of a list of objects (or of plain ids, key None); each id at most once."""
    ids = []
    for i, entry in enumerate(entries):
        field = f"{name}[{i}]"
        if key is not None:
            if not isinstance(entry, dict):
                raise APIError(400, "invalid_parameter", f"{field} must be an object", field)
            if key not in entry:
                raise APIError(400, "missing_field", f"{field}.{key} is required", field)
            entry = entry[key]
        ids.append(valid_item_id(entry, field))
    if len(set(ids)) != len(ids):
        raise APIError(400, "duplicate_id", f"an item id appears twice in {name}", name)
    return ids


def metadata_problem(value: Any, field: str) -> dict[str, str] | None:
    """Why an item's metadata cannot be stored (its size, a declared field of another
    type: ``field`` names it), or None."""
    if len(json.dumps(value, separators=(",", ":")).encode()) > _settings().max_metadata_bytes:
        limit = _settings().max_metadata_bytes
        return {"code": "metadata_too_large", "message": f"metadata may be at most {limit} bytes"}
    try:
        _catalog().check_metadata(value)
    except InvalidMetadata as exc:
        return {
            "code": "invalid_metadata",
            "message": exc.message,
            "field": f"{field}.metadata.{exc.field}",
        }
    return None


def checked_metadata(entry: dict[str, Any], field: str) -> dict[str, Any]:
    """The entry's metadata object as given (its fields are checked by metadata_problem)."""
    value = entry.get("metadata", {})
    if not isinstance(value, dict):
        raise APIError(400, "invalid_metadata", f"{field}.metadata must be a JSON object", field)
    return value


# --------------------------------------------------------------------------- routes


@bp.put("/v1/blobs/<sha256>")
def put_blob(sha256: str) -> tuple[Response, int]:
    """Store an image by its content hash, once validated; idempotent."""
    if not _SHA256_RE.fullmatch(sha256):
        raise APIError(
            400, "invalid_parameter", "the path must name a lower-case hex sha256", "sha256"
        )
    data = request.get_data(cache=False)
    problem = _store_blob(sha256, data, _tenant())
    if problem is not None:
        status, code, message = problem
        field = {400: "sha256", 422: "body"}.get(status)
        raise APIError(status, code, message, field)
    return jsonify(sha256=sha256, size=len(data)), 200


@bp.post("/v1/blobs")
def post_blobs() -> Response:
    """Store many images in one request: a multipart form whose file parts are each named by
    their sha256. Each image is checked and stored, or rejected alone with its reason."""
    settings = _settings()
    tenant = _tenant()
    # Werkzeug enforces these while it parses, before any image is read.
    request.max_content_length = MAX_BLOBS_REQUEST_BYTES
    request.max_form_parts = MAX_BATCH_ITEMS + 16
    if request.mimetype != "multipart/form-data":
        raise APIError(
            415,
            "unsupported_media_type",
            "the body must be multipart/form-data, one file part per image named by its sha256",
            "body",
        )
    files = list(request.files.items(multi=True))
    if not files:
        raise APIError(400, "missing_field", "no file parts: name each part by its sha256", "body")
    if len(files) > MAX_BATCH_ITEMS:
        raise APIError(
            400, "invalid_parameter", f"at most {MAX_BATCH_ITEMS} images per request", "body"
        )
    stored: list[str] = []
    rejected: list[dict[str, str]] = []
    for name, upload in files:
        if not _SHA256_RE.fullmatch(name):
            message = "the part's name must be the image's lower-case hex sha256"
            rejected.append({"sha256": name, "code": "invalid_parameter", "message": message})
            continue
        data = upload.stream.read(settings.max_upload_bytes + 1)
        problem = _store_blob(name, data, tenant)
        if problem is None:
            stored.append(name)
        else:
            rejected.append({"sha256": name, "code": problem[1], "message": problem[2]})
    return jsonify(stored=stored, rejected=rejected)


def _store_blob(sha256: str, data: bytes, tenant: str) -> tuple[int, str, str] | None:
    """Check an upload and store it for ``tenant``; (HTTP status, code, message) when it is
    refused."""
    settings = _settings()
    if len(data) > settings.max_upload_bytes:
        limit = settings.max_upload_bytes
        return 413, "payload_too_large", f"images may be at most {limit} bytes"
    if sha256_hex(data) != sha256:
        return 400, "checksum_mismatch", "the body's sha256 is not the one named"
    blobs = _blobs()
    # A blob this tenant stored was checked when it was stored, and the same hash is the same
    # bytes: a re-run of an ingestion job does not decode its images again. Another tenant's
    # copy does not count (the answer, and its time, must not tell that it exists).
    if blobs.owns(tenant, sha256):
        return None
    try:
        validate_image(data, max_pixels=settings.max_image_pixels)
    except ImageProblem as exc:
        return 422, exc.code, exc.message
    blobs.put(sha256, data, tenant=tenant)
    return None


@bp.post("/v1/batches")
def add_batch() -> tuple[Response, int]:
    """Index many items whose images were uploaded with PUT /v1/blobs, as one task."""
    tenant = _tenant()
    body = json_body()
    entries = json_list(body, "items", MAX_BATCH_ITEMS)
    ids = unique_ids(entries, "items")
    job = valid_item_id(body["job"], "job") if "job" in body else None
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for i, (item_id, entry) in enumerate(zip(ids, entries, strict=True)):
        field = f"items[{i}]"
        sha = entry.get("image_sha256")
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise APIError(
                400, "invalid_parameter", f"{field}.image_sha256 must be a hex sha256", field
            )
        if "metadata" in entry:
            metadata = checked_metadata(entry, field)
            problem = metadata_problem(metadata, field)
            if problem is None:
                metadata = _catalog().check_metadata(metadata)
        else:
            # No metadata: the worker keeps an existing item's (api/routes.py add_item).
            metadata, problem = None, None
        if problem is None and not _blobs().owns(tenant, sha):
            problem = {
                "code": "image_missing",
                "message": "this tenant uploaded no image with this sha256 "
                "(PUT /v1/blobs/{sha256})",
            }
        if problem is not None:
            rejected.append({"id": item_id, **problem})
            continue
        accepted.append(
            {"id": item_id, "tenant": tenant, "image_sha256": sha, "metadata": metadata}
        )
    if not accepted:
        return jsonify(task_id=None, status_url=None, accepted=[], rejected=rejected), 200
    names = [a["id"] for a in accepted]
    meta = {"items": names, "tenant": tenant, "job": job}
    task_id = _tasks().send(INDEX_ITEMS, accepted, meta=meta)
    return (
        jsonify(
            task_id=task_id,
            status_url=url_for("api.task_status", task_id=task_id),
            accepted=names,
            rejected=rejected,
        ),
        202,
    )


@bp.post("/v1/batches/metadata")
def update_metadata() -> Response:
    """Replace the metadata of existing items (``"mode": "merge"``: set the fields given,
    keep the others); nothing is re-embedded."""
    tenant = _tenant()
    body = json_body()
    unknown = sorted(set(body) - {"items", "mode"})
    if unknown:
        raise APIError(400, "invalid_parameter", f"unknown field {unknown[0]}", unknown[0])
    mode = body.get("mode", "replace")
    if mode not in METADATA_MODES:
        raise APIError(
            400, "invalid_parameter", f"mode must be one of {', '.join(METADATA_MODES)}", "mode"
        )
    entries = json_list(body, "items", MAX_BATCH_ITEMS)
    ids = unique_ids(entries, "items")
    changes: dict[str, tuple[str, dict[str, Any]]] = {}
    failed: list[dict[str, str]] = []
    for i, (item_id, entry) in enumerate(zip(ids, entries, strict=True)):
        field = f"items[{i}]"
        if "metadata" not in entry:
            raise APIError(400, "missing_field", f"{field}.metadata is required", field)
        metadata = checked_metadata(entry, field)
        problem = metadata_problem(metadata, field)
        if problem is not None:
            failed.append({"id": item_id, **problem})
        else:
            changes[point_id(item_id, tenant)] = (item_id, _catalog().check_metadata(metadata))
    store = _store()
    found = stored_metadata(list(changes))
    updated = []
    for pid, (item_id, metadata) in changes.items():
        if mode == "merge" and pid in found:
            metadata = {**found[pid], **metadata}
            problem = metadata_problem(metadata, f"items[{ids.index(item_id)}]")
            if problem is not None:  # too large, or a stored value of another type
                failed.append({"id": item_id, **problem})
                continue
        if pid not in found:
            failed.append(
                {"id": item_id, "code": "item_not_found", "message": f"no item {item_id!r}"}
            )
            continue
        store.set_payload(pid, {"metadata": metadata})
        updated.append(item_id)
        for other in mirror_versions(store):
            # Not there yet: the reindex copies the current payload when it gets there.
            with contextlib.suppress(StoreError):
                other.set_payload(pid, {"metadata": metadata})
    return jsonify(updated=updated, failed=failed)


@bp.post("/v1/batches/delete")
def delete_batch() -> Response:
    """Remove items from the index; ids that are not there are listed as missing."""
    tenant = _tenant()
    body = json_body()
    ids = unique_ids(json_list(body, "ids", MAX_BATCH_ITEMS * 4), "ids", key=None)
    wanted = {point_id(i, tenant): i for i in ids}
    store = _store()
    found = [item.point_id for item in store.retrieve(list(wanted))]
    if found:
        store.delete(found)
        for other in mirror_versions(store):
            other.delete(found)
    deleted = set(found)
    return jsonify(
        deleted=[wanted[p] for p in wanted if p in deleted],
        missing=[wanted[p] for p in wanted if p not in deleted],
    )


# --------------------------------------------------------------------------- registration


def init_app(app: Flask) -> None:
    """Register the catalog-job blueprints (this one, duplicates, reindex) and document them."""
    from api import duplicates, reindex
    from api.openapi import register_paths

    for blueprint in (bp, duplicates.bp, reindex.bp):
        app.register_blueprint(blueprint)
    register_paths(app, openapi_paths())
    register_paths(app, duplicates.openapi_paths())
    register_paths(app, reindex.openapi_paths())


def openapi_paths() -> dict[str, Any]:
    from api.openapi import _json, _json_body, _op

    item_id = {"type": "string", "pattern": f"^{ID_PATTERN}$", "maxLength": MAX_ID_LENGTH}
    sha = {"type": "string", "pattern": SHA256_PATTERN}

    def failures_of(key: str) -> dict[str, Any]:
        """A list of refusals, each naming what it refuses by ``key``."""
        return {
            "type": "array",
            "items": {
                "type": "object",
                "required": [key, "code", "message"],
                "properties": {
                    key: {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            },
        }

    failures = failures_of("id")
    names = {"type": "array", "items": {"type": "string"}}
    batch_item = {
        "type": "object",
        "required": ["id", "image_sha256"],
        "properties": {"id": item_id, "image_sha256": sha, "metadata": {"type": "object"}},
    }
    accepted = {
        "type": "object",
        "required": ["task_id", "status_url", "accepted", "rejected"],
        "properties": {
            "task_id": {"type": "string", "nullable": True},
            "status_url": {"type": "string", "nullable": True},
            "accepted": names,
            "rejected": failures,
        },
    }
    return {
        "/v1/blobs": {
            "post": _op(
                f"upload up to {MAX_BATCH_ITEMS} images in one request, each file part named "
                "by its sha256 (each checked and read through; a bad one is rejected alone)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["stored", "rejected"],
                            "properties": {
                                "stored": names,
                                "rejected": failures_of("sha256"),
                            },
                        },
                        "the images stored (or already there), and the ones refused",
                    )
                },
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": {"type": "string", "format": "binary"},
                            }
                        }
                    },
                },
                errors=(413, 415),
                tag="batches",
            ),
        },
        "/v1/blobs/{sha256}": {
            "parameters": [
                {"name": "sha256", "in": "path", "required": True, "schema": sha},
            ],
            "put": _op(
                "upload an image by its sha256 (checked, and read through to refuse a bad file)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["sha256", "size"],
                            "properties": {
                                "sha256": {"type": "string"},
                                "size": {"type": "integer"},
                            },
                        },
                        "stored (or already there)",
                    )
                },
                body={
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                errors=(413, 422),
                tag="batches",
            ),
        },
        "/v1/batches": {
            "post": _op(
                f"index up to {MAX_BATCH_ITEMS} items whose images are uploaded, as one task",
                {
                    "202": _json(accepted, "queued as one task; `rejected` items were not"),
                    "200": _json(accepted, "nothing to queue: every item was rejected"),
                },
                body=_json_body(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH_ITEMS,
                                "items": batch_item,
                            },
                            "job": item_id,
                        },
                    }
                ),
                errors=(415, 503),
                tag="batches",
            )
        },
        "/v1/batches/metadata": {
            "post": _op(
                "replace (or merge) items' metadata without re-embedding them",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["updated", "failed"],
                            "properties": {"updated": names, "failed": failures},
                        },
                        "updated items, and the ones that could not be",
                    )
                },
                body=_json_body(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH_ITEMS,
                                "items": {
                                    "type": "object",
                                    "required": ["id", "metadata"],
                                    "properties": {
                                        "id": item_id,
                                        "metadata": {"type": "object"},
                                    },
                                },
                            },
                            "mode": {
                                "type": "string",
                                "enum": list(METADATA_MODES),
                                "default": "replace",
                            },
                        },
                    }
                ),
                errors=(415, 503),
                tag="batches",
            )
        },
        "/v1/batches/delete": {
            "post": _op(
                "remove items from the index",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deleted", "missing"],
                            "properties": {"deleted": names, "missing": names},
                        },
                        "removed items, and the ids that were not there",
                    )
                },
                body=_json_body(
                    {
                        "type": "object",
                        "required": ["ids"],
                        "properties": {
                            "ids": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH_ITEMS * 4,
                                "uniqueItems": True,
                                "items": item_id,
                            }
                        },
                    }
                ),
                errors=(415, 503),
                tag="batches",
            )
        },
    }
