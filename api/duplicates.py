"""Duplicates of an item, kept apart from "similar" items.

* **exact**: another item of the tenant with the very same image bytes (same sha256);
* **near**: the same photo or shot, edited (cropped, rescaled, recompressed, slightly
  rotated, retouched, watermarked, padded): its keypoints match the item's under one
  similarity transform (lookalike/verify.py) with a score reaching the threshold
  (``LOOKALIKE_DUPLICATE_THRESHOLD``, or ``threshold`` in the request) and the two stored
  thumbnails agree under it, or, where the keypoints fall short, the thumbnails agree
  closely under the transform their own pixels give;
* **variants**: the same shot in another colour (verified like a near-duplicate, but the
  matched points changed colour): "also in red", not a duplicate.

Candidates come from the vector index (the nearest neighbours above an embedding-similarity
floor, which depends on the model's pooling: lookalike.duplicate_candidates.candidate_floor;
for multiscale vectors, a search by their pooled head alone:
lookalike.duplicate_candidates.candidate_query), then each is verified with both items' stored
keypoints: no image is decoded. ``verification`` says what could be checked: ``verified``;
``too_plain`` (the item's image has too few keypoints: it has no near-duplicates or variants,
only exact copies); ``needs_reindex`` (indexed before keypoints were stored, or in an older
keypoint format, lookalike.verify.FORMAT: nothing but exact copies is reported until
``indexer reindex``); ``disabled`` (the service computes no keypoints,
``LOOKALIKE_DUPLICATE_KEYPOINTS=false``: exact copies only, for every item). Candidates
in the same state are counted in ``unverified``, never guessed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import read_only
from api.contract import DuplicatesArgs, DuplicatesBody, parse_body, parse_query
from api.errors import APIError
from lookalike import verify
from lookalike.duplicate_candidates import candidate_floor, candidate_query
from lookalike.schema import point_id
from lookalike.store import StoredItem, VectorStore

bp = Blueprint("duplicates", __name__)

# Nearest neighbours verified per item, at least (about 0.2 ms each).
CANDIDATES = 50


def duplicates_of(
    store: VectorStore,
    item: StoredItem,
    tenant: str,
    threshold: float,
    limit: int,
    *,
    floor: float,
    keypoints: bool = True,
) -> dict[str, Any]:
    """``floor``: the candidates' least embedding similarity (:func:`service_floor`).
    ``keypoints``: whether the service computes keypoints (LOOKALIKE_DUPLICATE_KEYPOINTS);
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
            score_threshold=query.score_threshold(floor),
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


def service_floor() -> float:
    """The candidate floor for the vectors this service makes (its model and pooling)."""
    settings = context.settings()
    return candidate_floor(settings.model, settings.pooling, settings.head)


@bp.get("/v1/items/<item_id>/duplicates")
def item_duplicates(item_id: str) -> Response:
    tenant = context.tenant()
    args = parse_query(DuplicatesArgs, request.args)
    threshold = context.settings().duplicate_threshold if args.threshold is None else args.threshold
    limit = args.limit
    store = context.store()
    found = store.retrieve([point_id(context.item_id(item_id), tenant)], with_vectors=True)
    if not found:
        raise APIError(404, "item_not_found", f"no item with id {item_id!r}", "id")
    keypoints = context.settings().duplicate_keypoints
    return jsonify(
        threshold=threshold,
        **duplicates_of(
            store, found[0], tenant, threshold, limit, floor=service_floor(), keypoints=keypoints
        ),
    )


@bp.post("/v1/duplicates")
@read_only
def many_duplicates() -> Response:
    """The duplicates of up to :data:`MAX_DUPLICATE_IDS` items at once (ingestion reports)."""
    tenant = context.tenant()
    body = parse_body(DuplicatesBody, context.json_body())
    ids = body.ids
    if len(set(ids)) != len(ids):
        raise APIError(400, "duplicate_id", "an item id appears twice in ids", "ids")
    threshold = context.settings().duplicate_threshold if body.threshold is None else body.threshold
    limit = body.limit
    store = context.store()
    found = {
        item.point_id: item
        for item in store.retrieve([point_id(i, tenant) for i in ids], with_vectors=True)
    }
    keypoints = context.settings().duplicate_keypoints
    floor = service_floor()
    items, missing = [], []
    for item_id in ids:
        item = found.get(point_id(item_id, tenant))
        if item is None:
            missing.append(item_id)
        else:
            items.append(
                duplicates_of(
                    store, item, tenant, threshold, limit, floor=floor, keypoints=keypoints
                )
            )
    return jsonify(threshold=threshold, items=items, missing=missing)
