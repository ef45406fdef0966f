"""Duplicates of an item, kept apart from "similar" items.

* **exact**: another item of the tenant with the very same image bytes (same sha256);
* **near**: the same photo edited (cropped, rescaled, recompressed, slightly rotated): the
  duplicate score of lookalike/duplicates.py reaches the threshold
  (``LOOKALIKE_DUPLICATE_THRESHOLD``, or ``threshold`` in the request).

Near-duplicate candidates come from the vector index (an ANN search above the lowest
embedding similarity that can still reach the threshold; for multiscale vectors, a search by
their pooled head alone: lookalike.duplicates.candidate_query), then each is scored with both
items' colour signatures. Items indexed without a signature (before it existed) are never
reported as near-duplicates; a reindex adds the signatures.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import read_only
from api.batches import json_body, json_list, unique_ids
from api.errors import APIError
from api.routes import _item_id, _settings, _store, _tenant
from lookalike.duplicates import (
    SIGNATURE_FIELD,
    candidate_query,
    color_similarity,
    duplicate_score,
)
from lookalike.schema import ID_PATTERN, MAX_ID_LENGTH, point_id
from lookalike.store import StoredItem, VectorStore

bp = Blueprint("duplicates", __name__)

MAX_IDS = 100
MAX_DUPLICATES = 100
DEFAULT_LIMIT = 20
# Nearest neighbours scored per item, at least: the duplicate score re-ranks them.
CANDIDATES = 50


def duplicates_of(
    store: VectorStore, item: StoredItem, tenant: str, threshold: float, limit: int
) -> dict[str, Any]:
    assert item.vector is not None
    sha = item.payload.get("image_sha256")
    exact: list[str] = []
    if isinstance(sha, str):
        same, _ = store.scroll(limit=limit + 1, where={"tenant": tenant, "image_sha256": sha})
        exact = [s.payload["item_id"] for s in same if s.point_id != item.point_id][:limit]
    near: list[dict[str, Any]] = []
    signature = item.payload.get(SIGNATURE_FIELD)
    if isinstance(signature, str):
        query = candidate_query(item.vector, item.payload.get("model"))
        hits = store.search(
            query.vector,
            limit=max(CANDIDATES, limit),
            where={"tenant": tenant},
            exclude_ids=[item.point_id, *(point_id(e, tenant) for e in exact)],
            score_threshold=query.score_threshold(threshold),
        )
        for hit in hits:
            other = hit.payload.get(SIGNATURE_FIELD)
            compared = color_similarity(signature, other) if isinstance(other, str) else None
            if compared is None:
                continue
            color, informative = compared
            similarity = query.similarity(hit.score)
            score = duplicate_score(similarity, color, informative)
            if score >= threshold:
                near.append(
                    {
                        "id": hit.payload["item_id"],
                        "score": round(score, 4),
                        "embedding_similarity": round(similarity, 4),
                        "color_similarity": round(color, 4),
                    }
                )
        near.sort(key=lambda n: -n["score"])
    return {
        "id": item.payload["item_id"],
        "exact": [{"id": e} for e in exact],
        "near": near[:limit],
    }


def _threshold(raw: Any, field: str, *, text: bool = False) -> float:
    """``raw`` from a JSON body (a number), or from a query string (``text``)."""
    if raw is None:
        return _settings().duplicate_threshold
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    try:
        value = float(raw) if number or (text and isinstance(raw, str)) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 1:
        raise APIError(400, "invalid_parameter", f"{field} must be a number in (0, 1]", field)
    return value


def _limit(raw: Any, field: str, *, text: bool = False) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if text and isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raise APIError(400, "invalid_parameter", f"{field} must be an integer", field) from None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DUPLICATES:
        raise APIError(
            400,
            "invalid_parameter",
            f"{field} must be an integer from 1 to {MAX_DUPLICATES}",
            field,
        )
    return raw


@bp.get("/v1/items/<item_id>/duplicates")
def item_duplicates(item_id: str) -> Response:
    tenant = _tenant()
    threshold = _threshold(request.args.get("threshold"), "threshold", text=True)
    limit = _limit(request.args.get("limit"), "limit", text=True)
    store = _store()
    found = store.retrieve([point_id(_item_id(item_id), tenant)], with_vectors=True)
    if not found:
        raise APIError(404, "item_not_found", f"no item with id {item_id!r}", "id")
    return jsonify(threshold=threshold, **duplicates_of(store, found[0], tenant, threshold, limit))


@bp.post("/v1/duplicates")
@read_only
def many_duplicates() -> Response:
    """The duplicates of up to :data:`MAX_IDS` items at once (ingestion reports)."""
    tenant = _tenant()
    body = json_body()
    ids = unique_ids(json_list(body, "ids", MAX_IDS), "ids", key=None)
    for name in ("threshold", "limit"):
        if name in body and body[name] is None:
            raise APIError(400, "invalid_parameter", f"{name} may be left out, not null", name)
    threshold = _threshold(body.get("threshold"), "threshold")
    limit = _limit(body.get("limit"), "limit")
    store = _store()
    found = {
        item.point_id: item
        for item in store.retrieve([point_id(i, tenant) for i in ids], with_vectors=True)
    }
    items, missing = [], []
    for item_id in ids:
        item = found.get(point_id(item_id, tenant))
        if item is None:
            missing.append(item_id)
        else:
            items.append(duplicates_of(store, item, tenant, threshold, limit))
    return jsonify(threshold=threshold, items=items, missing=missing)


def openapi_paths() -> dict[str, Any]:
    from api.openapi import _json, _json_body, _op, _param

    group: dict[str, Any] = {
        "type": "object",
        "required": ["id", "exact", "near"],
        "properties": {
            "id": {"type": "string"},
            "exact": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                },
            },
            "near": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "score", "embedding_similarity", "color_similarity"],
                    "properties": {
                        "id": {"type": "string"},
                        "score": {"type": "number"},
                        "embedding_similarity": {"type": "number"},
                        "color_similarity": {"type": "number"},
                    },
                },
            },
        },
    }
    threshold = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1}
    limit = {"type": "integer", "minimum": 1, "maximum": MAX_DUPLICATES, "default": DEFAULT_LIMIT}
    single = {**group, "required": [*group["required"], "threshold"]}
    single["properties"] = {**group["properties"], "threshold": {"type": "number"}}
    item_id = {"type": "string", "pattern": f"^{ID_PATTERN}$", "maxLength": MAX_ID_LENGTH}
    return {
        "/v1/items/{item_id}/duplicates": {
            "parameters": [_param("ItemId")],
            "get": _op(
                "the item's exact duplicates (same bytes) and near-duplicates (same photo, "
                "edited), apart from merely similar items",
                {"200": _json(single, "exact and near duplicates, best first")},
                params=[],
                errors=(404, 503),
                tag="duplicates",
            )
            | {
                "parameters": [
                    _param("Tenant"),
                    {"name": "threshold", "in": "query", "schema": threshold},
                    {"name": "limit", "in": "query", "schema": limit},
                ]
            },
        },
        "/v1/duplicates": {
            "post": _op(
                f"the duplicates of up to {MAX_IDS} items",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["threshold", "items", "missing"],
                            "properties": {
                                "threshold": {"type": "number"},
                                "items": {"type": "array", "items": group},
                                "missing": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "one entry per item found; `missing` lists the others",
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
                                "maxItems": MAX_IDS,
                                "uniqueItems": True,
                                "items": item_id,
                            },
                            "threshold": threshold,
                            "limit": limit,
                        },
                    }
                ),
                errors=(415, 503),
                tag="duplicates",
            )
        },
    }
