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
reindex is building or the one kept for a rollback (lookalike/store.py), so neither a switch
nor a rollback brings a stale item back.

Every call acts for the request's tenant (``X-Tenant`` or its API key's tenant).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import context
from api.contract import (
    MAX_BATCH_ITEMS,
    SHA256_PATTERN,
    BatchItemsBody,
    DeleteBody,
    MetadataBody,
    parse_body,
)
from api.errors import APIError
from api.routes import stored_metadata
from lookalike.images import ImageProblem, sha256_hex, validate_image
from lookalike.schema import InvalidMetadata, point_id
from lookalike.store import StoreError, mirror_versions
from lookalike.tasks import INDEX_ITEMS

bp = Blueprint("batches", __name__)

# The largest POST /v1/blobs request; each image in it is also held to max_upload_bytes.
MAX_BLOBS_REQUEST_BYTES = 64 * 2**20
_SHA256_RE = re.compile(SHA256_PATTERN)


def unique_ids(ids: list[str], name: str) -> list[str]:
    """``ids`` (checked by their model), each at most once."""
    if len(set(ids)) != len(ids):
        raise APIError(400, "duplicate_id", f"an item id appears twice in {name}", name)
    return ids


def metadata_problem(value: Any, field: str) -> dict[str, str] | None:
    """Why an item's metadata cannot be stored (its size, a declared field of another
    type: ``field`` names it), or None."""
    if (
        len(json.dumps(value, separators=(",", ":")).encode())
        > context.settings().max_metadata_bytes
    ):
        limit = context.settings().max_metadata_bytes
        return {"code": "metadata_too_large", "message": f"metadata may be at most {limit} bytes"}
    try:
        context.catalog().check_metadata(value)
    except InvalidMetadata as exc:
        return {
            "code": "invalid_metadata",
            "message": exc.message,
            "field": f"{field}.metadata.{exc.field}",
        }
    return None


def checked_metadata(value: Any, field: str) -> dict[str, Any]:
    """An entry's metadata object as given (its fields are checked by metadata_problem)."""
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
    problem = _store_blob(sha256, data, context.tenant())
    if problem is not None:
        status, code, message = problem
        field = {400: "sha256", 422: "body"}.get(status)
        raise APIError(status, code, message, field)
    return jsonify(sha256=sha256, size=len(data)), 200


@bp.post("/v1/blobs")
def post_blobs() -> Response:
    """Store many images in one request: a multipart form whose file parts are each named by
    their sha256. Each image is checked and stored, or rejected alone with its reason."""
    settings = context.settings()
    tenant = context.tenant()
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
    settings = context.settings()
    if len(data) > settings.max_upload_bytes:
        limit = settings.max_upload_bytes
        return 413, "payload_too_large", f"images may be at most {limit} bytes"
    if sha256_hex(data) != sha256:
        return 400, "checksum_mismatch", "the body's sha256 is not the one named"
    blobs = context.blobs()
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
    tenant = context.tenant()
    body = parse_body(BatchItemsBody, context.json_body())
    unique_ids([entry.id for entry in body.items], "items")
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for i, entry in enumerate(body.items):
        field = f"items[{i}]"
        item_id, sha = entry.id, entry.image_sha256
        if "metadata" in entry.model_fields_set:
            metadata = checked_metadata(entry.metadata, field)
            problem = metadata_problem(metadata, field)
            if problem is None:
                metadata = context.catalog().check_metadata(metadata)
        else:
            # No metadata: the worker keeps an existing item's (api/routes.py add_item).
            metadata, problem = None, None
        if problem is None and not context.blobs().owns(tenant, sha):
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
    meta = {"items": names, "tenant": tenant, "job": body.job}
    task_id = context.tasks().send(INDEX_ITEMS, accepted, meta=meta)
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
    tenant = context.tenant()
    body = parse_body(MetadataBody, context.json_body())
    mode = body.mode
    ids = unique_ids([entry.id for entry in body.items], "items")
    changes: dict[str, tuple[str, dict[str, Any]]] = {}
    failed: list[dict[str, str]] = []
    for i, entry in enumerate(body.items):
        field, item_id = f"items[{i}]", entry.id
        metadata = checked_metadata(entry.metadata, field)
        problem = metadata_problem(metadata, field)
        if problem is not None:
            failed.append({"id": item_id, **problem})
        else:
            changes[point_id(item_id, tenant)] = (
                item_id,
                context.catalog().check_metadata(metadata),
            )
    store = context.store()
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
    tenant = context.tenant()
    ids = unique_ids(parse_body(DeleteBody, context.json_body()).ids, "ids")
    wanted = {point_id(i, tenant): i for i in ids}
    store = context.store()
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
