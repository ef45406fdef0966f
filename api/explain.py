"""Explain a match: ``POST /v1/explain`` says which regions of a query (an item, or an
uploaded photo and its region) and of a result carry their similarity, as heatmaps over each
image, and how the score splits over the embedding's parts (worker/model/explain.py).
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from api.auth import read_only
from api.errors import APIError
from api.params import box_from_form, item_id
from api.queries import worker_answer
from api.routes import _get_item, _item_json, _tasks, _tenant, _uploaded_image
from lookalike.tasks import EXPLAIN

bp = Blueprint("explain", __name__)


@bp.post("/v1/explain")
@read_only
def explain() -> Response:
    tenant = _tenant()
    form = request.form
    if "result" not in form:
        raise APIError(400, "missing_field", "result is required (an item id)", "result")
    result_id = item_id(form["result"], "result")
    try:
        result = _get_item(result_id, tenant)
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
        data = _uploaded_image(header_only=True)
        query = {"image_b64": base64.b64encode(data).decode("ascii")}
        echo: dict[str, Any] = {"image": True, "box": _box_json(box)}
    else:
        item = _get_item(item_id(form["id"], "id"), tenant)
        query = {"image_sha256": item.payload["image_sha256"]}
        echo = {"id": item.payload["item_id"]}
    args: tuple[Any, ...] = (query, result.payload["image_sha256"])
    if box is not None:
        args = (*args, list(box))
    try:
        answer = worker_answer(_tasks().send(EXPLAIN, *args), "score", "explain the match")
    except APIError as exc:
        if exc.code != "explain_unavailable":
            raise
        raise APIError(409, exc.code, exc.message) from None
    first, second = answer["images"]
    return jsonify(
        query={**echo, **_image_json(first)},
        result={**_item_json(result.payload), **_image_json(second)},
        score=answer["score"],
        split=answer["split"],
        model_version=answer["model_version"],
    )


def _box_json(box: Any) -> dict[str, float] | None:
    return None if box is None else dict(zip(("x", "y", "width", "height"), box, strict=True))


def _image_json(described: dict[str, Any]) -> dict[str, Any]:
    return {
        "heatmap": f"data:image/png;base64,{described['heatmap_png']}",
        "heat": described["grid"],
        "peak": {"x": described["peak"][0], "y": described["peak"][1]},
    }


def init_app(app: Flask) -> None:
    from api.openapi import register_paths

    app.register_blueprint(bp)
    register_paths(app, openapi_paths())


def openapi_paths() -> dict[str, Any]:
    from api.openapi import _json, _op, _schema

    heat = {
        "heatmap": {
            "type": "string",
            "description": "PNG data URL: the image as the model framed it (a square), tinted "
            "red where it matches the other image",
        },
        "heat": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}},
            "description": "each cell's share of the score (7x7 for 224 px input; the cells "
            "of one image add up to the score, a negative cell pulls the images apart)",
        },
        "peak": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "description": "the centre of the cell with the largest share, as fractions of "
            "the framed square's sides",
        },
    }
    body = {
        "type": "object",
        "required": ["result"],
        "properties": {
            "result": {"type": "string", "description": "the matching item's id"},
            "id": {"type": "string", "description": "the query item's id (or give image)"},
            "image": {"type": "string", "format": "binary", "description": "a query photo"},
            "box": {
                "type": "string",
                "description": "with image: the region searched by (as POST /v1/search)",
            },
        },
    }
    answer = {
        "type": "object",
        "required": ["query", "result", "score", "split", "model_version"],
        "properties": {
            "query": {"type": "object", "properties": heat},
            "result": {"allOf": [_schema("Item"), {"type": "object", "properties": heat}]},
            "score": {
                "type": "number",
                "description": "the cosine similarity of the two images' embeddings",
            },
            "split": {
                "type": "object",
                "nullable": True,
                "additionalProperties": {"type": "number"},
                "description": "the score's parts: `head` (pooled last stage) and, with "
                "multiscale features, `stage6`; they add up to the score. Null with a trained "
                "head or flip averaging, whose scores do not split this way",
            },
            "model_version": {"type": "string"},
        },
    }
    return {
        "/v1/explain": {
            "post": _op(
                "why an item matches a query (an item or a photo): where in each image the "
                "similarity lies, as heatmaps, and how the score splits",
                {"200": _json(answer, "heatmaps and the score's split")},
                body={"required": True, "content": {"multipart/form-data": {"schema": body}}},
                errors=(404, 409, 413, 415, 422, 503),
                tag="queries",
            )
        }
    }
