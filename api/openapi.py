"""The API's OpenAPI 3.0 document, served at ``/openapi.json``.

Written by hand next to the routes, and kept true by tests: one compares its paths and
methods with the app's URL map, and schemathesis fuzzes the running app from it, checking
that no input gets a 5xx and that every answer matches the responses documented here.
Another blueprint documents its own routes by passing their path items to
:func:`register_paths` when it is registered.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from api.contract import openapi_schemas, query_parameter_components
from api.errors import APIError
from api.params import (
    filter_parameters,
)
from api.thumbnails import DEFAULT_SIZE, SIZES
from lookalike.images import MIN_BOX_SIDE
from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    FIELD_ROLES,
    FIELD_TYPES,
    ID_PATTERN,
    MAX_ID_LENGTH,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    CatalogField,
    CatalogSchema,
)

bp = Blueprint("openapi", __name__)

_EXTRA_PATHS = "lookalike.openapi_paths"

Json = dict[str, Any]


def register_paths(app: Flask, paths: Json) -> None:
    """Add path items (``{"/v1/...": {"get": {...}}}``) to the document another blueprint
    serves, so the document stays complete."""
    app.extensions.setdefault(_EXTRA_PATHS, {}).update(paths)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(served_document(current_app))


def served_document(app: Flask) -> Json:
    """The whole document of ``app``: its own routes, the catalog's declared fields, and the
    path items other blueprints registered."""
    doc = build_spec(app.extensions["lookalike.settings"].catalog)
    served = {rule.rule for rule in app.url_map.iter_rules()}
    for path, item in _other_routes().items():
        if path in served:
            doc["paths"][path] = item
    for path, item in app.extensions.get(_EXTRA_PATHS, {}).items():
        doc["paths"].setdefault(path, {}).update(copy.deepcopy(item))
    return doc


# --------------------------------------------------------------------------- query strings

_QUERY_RULES = "lookalike.query_rules"


def init_query_checks(app: Flask) -> None:
    """Refuse a query string the document does not describe: an unknown parameter is a 400
    ``unknown_parameter`` naming it (``?catgory=shoes`` no longer returns the unfiltered
    catalog), a single-valued parameter given twice a 400 ``invalid_parameter``. The
    document is the list of what each operation takes, so a route cannot read a parameter
    the document forgot."""

    @app.before_request
    def _check_query_string() -> None:
        if not request.args or request.url_rule is None:
            return
        rules = app.extensions.get(_QUERY_RULES)
        if rules is None:
            rules = app.extensions[_QUERY_RULES] = _query_rules(app)
        allowed = rules.get((request.url_rule.rule, request.method))
        if allowed is None:
            return  # not an operation of the document (static files)
        for name in request.args:
            repeatable = allowed.get(name)
            if repeatable is None:
                raise APIError(400, "unknown_parameter", f"unknown query parameter {name!r}", name)
            if not repeatable and len(request.args.getlist(name)) > 1:
                raise APIError(400, "invalid_parameter", f"{name} may be given only once", name)


def _query_rules(app: Flask) -> dict[tuple[str, str], dict[str, bool]]:
    """(URL rule, method) -> query parameter name -> whether it may be repeated."""
    doc = served_document(app)
    components = doc["components"]["parameters"]

    def resolved(params: list[Json]) -> list[Json]:
        return [components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in params]

    rules: dict[tuple[str, str], dict[str, bool]] = {}
    for path, item in doc["paths"].items():
        rule = re.sub(r"{([^}]+)}", r"<\1>", path)
        for method, op in item.items():
            if method == "parameters" or "pages" in op.get("tags", ()):
                continue  # an HTML page's query string is the page script's own state
            params = resolved(item.get("parameters", [])) + resolved(op.get("parameters", []))
            rules[(rule, method.upper())] = {
                p["name"]: p["schema"].get("type") == "array" for p in params if p["in"] == "query"
            }
            if method == "get":
                rules[(rule, "HEAD")] = rules[(rule, "GET")]
    return rules


def _other_routes() -> Json:
    """Routes of modules that do not document themselves, documented when the app has them."""
    return {
        "/metrics": {
            "get": _op(
                "Prometheus metrics (no API key: keep it off the public ingress)",
                {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                tag="probes",
                public=True,
            )
        },
    }


# --------------------------------------------------------------------------- building blocks


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Json:
    return _ref("schemas", name)


def _param(name: str) -> Json:
    return _ref("parameters", name)


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> Json:
    """Error responses by status: the shared ones by reference, any other inline."""
    return {
        str(s): _ref("responses", _ERROR_RESPONSES[s][0])
        if s in _ERROR_RESPONSES
        else _json(_schema("Error"), f"error {s}")
        for s in statuses
    }


_ERROR_RESPONSES = {
    400: ("BadRequest", "a parameter or field is invalid (`field` names it)"),
    401: ("Unauthorized", "API keys are configured and the request has none, or a wrong one"),
    403: ("Forbidden", "a read-only key on a write, another tenant's key, or a bad signature"),
    404: ("NotFound", "no such item (in this tenant), task or route"),
    409: ("Conflict", "the request conflicts with the current state (e.g. a job already running)"),
    413: ("PayloadTooLarge", "the upload is larger than LOOKALIKE_MAX_UPLOAD_BYTES"),
    415: ("UnsupportedMediaType", "the body is not JSON"),
    422: ("UnprocessableImage", "the upload is not an image that can be decoded"),
    503: ("Unavailable", "the vector store, the broker or the embedding worker is unavailable"),
}

# Every /v1 operation may answer these: a bad tenant header, no key or a wrong one.
_V1_ERRORS = (400, 401, 403)


def _filter_params(schema: CatalogSchema) -> list[str]:
    """The components of the catalog's filter parameters (lookalike/schema.py)."""
    return [f"Filter_{name}" for f in schema.with_role("filter") for name in filter_parameters(f)]


def _query_params(schema: CatalogSchema) -> list[str]:
    return [
        "Limit",
        "Offset",
        "ScoreThreshold",
        *_filter_params(schema),
        "GroupBy",
        "GroupSize",
        "Diversity",
        "TextSearch",
    ]


_ID_SCHEMA: Json = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": f"^{ID_PATTERN}$",
    "example": "lion-1",
}


def _op(
    summary: str,
    responses: Json,
    *,
    params: tuple[str, ...] | list[str] = (),
    body: Json | None = None,
    errors: tuple[int, ...] = (),
    tag: str,
    public: bool = False,
) -> Json:
    op: Json = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    names = list(params) if public else ["Tenant", *params]
    if names:
        op["parameters"] = [_param(n) for n in names]
    if body is not None:
        op["requestBody"] = body
    if not public:
        op["responses"].update(_errors(*sorted(set(_V1_ERRORS + errors))))
        op["security"] = [{"ApiKey": []}, {"Bearer": []}, {}]
    return op


def _query_page(description: str) -> Json:
    return _json(_schema("QueryResult"), description)


def _json_body(schema: Json) -> Json:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# --------------------------------------------------------------------------- the document


def build_spec(schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA) -> Json:
    """The document, with the catalog's declared fields as filter parameters, facets,
    group_by values and metadata properties."""
    item_path = [_param("ItemId")]
    paths: Json = {
        "/healthz": {
            "get": _op(
                "liveness",
                {"200": _json({"type": "object"}, "the process answers")},
                tag="probes",
                public=True,
            )
        },
        "/readyz": {
            "get": _op(
                "readiness: the vector store and the broker answer, and a worker consumes "
                "the query queue (`serves` says what ingest and search by photo can do)",
                {
                    "200": _json(_schema("Readiness"), "ready"),
                    "503": _json(_schema("Readiness"), "not ready; `checks` says why"),
                },
                tag="probes",
                public=True,
            )
        },
        "/openapi.json": {
            "get": _op(
                "this document",
                {"200": _json({"type": "object"}, "OpenAPI 3.0 document")},
                tag="meta",
                public=True,
            )
        },
        "/": {
            "get": _op(
                "the web gallery",
                {"200": {"description": "HTML page", "content": {"text/html": {}}}},
                tag="pages",
                public=True,
            )
        },
        "/jobs": {
            "get": _op(
                "the ingestion jobs page",
                {"200": {"description": "HTML page", "content": {"text/html": {}}}},
                tag="pages",
                public=True,
            )
        },
        "/v1/items": {
            "post": _op(
                "add or replace an item: its image is indexed by a worker",
                {"202": _json(_schema("TaskAccepted"), "queued for indexing")},
                body={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _schema("NewItem")}},
                },
                errors=(413, 415, 422),
                tag="items",
            ),
            "get": _op(
                "browse the catalog (filtered), a page at a time",
                {
                    "200": _json(
                        _schema("ItemPage"),
                        "a page of items, in a stable order (of the point ids), or the most "
                        "recently ingested first with sort=newest",
                    )
                },
                params=["PageLimit", "Cursor", "ItemSort", "ItemSearch", *_filter_params(schema)],
                errors=(503,),
                tag="items",
            ),
        },
        "/v1/facets": {
            "get": _op(
                "the values of a declared facet field, with counts, under the filters",
                {"200": _json(_schema("Facets"), "values, most frequent first")},
                params=["FacetField", "FacetLimit", *_filter_params(schema)],
                errors=(503,),
                tag="items",
            )
        },
        "/v1/tags": {
            "get": _op(
                "the tags of the items (the classifier's labels and their WordNet parents), "
                "with counts, under the filters: what `q` finds",
                {"200": _json(_schema("Tags"), "tags, most frequent first")},
                params=["FacetLimit", *_filter_params(schema)],
                errors=(503,),
                tag="items",
            )
        },
        "/v1/schema": {
            "get": _op(
                "the catalog's declared fields: their types and roles (filter, facet, group)",
                {"200": _json(_schema("CatalogSchema"), "the declared fields")},
                tag="items",
            )
        },
        "/v1/items/{item_id}": {
            "parameters": item_path,
            "get": _op(
                "one item",
                {"200": _json(_schema("Item"), "the item")},
                errors=(404, 503),
                tag="items",
            ),
            "delete": _op(
                "remove an item from the index",
                {"204": {"description": "removed"}},
                errors=(404, 503),
                tag="items",
            ),
        },
        "/v1/items/{item_id}/image": {
            "parameters": item_path,
            "get": _op(
                "the image as uploaded",
                {"200": {"description": "the image", "content": {"image/*": {}}}},
                params=["ImageTenant", "Signature", "Version"],
                errors=(404, 503),
                tag="items",
            ),
        },
        "/v1/items/{item_id}/thumbnail": {
            "parameters": item_path,
            "get": _op(
                "a WebP thumbnail, made on the first request and kept",
                {"200": {"description": "the thumbnail", "content": {"image/webp": {}}}},
                params=["ThumbnailSize", "ImageTenant", "Signature", "Version"],
                errors=(404, 503),
                tag="items",
            ),
        },
        "/v1/items/{item_id}/similar": {
            "parameters": item_path,
            "get": _op(
                "items that look like this one (by its stored vector), itself excluded",
                {"200": _query_page("the most similar items")},
                params=_query_params(schema),
                errors=(404, 503),
                tag="queries",
            ),
        },
        "/v1/search": {
            "post": _op(
                "items that look like an uploaded photo; with positive/negative item ids, "
                "refined by them (a recommend query)",
                {"200": _query_page("the most similar items")},
                params=_query_params(schema),
                body={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _schema("PhotoQuery")}},
                },
                errors=(404, 413, 415, 422, 503),
                tag="queries",
            )
        },
        "/v1/recommend": {
            "post": _op(
                "more like these, not like those (Qdrant's recommend query)",
                {"200": _query_page("recommended items, examples excluded")},
                body=_json_body(_schema("RecommendRequest")),
                errors=(404, 415, 503),
                tag="queries",
            )
        },
        "/v1/discover": {
            "post": _op(
                "near a target, steered by liked/disliked pairs (Qdrant's discovery query)",
                {"200": _query_page("discovered items, examples excluded")},
                body=_json_body(_schema("DiscoverRequest")),
                errors=(404, 415, 503),
                tag="queries",
            )
        },
        "/v1/batch": {
            "post": _op(
                "many similar-item or recommend queries in one request",
                {"200": _json(_schema("BatchResult"), "one result (or error) per query")},
                body=_json_body(_schema("BatchRequest")),
                errors=(415, 503),
                tag="queries",
            )
        },
        "/v1/tasks/{task_id}": {
            "parameters": [_param("TaskId")],
            "get": _op(
                "an indexing task's status",
                {"200": _json(_schema("Task"), "the task")},
                errors=(404,),
                tag="jobs",
            ),
        },
        "/v1/tasks": {
            "get": _op(
                "many indexing tasks' statuses in one request",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["tasks", "not_found"],
                            "properties": {
                                "tasks": {"type": "array", "items": _schema("Task")},
                                "not_found": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "the tasks this tenant knows, and the ids it does not",
                    )
                },
                params=["TaskIds"],
                tag="jobs",
            )
        },
        "/v1/jobs": {
            "get": _op(
                "the tenant's latest indexing tasks and their progress, per job label",
                {"200": _json(_schema("Jobs"), "newest first")},
                params=["JobsLimit"],
                tag="jobs",
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lookalike",
            "version": "1",
            "description": (
                "Visual similarity search: add catalog images, find the items that look alike. "
                'Every error is `{"error": {"code", "message", "field"?}}`. With API keys '
                "configured, /v1 needs `X-API-Key` or `Authorization: Bearer`; without, none."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
            "parameters": _parameters(schema),
            "schemas": _schemas(schema),
            "responses": {
                name: _json(_schema("Error"), description)
                for name, description in _ERROR_RESPONSES.values()
            },
        },
    }


def _search_description(schema: CatalogSchema) -> str:
    fields = [p.removeprefix("metadata.") for p in schema.text_search_paths()[1:]]
    tags = "items with this tag (GET /v1/tags; `shoe` finds sandals), or "
    if not fields:
        return f"{tags}whose id holds these words"
    return (
        f"{tags}whose id holds these words, or whose {' or '.join(fields)} has words "
        "starting with them"
    )


def _query_param(name: str, schema: Json, description: str, **extra: Any) -> Json:
    return {"name": name, "in": "query", "schema": schema, "description": description, **extra}


_JSON_TYPES: dict[str, Json] = {
    "keyword": {"type": "string", "minLength": 1, "maxLength": MAX_KEYWORD_LENGTH},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
}


def _value_schema(declared: CatalogField) -> Json:
    """A declared field's value in an item's metadata."""
    if declared.type == "keyword_list":
        keyword = _JSON_TYPES["keyword"]
        return {"oneOf": [keyword, {"type": "array", "items": keyword, "maxItems": MAX_KEYWORDS}]}
    return dict(_JSON_TYPES[declared.type])


def _metadata_schema(schema: CatalogSchema) -> Json:
    return {
        "type": "object",
        "description": "the catalog's declared fields (typed, filterable); other fields are "
        "stored and returned as given",
        "properties": {
            f.name: {**_value_schema(f), "nullable": True, "description": f"{f.type}"}
            for f in schema.fields
        },
    }


def _filter_components(schema: CatalogSchema) -> Json:
    """Query parameters for the declared filter fields: repeatable values, ranges, bools."""
    params: Json = {}
    for declared in schema.with_role("filter"):
        name, kind = declared.name, declared.type
        if kind == "bool":
            params[f"Filter_{name}"] = _query_param(name, {"type": "boolean"}, f"{name} is")
        elif declared.matched:
            item = {"type": "integer"} if kind == "integer" else {"type": "string"}
            params[f"Filter_{name}"] = _query_param(
                name,
                {"type": "array", "items": item},
                f"only these {name} values (repeat the parameter or separate with commas)",
                style="form",
                explode=True,
            )
        if declared.ranged:
            bound = _JSON_TYPES[kind] if kind == "datetime" else {"type": "number"}
            for suffix, says in (("min", "at least"), ("max", "at most")):
                params[f"Filter_{name}_{suffix}"] = _query_param(
                    f"{name}_{suffix}", dict(bound), f"{name} {says}"
                )
    return params


def _filter_schema(schema: CatalogSchema) -> Json:
    properties: Json = {}
    for component in _filter_components(schema).values():
        value = dict(component["schema"])
        if value.get("type") == "array":  # one value or several
            item = value["items"]
            if item.get("type") == "string":
                item = _JSON_TYPES["keyword"]
            value = {"oneOf": [item, {"type": "array", "items": item}]}
        properties[component["name"]] = value
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _parameters(schema: CatalogSchema) -> Json:
    facets = [f.name for f in schema.with_role("facet")]
    groups = [f.name for f in schema.with_role("group")]
    return {
        "ItemId": {
            "name": "item_id",
            "in": "path",
            "required": True,
            "schema": _ID_SCHEMA,
        },
        "TaskId": {
            "name": "task_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "TaskIds": {
            "name": "ids",
            "in": "query",
            "required": True,
            "description": "task ids, comma-separated (or the parameter repeated), at most 100",
            "schema": {"type": "string", "minLength": 1},
        },
        "Tenant": {
            "name": "X-Tenant",
            "in": "header",
            "description": "the catalog to act on (default `default`; a tenant-bound key: its own)",
            "schema": {**_ID_SCHEMA, "example": "default"},
        },
        "ImageTenant": _query_param(
            "tenant", _ID_SCHEMA | {"example": "default"}, "tenant, for an <img> without headers"
        ),
        "Signature": _query_param(
            "sig",
            {"type": "string", "maxLength": 64},
            "signature of tenant and item id, from an image URL in an API result",
        ),
        "Version": _query_param(
            "v", {"type": "string", "maxLength": 64}, "the image's hash prefix (cache busting)"
        ),
        "ThumbnailSize": _query_param(
            "size", {"type": "integer", "enum": list(SIZES), "default": DEFAULT_SIZE}, "pixels"
        ),
        **query_parameter_components(groups),
        **_filter_components(schema),
        "PageLimit": _query_param(
            "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"
        ),
        "Cursor": _query_param("cursor", {"type": "string"}, "`next_cursor` of the previous page"),
        "ItemSearch": _query_param(
            "q",
            {"type": "string", "minLength": 1, "maxLength": 200},
            _search_description(schema),
        ),
        "ItemSort": _query_param(
            "sort",
            {"type": "string", "enum": ["newest"]},
            "`newest`: the most recently ingested first; without it, a stable order",
        ),
        "FacetField": _query_param(
            "field",
            {"type": "string", "enum": facets or [""], "default": (facets or [""])[0]},
            "a declared facet field",
        ),
        "FacetLimit": _query_param(
            "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, ""
        ),
        "JobsLimit": _query_param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200},
            "latest tasks to report",
        ),
    }


def _schemas(schema: CatalogSchema) -> Json:
    nullable_string = {"type": "string", "nullable": True}
    item: Json = {
        "type": "object",
        "required": ["id", "tenant", "metadata", "image_url", "thumbnail_url"],
        "properties": {
            "id": {"type": "string"},
            "tenant": {"type": "string"},
            "metadata": _metadata_schema(schema),
            "image_url": {"type": "string"},
            "thumbnail_url": {"type": "string"},
            "image_sha256": nullable_string,
            "model": nullable_string,
            "model_version": nullable_string,
            "ingested_at": nullable_string,
            "labels": {
                "type": "array",
                "description": "the classifier's top ImageNet labels, best first",
                "items": {
                    "type": "object",
                    "required": ["name", "score"],
                    "properties": {"name": {"type": "string"}, "score": {"type": "number"}},
                },
            },
            "tags": {
                "type": "array",
                "description": "the labels' names and their WordNet parents: what q= matches",
                "items": {"type": "string"},
            },
        },
    }
    scored = copy.deepcopy(item)
    scored["required"].append("score")
    scored["properties"]["score"] = {"type": "number"}
    statuses = ["queued", "running", "retrying", "succeeded", "failed"]
    counts = {s: {"type": "integer"} for s in statuses}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                # "ok" or why not, for "ingest" and "search_by_photo" (api/readiness.py).
                "serves": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Item": item,
        "ScoredItem": scored,
        "ItemPage": {
            "type": "object",
            "required": ["items", "next_cursor", "total"],
            "properties": {
                "items": {"type": "array", "items": _schema("Item")},
                "next_cursor": nullable_string,
                "total": {"type": "integer"},
            },
        },
        "Tags": {
            "type": "object",
            "required": ["tags"],
            "properties": {
                "tags": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["tag", "count"],
                        "properties": {"tag": {"type": "string"}, "count": {"type": "integer"}},
                    },
                }
            },
        },
        "Facets": {
            "type": "object",
            "required": ["field", "values"],
            "properties": {
                "field": {"type": "string"},
                "values": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["value", "count"],
                        "properties": {"value": {}, "count": {"type": "integer"}},
                    },
                },
            },
        },
        "Filter": _filter_schema(schema),
        "CatalogSchema": {
            "type": "object",
            "required": ["fields"],
            "properties": {
                "fields": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type", "roles"],
                        "properties": {
                            "type": {"type": "string", "enum": list(FIELD_TYPES)},
                            "roles": {
                                "type": "array",
                                "items": {"type": "string", "enum": list(FIELD_ROLES)},
                            },
                        },
                    },
                }
            },
        },
        "QueryResult": {
            "type": "object",
            "required": ["query", "items", "next_offset"],
            "properties": {
                "query": {"type": "object"},
                "items": {"type": "array", "items": _schema("ScoredItem")},
                "next_offset": {"type": "integer", "nullable": True},
                "groups": {
                    "type": "array",
                    "description": "with group_by: the groups, best first",
                    "items": {
                        "type": "object",
                        "required": ["key", "items"],
                        "properties": {
                            "key": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                            "items": {"type": "array", "items": _schema("ScoredItem")},
                        },
                    },
                },
            },
        },
        "NewItem": {
            "type": "object",
            "required": ["id", "image"],
            "properties": {
                "id": _ID_SCHEMA,
                "image": {"type": "string", "format": "binary"},
                "metadata": {
                    "type": "string",
                    "description": "a JSON object: category, brand, price, in_stock, ...",
                    "example": '{"category": "shoes", "price": 49.9, "in_stock": true}',
                },
                "job": {**_ID_SCHEMA, "description": "a label grouping tasks in /v1/jobs"},
            },
        },
        "PhotoQuery": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary"},
                "positive": {"type": "string", "description": "liked item ids, comma-separated"},
                "negative": {
                    "type": "string",
                    "description": "disliked item ids, comma-separated",
                },
                "box": {
                    "type": "string",
                    "example": "0.5,0,0.5,1",
                    "description": "search by this region of the photo alone: x,y,width,height "
                    "as fractions of its width and height (0.5,0,0.5,1: its right half); "
                    f"each side at least {MIN_BOX_SIDE}, inside the photo",
                },
            },
        },
        **openapi_schemas(_schema("Filter"), [f.name for f in schema.with_role("group")]),
        "BatchResult": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {
                            "query": {"type": "object"},
                            "items": {"type": "array", "items": _schema("ScoredItem")},
                            "next_offset": {"type": "integer", "nullable": True},
                            "error": {"type": "object"},
                        },
                    },
                }
            },
        },
        "TaskAccepted": {
            "type": "object",
            "required": ["task_id", "item_id", "status_url"],
            "properties": {
                "task_id": {"type": "string"},
                "item_id": {"type": "string"},
                "status_url": {"type": "string"},
            },
        },
        "Task": {
            "type": "object",
            "required": ["task_id", "status"],
            "properties": {
                "task_id": {"type": "string"},
                "status": {"type": "string", "enum": statuses},
                "items": {"type": "array", "items": {"type": "string"}},
                "indexed": {"type": "array", "items": {"type": "string"}},
                "failed": {"type": "array", "items": {"type": "object"}},
                "error": {"type": "object"},
            },
        },
        "Jobs": {
            "type": "object",
            "required": ["tenant", "summary", "jobs", "tasks"],
            "properties": {
                "tenant": {"type": "string"},
                "generated_at": {"type": "string"},
                "summary": {
                    "type": "object",
                    "properties": {"tasks": {"type": "integer"}, **counts},
                },
                "jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["job", "tasks", "items", "done"],
                        "properties": {
                            "job": nullable_string,
                            "tasks": {"type": "integer"},
                            "items": {"type": "integer"},
                            "items_indexed": {"type": "integer"},
                            "items_failed": {"type": "integer"},
                            "done": {"type": "boolean"},
                            "first_submitted_at": nullable_string,
                            "last_submitted_at": nullable_string,
                            **counts,
                        },
                    },
                },
                "tasks": {
                    "type": "array",
                    "items": {
                        "allOf": [
                            _schema("Task"),
                            {
                                "type": "object",
                                "properties": {
                                    "job": nullable_string,
                                    "submitted_at": nullable_string,
                                },
                            },
                        ]
                    },
                },
            },
        },
    }
