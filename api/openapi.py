"""The API's OpenAPI 3.0 document, served at ``/openapi.json``, built from declarations:
the routes' table (api/paths.py), the models of what each takes and answers
(api/contract.py, api/responses.py, through pydantic's JSON Schema) and the catalog's
declared fields (its filter parameters, the ``Filter`` body, the ``Metadata`` of an item,
the fields a ``group_by`` or a facet may name).

Kept true by tests: one compares its paths and methods with the app's URL map, one checks real
answers against their documented schemas, and schemathesis fuzzes the running app from it.
The document is also each operation's list of query parameters (:func:`init_query_checks`).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import BaseModel

from api.errors import APIError
from api.paths import PATHS, Op
from api.responses import Error
from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    ID_PATTERN,
    MAX_ID_LENGTH,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    CatalogField,
    CatalogSchema,
)

bp = Blueprint("openapi", __name__)

Json = dict[str, Any]


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(served_document(current_app))


def served_document(app: Flask) -> Json:
    """The document of ``app``: the operations of the table that it serves, with its
    catalog's declared fields."""
    served = {re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    return build_spec(app.extensions["lookalike.settings"].catalog, served)


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


# --------------------------------------------------------------------------- the document

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

_ID_SCHEMA: Json = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": f"^{ID_PATTERN}$",
    "example": "lion-1",
}

# The path parameters, by name.
_PATH_PARAMETERS: Json = {
    "item_id": {"name": "item_id", "in": "path", "required": True, "schema": _ID_SCHEMA},
    "task_id": {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    "sha256": {
        "name": "sha256",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def build_spec(
    schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA, served: set[str] | None = None
) -> Json:
    """The document of the operations in api/paths.py (those of ``served`` paths, if given),
    with the catalog's declared fields."""
    catalog = _Catalog(schema)
    paths: Json = {}
    for path, operations in PATHS.items():
        if served is not None and path not in served:
            continue
        item: Json = {
            method: catalog.operation(op, re.findall(r"{([^}]+)}", path))
            for method, op in operations.items()
        }
        paths[path] = item
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
            "parameters": catalog.parameters,
            "schemas": catalog.schemas,
            "responses": {
                name: _json(_ref("schemas", "Error"), description)
                for name, description in _ERROR_RESPONSES.values()
            },
        },
    }


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class _Catalog:
    """Collects the components of one document while its operations are built: the models'
    schemas (as OpenAPI 3.0 reads them, with the catalog's fields put in) and the query
    parameters."""

    def __init__(self, schema: CatalogSchema) -> None:
        self.schema = schema
        self.roles = {role: [f.name for f in schema.with_role(role)] for role in ("group", "facet")}
        self.filters = _filter_components(schema)
        self.parameters: Json = {
            "Tenant": {
                "name": "X-Tenant",
                "in": "header",
                "description": "the catalog to act on (default `default`; a tenant-bound key: "
                "its own)",
                "schema": {**_ID_SCHEMA, "example": "default"},
            },
            **self.filters,
        }
        self.schemas: Json = {
            "Metadata": _metadata_schema(schema),
            "Filter": _filter_schema(schema),
        }
        self.model(Error)

    def model(self, model: type[BaseModel], name: str | None = None) -> Json:
        """A reference to ``model``'s component (``name``, or the class's name), added with
        the models it refers to."""
        name = name or model.__name__
        if name not in self.schemas:
            answer = model.__module__ == "api.responses"
            found = model.model_json_schema(
                ref_template="#/components/schemas/{model}",
                mode="serialization" if answer else "validation",
            )
            defs = found.pop("$defs", {})
            for def_name, def_schema in {name: found, **defs}.items():
                self.schemas.setdefault(def_name, self.openapi(def_schema))
        return _ref("schemas", name)

    def query(self, model: type[BaseModel]) -> list[Json]:
        found = model.model_json_schema()
        required = set(found.get("required", ()))
        refs = []
        for name, prop in found["properties"].items():
            schema = self.openapi(prop)
            param: Json = {
                "name": name,
                "in": "query",
                "schema": schema,
                "description": schema.pop("description", ""),
            }
            if name in required:
                param["required"] = True
            if schema.get("type") == "array":
                param |= {"style": "form", "explode": True}
            key = f"{model.__name__}.{name}"
            self.parameters[key] = param
            refs.append(_ref("parameters", key))
        return refs

    def operation(self, op: Op, path_names: list[str]) -> Json:
        params = [_PATH_PARAMETERS[n] for n in path_names]
        if not op.public:
            params.append(_ref("parameters", "Tenant"))
        if op.query is not None:
            params += self.query(op.query)
        if op.filters:
            params += [_ref("parameters", name) for name in self.filters]
        out: Json = {"summary": op.summary, "tags": [op.tag], "responses": {}}
        if params:
            out["parameters"] = params
        if op.body is not None:
            name = {"application/json": None}.get(op.media, op.body.__name__)
            schema = self.model(op.body, _BODY_NAMES.get(op.body.__name__, name))
            out["requestBody"] = {"required": True, "content": {op.media: {"schema": schema}}}
        elif op.extra:
            out["requestBody"] = {"required": True, **op.extra}
        for status, (answer, description) in op.responses.items():
            if answer is None:
                out["responses"][str(status)] = {"description": description}
            elif isinstance(answer, str):
                out["responses"][str(status)] = {
                    "description": description,
                    "content": {answer: {}},
                }
            else:
                out["responses"][str(status)] = _json(self.model(answer), description)
        if not op.public:
            for status in sorted(set(_V1_ERRORS + op.errors)):
                out["responses"][str(status)] = _ref("responses", _ERROR_RESPONSES[status][0])
            out["security"] = [{"ApiKey": []}, {"Bearer": []}, {}]
        return out

    def openapi(self, schema: Any) -> Any:
        """pydantic's JSON Schema as OpenAPI 3.0 reads it: no titles, no null defaults,
        ``nullable`` for an optional value, a single-value enum for ``const``, and a field of
        a catalog role (api/contract.py ``catalog_role``) as the list of the declared fields
        of that role."""
        if isinstance(schema, list):
            return [self.openapi(s) for s in schema]
        if not isinstance(schema, dict):
            return schema
        options = schema.get("anyOf")
        if options and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            inner = rest[0] if len(rest) == 1 else {"anyOf": rest}
            inner = {"allOf": [inner]} if "$ref" in inner else inner
            return self.openapi({**merged, **inner, "nullable": True})
        out: Json = {}
        for key, value in schema.items():
            if key == "title" or (key == "default" and value is None):
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "x-catalog":
                return _ref("schemas", value)
            elif key == "x-catalog-search":
                continue
            elif key == "x-catalog-role":
                names = self.roles[value]
                out["enum"] = names or [""]
            else:
                out[key] = (
                    value
                    if key in ("enum", "required", "default", "examples")
                    else self.openapi(value)
                )
        if schema.get("x-catalog-search"):
            out["description"] = _search_description(self.schema)
        if "examples" in out:
            out["example"] = out.pop("examples")[0]
        if "$ref" in out:  # OpenAPI 3.0 reads nothing beside a reference
            return {"$ref": out["$ref"]}
        return out


# A request body's component name, where it is not its model's.
_BODY_NAMES = {
    "RecommendBody": "RecommendRequest",
    "DiscoverBody": "DiscoverRequest",
    "BatchBody": "BatchRequest",
}


_JSON_TYPES: dict[str, Json] = {
    "keyword": {"type": "string", "minLength": 1, "maxLength": MAX_KEYWORD_LENGTH},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
}


def _search_description(schema: CatalogSchema) -> str:
    """What ``q`` matches in this catalog (CatalogSchema.text_search_paths)."""
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
