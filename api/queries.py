"""The similarity queries: by item, by photo, by liked and disliked items, and in batches.

Every query runs inside the tenant's items, with the filters applied inside the vector
search; results can be paged (``limit``/``offset``), cut at a ``score_threshold``, grouped
(at most ``group_size`` per category or brand) or diversified (MMR).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import read_only
from api.contract import (
    BatchBody,
    DiscoverBody,
    QueryOptions,
    QueryOptionsBody,
    RecommendBody,
    RecommendEntry,
    SimilarEntry,
    options_from_body,
    options_from_query,
    parse_body,
)
from api.errors import APIError
from api.params import (
    box_from_form,
    ids_from_form,
    invalid,
)
from api.routes import find_item, item_json, uploaded_image
from lookalike.images import Box
from lookalike.schema import CatalogSchema, point_id
from lookalike.store import (
    Discover,
    Diverse,
    Hit,
    Recommend,
    Search,
    SimilarityQuery,
)
from lookalike.task_queues import EMBED_QUERY

bp = Blueprint("queries", __name__)


def _schema() -> CatalogSchema:
    return context.settings().catalog


def _hits_json(hits: list[Hit]) -> list[dict[str, Any]]:
    return [item_json(h.payload, h.score) for h in hits]


def _candidates(opts: QueryOptions) -> int:
    """How many nearest neighbours MMR picks from: a few pages' worth, bounded."""
    return min(max(4 * (opts.limit + opts.offset), 50), 1000)


def _search(query: SimilarityQuery, opts: QueryOptions, exclude_ids: list[str]) -> Search:
    if opts.diversity is not None and isinstance(query, np.ndarray):
        query = Diverse(query, opts.diversity, _candidates(opts))
    return Search(
        query,
        opts.limit,
        where={"tenant": context.tenant(), **opts.filters},
        exclude_ids=exclude_ids,
        offset=opts.offset,
        score_threshold=opts.score_threshold,
    )


def _page(hits: list[Hit], opts: QueryOptions) -> dict[str, Any]:
    full = len(hits) == opts.limit
    return {
        "items": _hits_json(hits),
        "next_offset": opts.offset + opts.limit if full else None,
    }


def _run(query: SimilarityQuery, opts: QueryOptions, exclude_ids: list[str]) -> dict[str, Any]:
    store = context.store()
    if opts.group_by is not None:
        groups = store.query_groups(
            query,
            group_by=f"metadata.{opts.group_by}",
            group_size=opts.group_size,
            limit=opts.limit,
            where={"tenant": context.tenant(), **opts.filters},
            exclude_ids=exclude_ids,
            score_threshold=opts.score_threshold,
        )
        seen: dict[str, Hit] = {}
        for group in groups:
            for hit in group.hits:
                seen.setdefault(hit.point_id, hit)
        ranked = sorted(seen.values(), key=lambda h: -h.score)
        return {
            "items": _hits_json(ranked),
            "groups": [{"key": g.key, "items": _hits_json(g.hits)} for g in groups],
            "next_offset": None,
        }
    (hits,) = store.query_batch([_search(query, opts, exclude_ids)])
    return _page(hits, opts)


def _vectors(**fields: list[str]) -> dict[str, np.ndarray]:
    """The stored vectors of the tenant's items named in ``fields`` (field name -> item ids),
    read in one call; 404 naming the field of the first missing one."""
    tenant = context.tenant()
    wanted = {point_id(i, tenant): i for ids in fields.values() for i in ids}
    found = context.store().retrieve(list(wanted), with_vectors=True) if wanted else []
    vectors = {wanted[f.point_id]: f.vector for f in found if f.vector is not None}
    for field, ids in fields.items():
        for item_id in ids:
            if item_id not in vectors:
                raise APIError(404, "item_not_found", f"no item with id {item_id!r}", field)
    return vectors


@bp.get("/v1/items/<item_id>/similar")
def similar_items(item_id: str) -> Response:
    opts = options_from_query(request.args, _schema())
    item = find_item(context.item_id(item_id), context.tenant(), with_vector=True)
    assert item.vector is not None
    result = _run(item.vector, opts, [item.point_id])
    return jsonify(query={"id": item.payload["item_id"]}, **result)


@bp.post("/v1/search")
@read_only
def search_by_image() -> Response:
    opts = options_from_query(request.args, _schema())
    positive = ids_from_form(request.form.getlist("positive"), "positive")
    negative = ids_from_form(request.form.getlist("negative"), "negative")
    if (positive or negative) and opts.diversity is not None:
        raise invalid("diversity", "diversity applies to a search by the photo alone")
    box = box_from_form(request.form.get("box"))
    examples = _vectors(positive=positive, negative=negative)
    # Only the header here: the worker decodes the photo and reports a corrupt one (422).
    data = uploaded_image(header_only=True)
    image_b64 = base64.b64encode(data).decode("ascii")
    # A region is a third argument only when given: a worker from before regions takes two.
    args = (image_b64,) if box is None else (image_b64, list(box))
    outcome = worker_answer(context.tasks().send(EMBED_QUERY, *args), "vector", "embed the photo")
    vector = np.asarray(outcome["vector"], dtype=np.float32)
    query: SimilarityQuery = vector
    tenant = context.tenant()
    exclude = [point_id(i, tenant) for i in positive + negative]
    if positive or negative:
        query = Recommend(
            [vector, *(examples[i] for i in positive)], [examples[i] for i in negative]
        )
    body = _run(query, opts, exclude)
    return jsonify(
        query={
            "model": outcome["model"],
            "model_version": outcome["model_version"],
            "positive": positive,
            "negative": negative,
            "box": box_json(box),
        },
        **body,
    )


def box_json(box: Box | None) -> dict[str, float] | None:
    """A region as the answers echo it."""
    return None if box is None else dict(zip(("x", "y", "width", "height"), box, strict=True))


def worker_answer(task_id: str, key: str, what: str) -> dict[str, Any]:
    """A query-queue task's answer, waited for inside the request: a dict holding ``key``.
    A photo the worker could not decode is a 422 naming ``image``; no answer in
    LOOKALIKE_QUERY_TIMEOUT_S or a failed task a 503 (``what`` says what was asked)."""
    result = context.tasks().result(task_id)
    try:
        # interval: the embedded default's in-memory result backend is polled, by default
        # every 0.5 s, which was most of a search's latency (Redis notifies, no polling);
        # a look at a dict every millisecond for the few dozen a search takes costs nothing.
        outcome = result.get(
            timeout=context.settings().query_timeout_s, propagate=False, interval=0.001
        )
    except CeleryTimeout:
        raise APIError(
            503, "embedding_timeout", f"no worker could {what} in time; try again"
        ) from None
    finally:
        result.forget()
    if not isinstance(outcome, dict) or key not in outcome:
        error = outcome.get("error") if isinstance(outcome, dict) else None
        if error:
            # A worker's refusal that is not about the photo says its own status (409).
            if error.get("status") == 409:
                raise APIError(409, error["code"], error["message"])
            raise APIError(422, error["code"], error["message"], "image")
        raise APIError(503, "embedding_failed", f"the worker could not {what}")
    return outcome


@bp.post("/v1/recommend")
@read_only
def recommend() -> Response:
    body = parse_body(RecommendBody, context.json_body())
    opts = _body_options(body)
    positive, negative, strategy = body.positive, body.negative, body.strategy
    vectors = _vectors(positive=positive, negative=negative)
    query = Recommend([vectors[i] for i in positive], [vectors[i] for i in negative], strategy)
    tenant = context.tenant()
    exclude = [point_id(i, tenant) for i in positive + negative]
    result = _run(query, opts, exclude)
    return jsonify(
        query={"positive": positive, "negative": negative, "strategy": strategy}, **result
    )


@bp.post("/v1/discover")
@read_only
def discover() -> Response:
    body = parse_body(DiscoverBody, context.json_body())
    opts = _body_options(body)
    target = body.target
    pairs = [(pair.positive, pair.negative) for pair in body.context]
    ids = list(dict.fromkeys([target, *(i for pair in pairs for i in pair)]))
    vectors = _vectors(target=[target], context=ids[1:])
    query = Discover(vectors[target], [(vectors[p], vectors[n]) for p, n in pairs])
    tenant = context.tenant()
    result = _run(query, opts, [point_id(i, tenant) for i in ids])
    steering = [{"positive": p, "negative": n} for p, n in pairs]
    return jsonify(query={"target": target, "context": steering}, **result)


def _body_options(body: QueryOptionsBody) -> QueryOptions:
    """A validated body's query options, its filter read through the catalog schema."""
    return options_from_body(body, _schema())


@bp.post("/v1/batch")
@read_only
def batch() -> Response:
    """Many queries in one request, run as one batch in the vector store. An entry is either
    ``{"id": ...}`` (items like that item) or ``{"positive": [...], "negative": [...]}``; an
    entry naming a missing item gets an error of its own and the others still run."""
    body = parse_body(BatchBody, context.json_body())
    entries = [_batch_entry(entry) for entry in body.queries]
    tenant = context.tenant()
    wanted = {point_id(i, tenant): i for e in entries for i in e["ids"]}
    found = context.store().retrieve(list(wanted), with_vectors=True)
    vectors = {wanted[f.point_id]: f.vector for f in found if f.vector is not None}
    searches: list[Search] = []
    runnable: list[int] = []
    results: list[dict[str, Any]] = []
    for n, entry in enumerate(entries):
        missing = [i for i in entry["ids"] if i not in vectors]
        if missing:
            error = {"code": "item_not_found", "message": f"no item with id {missing[0]!r}"}
            results.append({"query": entry["echo"], "error": error})
            continue
        exclude = [point_id(i, tenant) for i in entry["ids"]]
        if "id" in entry["echo"]:
            query: SimilarityQuery = vectors[entry["echo"]["id"]]
        else:
            query = Recommend(
                [vectors[i] for i in entry["echo"]["positive"]],
                [vectors[i] for i in entry["echo"]["negative"]],
                entry["echo"]["strategy"],
            )
        searches.append(_search(query, entry["options"], exclude))
        runnable.append(n)
        results.append({"query": entry["echo"]})
    answers = context.store().query_batch(searches)
    for n, hits in zip(runnable, answers, strict=True):
        results[n].update(_page(hits, entries[n]["options"]))
    return jsonify(results=results)


def _batch_entry(entry: SimilarEntry | RecommendEntry) -> dict[str, Any]:
    options = options_from_body(entry, _schema())
    if isinstance(entry, SimilarEntry):
        return {
            "ids": [entry.id],
            "echo": {"id": entry.id},
            "options": options,
        }
    return {
        "ids": list(dict.fromkeys(entry.positive + entry.negative)),
        "echo": {
            "positive": entry.positive,
            "negative": entry.negative,
            "strategy": entry.strategy,
        },
        "options": options,
    }
