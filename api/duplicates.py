"""Duplicates of an item, kept apart from "similar" items.

* **exact**: another item of the tenant with the very same image bytes (same sha256);
* **near**: the same photo or shot, edited (cropped, rescaled, recompressed, slightly
  rotated, retouched, watermarked, padded): its keypoints match the item's under one
  similarity transform (lookalike/verify.py) with a score reaching the threshold
  (``LOOKALIKE_DUPLICATE_THRESHOLD``, or ``threshold`` in the request);
* **variants**: the same shot in another colour (verified like a near-duplicate, but the
  matched points changed colour): "also in red", not a duplicate.

Candidates come from the vector index (the nearest neighbours above an embedding-similarity
floor; for multiscale vectors, a search by their pooled head alone:
lookalike.duplicates.candidate_query), then each is verified with both items' stored
keypoints: no image is decoded. ``verification`` says what could be checked: ``verified``;
``too_plain`` (the item's image has too few keypoints: it has no near-duplicates or variants,
only exact copies); ``needs_reindex`` (indexed before keypoints were stored: nothing but exact
copies is reported until ``indexer reindex``); ``disabled`` (the service computes no keypoints,
``LOOKALIKE_DUPLICATE_KEYPOINTS=false``: exact copies only, for every item). Candidates indexed
before keypoints existed are counted in ``unverified``, never guessed.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import read_only
from api.batches import json_body, json_list, unique_ids
from api.errors import APIError
from api.routes import _item_id, _settings, _store, _tenant
from lookalike import verify
from lookalike.duplicates import candidate_query
from lookalike.schema import ID_PATTERN, MAX_ID_LENGTH, point_id
from lookalike.store import StoredItem, VectorStore

bp = Blueprint("duplicates", __name__)

MAX_IDS = 100
MAX_DUPLICATES = 100
DEFAULT_LIMIT = 20
# Nearest neighbours verified per item, at least (about 0.2 ms each).
CANDIDATES = 50


def duplicates_of(
    store: VectorStore,
    item: StoredItem,
    tenant: str,
    threshold: float,
    limit: int,
    *,
    keypoints: bool = True,
) -> dict[str, Any]:
    """``keypoints``: whether the service computes keypoints (LOOKALIKE_DUPLICATE_KEYPOINTS);
    without them nothing but exact copies is looked for, even where older points still hold
    some: the answer must not depend on when an item happened to be indexed."""
    assert item.vector is not None
    sha = item.payload.get("image_sha256")
    exact: list[str] = []
    if isinstance(sha, str):
        same, _ = store.scroll(limit=limit + 1, where={"tenant": tenant, "image_sha256": sha})
        exact = [s.payload["item_id"] for s in same if s.point_id != item.point_id][:limit]
    found: dict[str, list[dict[str, Any]]] = {"near": [], "variant": []}
    unverified = 0
    mine = verify.decode(item.payload.get(verify.KEYPOINTS_FIELD))
    if not keypoints:
        state = "disabled"
    elif mine is None:
        state = "needs_reindex"
    elif not mine.verifiable:
        state = "too_plain"
    else:
        state = "verified"
        query = candidate_query(item.vector, item.payload.get("model"))
        hits = store.search(
            query.vector,
            limit=max(CANDIDATES, limit),
            where={"tenant": tenant},
            exclude_ids=[item.point_id, *(point_id(e, tenant) for e in exact)],
            score_threshold=query.score_threshold(verify.CANDIDATE_FLOOR),
            with_internal=True,  # the candidates' keypoints
        )
        for hit in hits:
            other = verify.decode(hit.payload.get(verify.KEYPOINTS_FIELD))
            if other is None:
                unverified += 1
                continue
            verdict = verify.verify(mine, other)
            relation = verdict.relation(threshold)
            if relation is not None:
                found[relation].append(
                    {
                        "id": hit.payload["item_id"],
                        "score": round(verdict.score, 4),
                        "inliers": verdict.inliers,
                        "color_difference": round(verdict.color_delta, 1),
                        "embedding_similarity": round(query.similarity(hit.score), 4),
                    }
                )
    for entries in found.values():
        entries.sort(key=lambda n: -n["score"])
    return {
        "id": item.payload["item_id"],
        "verification": state,
        "exact": [{"id": e} for e in exact],
        "near": found["near"][:limit],
        "variants": found["variant"][:limit],
        "unverified": unverified,
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
    keypoints = _settings().duplicate_keypoints
    return jsonify(
        threshold=threshold,
        **duplicates_of(store, found[0], tenant, threshold, limit, keypoints=keypoints),
    )


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
    keypoints = _settings().duplicate_keypoints
    items, missing = [], []
    for item_id in ids:
        item = found.get(point_id(item_id, tenant))
        if item is None:
            missing.append(item_id)
        else:
            items.append(duplicates_of(store, item, tenant, threshold, limit, keypoints=keypoints))
    return jsonify(threshold=threshold, items=items, missing=missing)


def openapi_paths() -> dict[str, Any]:
    from api.openapi import _json, _json_body, _op, _param

    match = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "score", "inliers", "color_difference", "embedding_similarity"],
            "properties": {
                "id": {"type": "string"},
                "score": {
                    "type": "number",
                    "description": "share of the smaller keypoint set that one similarity "
                    "transform explains",
                },
                "inliers": {"type": "integer", "description": "keypoints matched"},
                "color_difference": {
                    "type": "number",
                    "description": "how far the pair's colours moved: the 75th percentile of "
                    "the Lab (a, b) distance over the matched points and over the two coarse "
                    "colour grids laid on each other, the larger; a variant from "
                    f"{verify.VARIANT_COLOR_DELTA:g} on",
                },
                "embedding_similarity": {"type": "number"},
            },
        },
    }
    group: dict[str, Any] = {
        "type": "object",
        "required": ["id", "verification", "exact", "near", "variants", "unverified"],
        "properties": {
            "id": {"type": "string"},
            "verification": {
                "type": "string",
                "enum": ["verified", "too_plain", "needs_reindex", "disabled"],
                "description": "too_plain: the image has too few keypoints to verify, so it "
                "has exact copies only; needs_reindex: indexed before keypoints were stored, "
                "exact copies only until `indexer reindex`; disabled: the service computes "
                "no keypoints (LOOKALIKE_DUPLICATE_KEYPOINTS=false), so near-duplicates and "
                "variants are not looked for: exact copies only",
            },
            "exact": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                },
            },
            "near": match,
            "variants": match,
            "unverified": {
                "type": "integer",
                "description": "look-alike candidates indexed before keypoints were stored: "
                "not verified until `indexer reindex`",
            },
        },
    }
    threshold = {
        "type": "number",
        "exclusiveMinimum": True,
        "minimum": 0,
        "maximum": 1,
        "description": "the least share of keypoints one similarity transform must explain "
        "for a near-duplicate or variant (default: LOOKALIKE_DUPLICATE_THRESHOLD)",
    }
    limit = {"type": "integer", "minimum": 1, "maximum": MAX_DUPLICATES, "default": DEFAULT_LIMIT}
    single = {**group, "required": [*group["required"], "threshold"]}
    single["properties"] = {**group["properties"], "threshold": {"type": "number"}}
    item_id = {"type": "string", "pattern": f"^{ID_PATTERN}$", "maxLength": MAX_ID_LENGTH}
    return {
        "/v1/items/{item_id}/duplicates": {
            "parameters": [_param("ItemId")],
            "get": _op(
                "the item's exact duplicates (same bytes), near-duplicates (same photo or "
                "shot, edited; verified by matching keypoints) and colour variants (same "
                "shot, another colour), apart from merely similar items",
                {"200": _json(single, "exact copies, near-duplicates and variants, best first")},
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
