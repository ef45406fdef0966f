"""Explain a match: ``POST /v1/explain`` says which regions of a query (an item, or an
uploaded photo and its region) and of a result carry their similarity, as heatmaps over each
image, and how the score splits over the embedding's parts (worker/model/match_maps.py). What it
takes and answers: api/contract.py ``ExplainQuery``, api/responses.py ``Explanation``.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import read_only
from api.errors import APIError
from api.params import box_from_form
from api.queries import box_json, worker_answer
from api.routes import find_item, item_json, uploaded_image
from lookalike.task_queues import EXPLAIN

bp = Blueprint("explain", __name__)


@bp.post("/v1/explain")
@read_only
def explain() -> Response:
    tenant = context.tenant()
    form = request.form
    if "result" not in form:
        raise APIError(400, "missing_field", "result is required (an item id)", "result")
    result_id = context.item_id(form["result"], "result")
    try:
        result = find_item(result_id, tenant)
    except APIError as exc:
        raise APIError(exc.status, exc.code, exc.message, "result") from None
    has_photo = "image" in request.files
    if ("id" in form) == has_photo:
        raise APIError(
            400, "missing_field", "give the query as an item id or as an image, one of them", "id"
        )
    box = box_from_form(form.get("box"))
    if box is not None and not has_photo:
        raise APIError(400, "invalid_parameter", "a box is a region of an uploaded image", "box")
    query: dict[str, Any]
    if has_photo:
        data = uploaded_image(header_only=True)
        query = {"image_b64": base64.b64encode(data).decode("ascii")}
        echo: dict[str, Any] = {"image": True, "box": box_json(box)}
    else:
        item = find_item(context.item_id(form["id"], "id"), tenant)
        query = {"image_sha256": item.payload["image_sha256"]}
        echo = {"id": item.payload["item_id"]}
    args: tuple[Any, ...] = (query, result.payload["image_sha256"])
    if box is not None:
        args = (*args, list(box))
    try:
        answer = worker_answer(context.tasks().send(EXPLAIN, *args), "score", "explain the match")
    except APIError as exc:
        if exc.code != "explain_unavailable":
            raise
        raise APIError(409, exc.code, exc.message) from None
    first, second = answer["images"]
    return jsonify(
        query={**echo, **_image_json(first)},
        result={**item_json(result.payload), **_image_json(second)},
        score=answer["score"],
        split=answer["split"],
        model_version=answer["model_version"],
    )


def _image_json(described: dict[str, Any]) -> dict[str, Any]:
    return {
        "heatmap": f"data:image/png;base64,{described['heatmap_png']}",
        "heat": described["grid"],
        "peak": {"x": described["peak"][0], "y": described["peak"][1]},
    }
