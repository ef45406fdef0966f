"""HTTP routes."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for
from PIL import Image

from api.celery_client import TaskClient
from api.errors import APIError
from lookalike.blobs import BlobStore
from lookalike.images import ImageProblem, decode_image, sha256_hex
from lookalike.schema import DEFAULT_TENANT, InvalidId, point_id, validate_id
from lookalike.settings import Settings
from lookalike.store import StoredItem, StoreError, StoreUnavailable, VectorStore
from lookalike.tasks import EMBED_QUERY, INDEX_ITEMS

bp = Blueprint("api", __name__)

MAX_LIMIT = 100


def _settings() -> Settings:
    return current_app.extensions["lookalike.settings"]


def _store() -> VectorStore:
    try:
        return current_app.extensions["lookalike.store"].get()
    except StoreUnavailable as exc:
        raise APIError(503, "store_unavailable", f"the vector store is unavailable: {exc}") from exc


def _tasks() -> TaskClient:
    return current_app.extensions["tasks"]


def _blobs() -> BlobStore:
    return current_app.extensions["lookalike.blobs"]


def _tenant() -> str:
    raw = request.headers.get("X-Tenant") or DEFAULT_TENANT
    try:
        return validate_id(raw, "tenant")
    except InvalidId as exc:
        raise APIError(400, "invalid_tenant", str(exc), "X-Tenant") from exc


def _item_id(raw: str | None, field: str = "id") -> str:
    if raw is None:
        raise APIError(400, "missing_field", f"{field} is required", field)
    try:
        return validate_id(raw, field)
    except InvalidId as exc:
        raise APIError(400, "invalid_id", str(exc), field) from exc


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, "invalid_parameter", f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise APIError(400, "invalid_parameter", f"{name} must be between {lo} and {hi}", name)
    return value


def _uploaded_image(field: str = "image") -> tuple[bytes, Image.Image]:
    upload = request.files.get(field)
    if upload is None:
        raise APIError(400, "missing_field", f"a multipart file field '{field}' is required", field)
    data = upload.read()
    if len(data) > _settings().max_upload_bytes:
        raise APIError(
            413, "payload_too_large", f"images may be at most {_settings().max_upload_bytes} bytes"
        )
    try:
        return data, decode_image(data, max_pixels=_settings().max_image_pixels)
    except ImageProblem as exc:
        raise APIError(422, exc.code, exc.message, field) from exc


def _metadata() -> dict[str, Any]:
    raw = request.form.get("metadata")
    if raw is None or raw == "":
        return {}
    if len(raw.encode()) > _settings().max_metadata_bytes:
        raise APIError(
            400,
            "metadata_too_large",
            f"metadata may be at most {_settings().max_metadata_bytes} bytes",
            "metadata",
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise APIError(
            400, "invalid_metadata", f"metadata is not valid JSON: {exc}", "metadata"
        ) from exc
    if not isinstance(value, dict):
        raise APIError(400, "invalid_metadata", "metadata must be a JSON object", "metadata")
    return value


def _item_json(payload: dict[str, Any], score: float | None = None) -> dict[str, Any]:
    body = {
        "id": payload["item_id"],
        "tenant": payload.get("tenant", DEFAULT_TENANT),
        "metadata": payload.get("metadata", {}),
        "image_url": url_for("api.item_image", item_id=payload["item_id"]),
        "image_sha256": payload.get("image_sha256"),
        "model": payload.get("model"),
        "model_version": payload.get("model_version"),
        "ingested_at": payload.get("ingested_at"),
    }
    if score is not None:
        body["score"] = round(score, 6)
    return body


def _get_item(item_id: str, tenant: str, *, with_vector: bool = False) -> StoredItem:
    found = _store().retrieve([point_id(item_id, tenant)], with_vectors=with_vector)
    if not found:
        raise APIError(404, "item_not_found", f"no item with id {item_id!r}", "id")
    return found[0]


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        _store().count()
        checks["vector_store"] = "ok"
    except (APIError, StoreError) as exc:
        checks["vector_store"] = f"unavailable: {getattr(exc, 'message', exc)}"
    try:
        _tasks().ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not_ready", checks=checks), 200 if ready else 503


@bp.post("/v1/items")
def add_item() -> tuple[Response, int]:
    tenant = _tenant()
    item_id = _item_id(request.form.get("id"))
    metadata = _metadata()
    data, _ = _uploaded_image()
    sha = sha256_hex(data)
    _blobs().put(sha, data)
    item = {"id": item_id, "tenant": tenant, "image_sha256": sha, "metadata": metadata}
    task_id = _tasks().send(INDEX_ITEMS, [item], meta={"items": [item_id]})
    return (
        jsonify(
            task_id=task_id,
            item_id=item_id,
            status_url=url_for("api.task_status", task_id=task_id),
        ),
        202,
    )


@bp.get("/v1/tasks/<task_id>")
def task_status(task_id: str) -> Response:
    submitted = _tasks().submitted(task_id)
    result = _tasks().result(task_id)
    state = result.state
    if state == "PENDING":
        if submitted is None:
            raise APIError(
                404, "task_not_found", "unknown task id (or its record has expired)", "task_id"
            )
        return jsonify(task_id=task_id, status="queued", items=submitted.get("items", []))
    body: dict[str, Any] = {"task_id": task_id}
    if state == "SUCCESS":
        outcome = result.result or {}
        failed = outcome.get("failed", [])
        indexed = outcome.get("indexed", [])
        body["status"] = "failed" if failed and not indexed else "succeeded"
        body["indexed"] = indexed
        body["failed"] = failed
    elif state == "FAILURE":
        body["status"] = "failed"
        body["error"] = {"code": "task_failed", "message": type(result.result).__name__}
    elif state == "RETRY":
        body["status"] = "retrying"
    else:  # STARTED, RECEIVED
        body["status"] = "running"
    return jsonify(body)


@bp.get("/v1/items")
def list_items() -> Response:
    tenant = _tenant()
    limit = _int_arg("limit", 50, 1, 500)
    cursor = request.args.get("cursor") or None
    where: dict[str, Any] = {"tenant": tenant}
    if category := request.args.get("category"):
        where["metadata.category"] = category
    try:
        items, next_cursor = _store().scroll(limit=limit, offset=cursor, where=where)
    except StoreError as exc:
        raise APIError(400, "invalid_cursor", "the cursor is not valid", "cursor") from exc
    return jsonify(
        items=[_item_json(i.payload) for i in items],
        next_cursor=next_cursor,
        total=_store().count(where),
    )


@bp.get("/v1/items/<item_id>")
def get_item(item_id: str) -> Response:
    item = _get_item(_item_id(item_id), _tenant())
    return jsonify(_item_json(item.payload))


@bp.delete("/v1/items/<item_id>")
def delete_item(item_id: str) -> tuple[str, int]:
    tenant = _tenant()
    item = _get_item(_item_id(item_id), tenant)
    _store().delete([item.point_id])
    return "", 204


@bp.get("/v1/items/<item_id>/image")
def item_image(item_id: str) -> Response:
    item = _get_item(_item_id(item_id), _tenant())
    path = _blobs().path(item.payload["image_sha256"])
    if not path.exists():
        raise APIError(404, "image_not_found", "the item's image is missing from the image store")
    with Image.open(path) as img:
        mimetype = Image.MIME.get(img.format or "", "application/octet-stream")
    return send_file(path, mimetype=mimetype, max_age=3600)


@bp.get("/v1/items/<item_id>/similar")
def similar_items(item_id: str) -> Response:
    tenant = _tenant()
    limit = _int_arg("limit", 10, 1, MAX_LIMIT)
    item = _get_item(_item_id(item_id), tenant, with_vector=True)
    assert item.vector is not None
    hits = _store().search(
        item.vector, limit=limit, where={"tenant": tenant}, exclude_ids=[item.point_id]
    )
    return jsonify(
        query={"id": item.payload["item_id"]},
        items=[_item_json(h.payload, h.score) for h in hits],
    )


@bp.post("/v1/search")
def search_by_image() -> Response:
    tenant = _tenant()
    limit = _int_arg("limit", 10, 1, MAX_LIMIT)
    data, _ = _uploaded_image()
    task_id = _tasks().send(EMBED_QUERY, base64.b64encode(data).decode("ascii"))
    result = _tasks().result(task_id)
    try:
        outcome = result.get(timeout=_settings().query_timeout_s, propagate=False)
    except CeleryTimeout:
        raise APIError(
            503, "embedding_timeout", "no worker embedded the photo in time; try again"
        ) from None
    finally:
        result.forget()
    if not isinstance(outcome, dict) or "vector" not in outcome:
        error = outcome.get("error") if isinstance(outcome, dict) else None
        if error:
            raise APIError(422, error["code"], error["message"], "image")
        raise APIError(503, "embedding_failed", "the worker could not embed the photo")
    vector = np.asarray(outcome["vector"], dtype=np.float32)
    hits = _store().search(vector, limit=limit, where={"tenant": tenant})
    return jsonify(
        query={"model": outcome["model"], "model_version": outcome["model_version"]},
        items=[_item_json(h.payload, h.score) for h in hits],
    )


@bp.get("/")
def gallery() -> Response:
    return current_app.send_static_file("index.html")
