"""Request bodies declared once, as pydantic v2 models: the validation and the OpenAPI
document's schema both come from the model.

A body is read with :func:`parse_body`, which turns pydantic's errors into the API's error
shape with the same codes as before (``missing_field``, ``invalid_id``,
``invalid_parameter``) and the field's path (``context[0].negative``). The catalog's
``filter`` object depends on the declared schema, so a model holds it as a plain object and
the route reads it with :func:`api.params.filters_from_json`; the document refers to the
schema-driven ``Filter`` component (api/openapi.py).

So far the JSON bodies of ``POST /v1/recommend``, ``/v1/discover`` and ``/v1/batch`` are
declared here;
the other routes still read their input by hand (api/params.py, api/batches.py) and are
documented in api/openapi.py.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import MultiDict

from api.errors import APIError
from api.params import (
    MAX_BATCH,
    MAX_EXAMPLES,
    MAX_GROUP_SIZE,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_SEARCH_TEXT,
    QueryOptions,
    checked_options,
    filters_from_args,
    invalid,
    text_search,
)
from lookalike.schema import ID_PATTERN, MAX_ID_LENGTH, CatalogSchema, InvalidId, validate_id
from lookalike.store import RECOMMEND_STRATEGIES

Model = TypeVar("Model", bound=BaseModel)

TEXT_SEARCH = (
    "only items with this tag (the classifier's labels and their WordNet parents: `shoe` "
    "finds sandals), or whose id holds these words, or whose name or title has words "
    "starting with them"
)


def _item_id(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_id", "must hold item ids (strings)")
    try:
        return validate_id(value, "the id")
    except InvalidId as exc:
        raise PydanticCustomError("invalid_id", str(exc)) from None


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


# validate_id checks the id; the document says the same in JSON Schema.
ItemId = Annotated[
    str,
    BeforeValidator(_item_id),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": f"^{ID_PATTERN}$"}
    ),
]
Number = Annotated[float, AfterValidator(_finite)]


class Body(BaseModel):
    # Unknown fields are refused, and so is null: a field is given or left out (a default
    # of None is not a declared null).
    model_config = ConfigDict(extra="forbid", strict=True)


class PageOptions(Body):
    """The options every similarity query takes in a JSON body."""

    limit: int = Field(10, ge=1, le=MAX_LIMIT, description="results per page (groups)")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="results to skip")
    score_threshold: Number = Field(None, description="leave out results scoring below it")  # type: ignore[assignment]
    filter: dict[str, Any] = Field(None, description="the catalog's filters")  # type: ignore[arg-type]
    q: str = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_SEARCH_TEXT, description=TEXT_SEARCH
    )


class QueryOptionsBody(PageOptions):
    """...and grouping, for a query answered on its own."""

    group_by: str = Field(None, description="a declared group field")  # type: ignore[assignment]
    group_size: int = Field(1, ge=1, le=MAX_GROUP_SIZE, description="results per group")


class RecommendBody(QueryOptionsBody):
    positive: list[ItemId] = Field(min_length=1, max_length=MAX_EXAMPLES)
    negative: list[ItemId] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    strategy: Literal[RECOMMEND_STRATEGIES] = "best_score"  # type: ignore[valid-type]


class SimilarEntry(PageOptions):
    """A /v1/batch entry: items like this one."""

    id: ItemId
    diversity: Number = Field(None, ge=0, le=1, description="MMR: 0 plain, towards 1 varied")  # type: ignore[assignment]


class RecommendEntry(PageOptions):
    """A /v1/batch entry: more like ``positive``, less like ``negative``."""

    positive: list[ItemId] = Field(min_length=1, max_length=MAX_EXAMPLES)
    negative: list[ItemId] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    strategy: Literal[RECOMMEND_STRATEGIES] = "best_score"  # type: ignore[valid-type]


def _entry_kind(value: Any) -> str:
    # An entry naming positive examples is a recommend query; any other is read as a
    # similar-item query (so an entry with neither is told that id is missing).
    return "recommend" if isinstance(value, dict) and "positive" in value else "similar"


BatchEntry = Annotated[
    Annotated[SimilarEntry, Tag("similar")] | Annotated[RecommendEntry, Tag("recommend")],
    Discriminator(_entry_kind),
]


class BatchBody(Body):
    queries: list[BatchEntry] = Field(min_length=1, max_length=MAX_BATCH)


_TAGS = frozenset({"similar", "recommend"})


class ContextPair(Body):
    positive: ItemId
    negative: ItemId


class DiscoverBody(QueryOptionsBody):
    target: ItemId
    context: list[ContextPair] = Field(min_length=1, max_length=MAX_EXAMPLES)


class QueryArgs(BaseModel):
    """The options of a similarity query in a query string (``GET .../similar``,
    ``POST /v1/search``): text, converted to the declared types. The catalog's filters are
    read apart (api/params.py ``filters_from_args``)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(
        10, ge=1, le=MAX_LIMIT, description="results per page (with group_by: groups)"
    )
    offset: int = Field(
        0,
        ge=0,
        le=MAX_OFFSET,
        description="results to skip (not with group_by); `next_offset` gives the next page's",
    )
    score_threshold: Number = Field(None, description="leave out results scoring below this")  # type: ignore[assignment]
    group_by: str = Field(  # type: ignore[assignment]
        None,
        description="at most group_size results per value of this field; `limit` counts groups",
    )
    group_size: int = Field(1, ge=1, le=MAX_GROUP_SIZE, description="results per group")
    diversity: Number = Field(  # type: ignore[assignment]
        None, ge=0, le=1, description="0: plain ranking; towards 1: results unlike each other (MMR)"
    )
    q: str = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_SEARCH_TEXT, description=TEXT_SEARCH
    )


# The document's component name of each query option.
QUERY_PARAMETERS = {
    "limit": "Limit",
    "offset": "Offset",
    "score_threshold": "ScoreThreshold",
    "group_by": "GroupBy",
    "group_size": "GroupSize",
    "diversity": "Diversity",
    "q": "TextSearch",
}


def options_from_query(
    args: MultiDict[str, str], schema: CatalogSchema, *, groups: bool = True
) -> QueryOptions:
    """A query string's options, read by :class:`QueryArgs`, and its catalog filters."""
    given = {name: args[name] for name in QueryArgs.model_fields if name in args}
    opts = parse_body(QueryArgs, given)
    if opts.group_by is not None and not groups:
        raise invalid("group_by", "this query cannot be grouped")
    filters = filters_from_args(args, schema)
    if opts.q is not None:
        filters.update(text_search(opts.q, schema))
    return checked_options(
        schema,
        opts.limit,
        opts.offset,
        opts.score_threshold,
        filters,
        opts.group_by,
        opts.group_size,
        opts.diversity,
    )


def query_parameter_components(group_by: list[str]) -> dict[str, Any]:
    """The document's query parameters of :class:`QueryArgs`, from the model."""
    properties = QueryArgs.model_json_schema()["properties"]
    components = {}
    for name, component in QUERY_PARAMETERS.items():
        schema = _openapi(properties[name])
        description = schema.pop("description", "")
        if name == "group_by":
            schema["enum"] = group_by or [""]
        components[component] = {
            "name": name,
            "in": "query",
            "schema": schema,
            "description": description,
        }
    return components


# The document's name of each declared body.
BODIES: dict[str, type[BaseModel]] = {
    "RecommendRequest": RecommendBody,
    "DiscoverRequest": DiscoverBody,
    "BatchRequest": BatchBody,
}


def parse_body(model: type[Model], body: Any) -> Model:
    """``body`` validated by ``model``; the first problem as the API's 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = _path(error["loc"]) or "body"
        kind = error["type"]
        if kind == "missing":
            raise APIError(400, "missing_field", f"{field} is required", field) from None
        if kind == "invalid_id":
            raise APIError(400, "invalid_id", f"{field}: {error['msg']}", field) from None
        if kind == "extra_forbidden":
            raise APIError(400, "invalid_parameter", f"unknown field {field}", field) from None
        message = error["msg"].removeprefix("Value error, ")
        if error.get("input") is None and kind != "model_type":
            message = "must not be null (leave it out)"
        raise APIError(400, "invalid_parameter", f"{field}: {message}", field) from None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in _TAGS:
            continue  # the union member pydantic tried, not a field
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def openapi_schemas(filter_ref: dict[str, Any], group_by: list[str]) -> dict[str, Any]:
    """The bodies' schemas for the document's components (OpenAPI 3.0 JSON Schema): each
    model's, with the catalog's Filter and group_by values put in."""
    schemas: dict[str, Any] = {}
    for name, model in BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found = {name: schema, **schema.pop("$defs", {})}
        for found_name, found_schema in found.items():
            properties = found_schema.get("properties", {})
            if "filter" in properties:
                properties["filter"] = dict(filter_ref)
            if "group_by" in properties:
                properties["group_by"] = {"type": "string", "enum": group_by or [""]}
            schemas[found_name] = _openapi(found_schema)
    return schemas


def _openapi(schema: Any) -> Any:
    """pydantic's JSON Schema as OpenAPI 3.0 reads it: no titles, no null defaults,
    ``additionalProperties: false`` kept, a single-value enum for ``const``."""
    if isinstance(schema, list):
        return [_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        out[key] = value if key in ("enum", "required", "default") else _openapi(value)
    return out
