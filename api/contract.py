"""What the API takes, declared once as pydantic v2 models: every JSON body, query-option
set and form; the validation and the OpenAPI document's schemas both come from them (the
answers are declared in api/responses.py, the routes' table in api/openapi.py).

A body is read with :func:`parse_body`, a query string with :func:`parse_query`; both turn
pydantic's errors into the API's error shape with the same codes as before
(``missing_field``, ``invalid_id``, ``invalid_parameter``) and the field's path
(``context[0].negative``). What depends on the declared catalog schema is marked and filled
in by the document: the ``filter`` object refers to the ``Filter`` component and is read by
:func:`api.params.filters_from_json`; a field of a catalog role (``group_by``, a facet's
``field``) lists the declared fields of that role; the filter query parameters are the
schema's own (api/params.py).

A new query option is a field of its model here, read by its route: two files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
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
    filters_from_args,
    filters_from_json,
    invalid,
    text_search,
)
from api.responses import catalog_ref
from api.thumbnails import DEFAULT_SIZE, SIZES
from lookalike.images import MIN_BOX_SIDE
from lookalike.models import MODELS
from lookalike.schema import ID_PATTERN, MAX_ID_LENGTH, CatalogSchema, InvalidId, validate_id
from lookalike.settings import HEAD_NAME
from lookalike.store import RECOMMEND_STRATEGIES

Model = TypeVar("Model", bound=BaseModel)


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
Filter = Annotated[dict[str, Any], catalog_ref("Filter")]


def catalog_role(role: str) -> WithJsonSchema:
    """A field naming a declared field of ``role``: the document lists them (api/openapi.py)."""
    return WithJsonSchema({"type": "string", "x-catalog-role": role})


GroupBy = Annotated[str, catalog_role("group")]


def _words(value: str) -> str:
    if not value.split():
        raise ValueError("must hold a word")
    return value


# ``q``: a keyword search (api/params.py ``text_search``); the document says what it matches
# in the declared catalog (api/openapi.py ``_search_description``).
SearchText = Annotated[
    str,
    AfterValidator(_words),  # here, so that a batch entry's blank q is named with its path
    Field(
        min_length=1,
        max_length=MAX_SEARCH_TEXT,
        description="only items with this tag, or whose id, name or title holds these words",
        json_schema_extra={"x-catalog-search": True},
    ),
]
SHA256_PATTERN = "^[0-9a-f]{64}$"
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
MAX_BATCH_ITEMS = 256
MAX_DUPLICATE_IDS = 100
MAX_DUPLICATES = 100
MAX_REINDEX_PAGE = 1000
# GET /v1/vectors: a page of 1472-d vectors is ~30 kB of JSON each.
MAX_VECTORS_PAGE = 256


class Body(BaseModel):
    # Unknown fields are refused, and so is null: a field is given or left out (a default
    # of None is not a declared null).
    model_config = ConfigDict(extra="forbid", strict=True)


class PageOptions(Body):
    """The options every similarity query takes in a JSON body."""

    limit: int = Field(10, ge=1, le=MAX_LIMIT, description="results per page (groups)")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="results to skip")
    score_threshold: Number = Field(None, description="leave out results scoring below it")  # type: ignore[assignment]
    filter: Filter = Field(None, description="the catalog's filters")  # type: ignore[arg-type]
    q: SearchText = None  # type: ignore[assignment]


class QueryOptionsBody(PageOptions):
    """...and grouping, for a query answered on its own."""

    group_by: GroupBy = Field(None, description="a declared group field")  # type: ignore[assignment]
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
    group_by: GroupBy = Field(  # type: ignore[assignment]
        None,
        description="at most group_size results per value of this field; `limit` counts groups",
    )
    group_size: int = Field(1, ge=1, le=MAX_GROUP_SIZE, description="results per group")
    diversity: Number = Field(  # type: ignore[assignment]
        None, ge=0, le=1, description="0: plain ranking; towards 1: results unlike each other (MMR)"
    )
    q: SearchText = None  # type: ignore[assignment]


def options_from_query(
    args: MultiDict[str, str], schema: CatalogSchema, *, groups: bool = True
) -> QueryOptions:
    """A query string's options, read by :class:`QueryArgs`, and its catalog filters."""
    opts = parse_query(QueryArgs, args)
    if opts.group_by is not None and not groups:
        raise invalid("group_by", "this query cannot be grouped")
    return _options(schema, opts, filters_from_args(args, schema))


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


def options_from_body(body: PageOptions, schema: CatalogSchema) -> QueryOptions:
    """A validated body's query options (a recommend, discover or batch entry's), its filter
    read through the catalog schema."""
    filters = {} if body.filter is None else filters_from_json(body.filter, schema, "filter")
    return _options(schema, body, filters)


@dataclass(frozen=True)
class QueryOptions:
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None
    # payload field path -> condition, for lookalike.store's `where` (the tenant is added later)
    filters: dict[str, Any] = field(default_factory=dict)
    group_by: str | None = None
    group_size: int = 1
    diversity: float | None = None


def checked_options(schema: CatalogSchema, options: QueryOptions) -> QueryOptions:
    """``options`` (read by their model), checked together and against the catalog."""
    group_by = options.group_by
    if group_by is not None:
        groupable = [f.name for f in schema.with_role("group")]
        if group_by not in groupable:
            raise invalid("group_by", f"group_by must be one of {', '.join(groupable) or '(none)'}")
        if options.offset:
            raise invalid("offset", "grouped results have no offset")
        if options.diversity is not None:
            raise invalid("diversity", "choose group_by or diversity, not both")
    return options


# QueryOptions' fields that a model of this module may declare (with the same name).
_OPTIONS = frozenset(f.name for f in fields(QueryOptions)) - {"filters"}


def _options(schema: CatalogSchema, given: BaseModel, filters: dict[str, Any]) -> QueryOptions:
    """The query options ``given`` declares, by name: a new option is a field of its model
    here and of QueryOptions (this module), read where the query runs (api/queries.py)."""
    values = {name: getattr(given, name) for name in _OPTIONS & set(type(given).model_fields)}
    text = getattr(given, "q", None)  # a keyword search is one more filter
    if text is not None:
        filters = {**filters, **text_search(text, schema)}
    return checked_options(schema, QueryOptions(filters=filters, **values))


def parse_query(model: type[Model], args: MultiDict[str, str]) -> Model:
    """The options ``model`` declares, read from a query string (a list field from every
    value given); the first problem as the API's 400. Parameters the model does not declare
    were refused before (api/openapi.py ``init_query_checks``) or are the catalog's filters."""
    given: dict[str, Any] = {}
    for name, declared in model.model_fields.items():
        if name in args:
            listed = getattr(declared.annotation, "__origin__", None) is list
            given[name] = args.getlist(name) if listed else args[name]
    return parse_body(model, given)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in _TAGS:
            continue  # the union member pydantic tried, not a field
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- query strings


class Options(BaseModel):
    """A query string's options: text, converted to the declared types."""

    model_config = ConfigDict(extra="forbid")


class ItemsArgs(Options):
    limit: int = Field(50, ge=1, le=500, description="page size")
    cursor: str = Field(None, description="`next_cursor` of the previous page")  # type: ignore[assignment]
    sort: Literal["newest"] = Field(
        None,  # type: ignore[arg-type]
        description="`newest`: the most recently ingested first; without it, a stable order",
    )
    q: SearchText = None  # type: ignore[assignment]


FacetLimit = Annotated[
    int, Field(ge=1, le=1000, description="values to return, most frequent first")
]


class FacetsArgs(Options):
    field: Annotated[str, catalog_role("facet")] = Field(  # type: ignore[assignment]
        None, description="a declared facet field (default: the first)"
    )
    limit: FacetLimit = 100


class VectorsArgs(Options):
    field: str = Field(description="a keyword field of the catalog schema (e.g. `category`)")
    cursor: str = Field(None, description="`next_cursor` of the previous page")  # type: ignore[assignment]
    limit: int = Field(100, ge=1, le=MAX_VECTORS_PAGE, description="points per page")
    unlabelled: bool = Field(
        False, description="also the points without a value (`value` null), not `skipped`"
    )


class TagsArgs(Options):
    limit: FacetLimit = 100


class TasksArgs(Options):
    ids: str = Field(
        min_length=1,
        description="task ids, comma-separated (or the parameter repeated), at most 100",
    )


class JobsArgs(Options):
    limit: int = Field(200, ge=1, le=1000, description="latest tasks to report")


class ImageArgs(Options):
    """What lets an ``<img>`` load an item's image without headers (api/auth.py checks it)."""

    tenant: ItemId = Field(None, description="tenant, for an <img> without headers")  # type: ignore[assignment]
    sig: str = Field(  # type: ignore[assignment]
        None,
        max_length=64,
        description="signature of tenant and item id, from an image URL in an API result",
    )
    v: str = Field(None, max_length=64, description="the image's hash prefix (cache busting)")  # type: ignore[assignment]


def _size(value: int) -> int:
    if value not in SIZES:
        raise ValueError(f"must be one of {', '.join(map(str, SIZES))}")
    return value


class ThumbnailArgs(ImageArgs):
    size: Annotated[
        int, AfterValidator(_size), WithJsonSchema({"type": "integer", "enum": list(SIZES)})
    ] = Field(DEFAULT_SIZE, description="pixels")


Threshold = Annotated[
    Number,
    Field(
        gt=0,
        le=1,
        description="the least share of keypoints one similarity transform must explain for "
        "a near-duplicate or variant (default: LOOKALIKE_DUPLICATE_THRESHOLD)",
    ),
]
DuplicatesLimit = Annotated[int, Field(ge=1, le=MAX_DUPLICATES)]


class DuplicatesArgs(Options):
    threshold: Threshold = None  # type: ignore[assignment]
    limit: DuplicatesLimit = 20


# --------------------------------------------------------------------------- other bodies


class DuplicatesBody(Body):
    ids: list[ItemId] = Field(min_length=1, max_length=MAX_DUPLICATE_IDS)
    threshold: Threshold = None  # type: ignore[assignment]
    limit: DuplicatesLimit = 20


class OpenBody(BaseModel):
    """A body whose unknown fields are ignored, as they were before it was declared."""

    model_config = ConfigDict(strict=True)


# An item of a batch: its metadata is checked against the catalog schema alone, and a wrong
# one rejects that item (listed in the answer), not the request: an object to the document.
AnyMetadata = Annotated[
    Any,
    WithJsonSchema(
        {"type": "object", "description": "the item's metadata (a wrong one rejects it alone)"}
    ),
]


class BatchItem(OpenBody):
    id: ItemId
    image_sha256: Sha256
    # Checked against the catalog schema per item (a wrong one is rejected alone).
    metadata: AnyMetadata = None


class BatchItemsBody(OpenBody):
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    job: ItemId = Field(None, description="a label grouping tasks in /v1/jobs")  # type: ignore[assignment]


class MetadataItem(OpenBody):
    id: ItemId
    metadata: AnyMetadata


class MetadataBody(Body):
    # mode first: a wrong mode is said before any item's problem
    mode: Literal["replace", "merge"] = Field(
        "replace", description="replace: the whole metadata; merge: set the fields given"
    )
    items: list[MetadataItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class DeleteBody(OpenBody):
    ids: list[ItemId] = Field(min_length=1, max_length=MAX_BATCH_ITEMS * 4)


class ReindexBody(OpenBody):
    collection: str = Field(description="the catalog's name, as a confirmation")


class ReindexStartBody(ReindexBody):
    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    head: str = Field(  # type: ignore[assignment]
        None,
        pattern=HEAD_NAME.pattern,
        description="a head trained on this model's vectors (`indexer train-head`), in the "
        "model cache the workers read: the new version is embedded with both. Absent: "
        'none, except that the configured model takes LOOKALIKE_HEAD; "none": the '
        "model's own vectors even then",
    )


class ReindexPageBody(ReindexBody):
    cursor: str | None = None
    limit: int = Field(256, ge=1, le=MAX_REINDEX_PAGE)


class ReindexVerifyBody(ReindexPageBody):
    side: Literal["source", "target"] = "source"


# --------------------------------------------------------------------------- forms


Binary = Annotated[bytes, WithJsonSchema({"type": "string", "format": "binary"})]


class NewItem(BaseModel):
    id: ItemId
    image: Binary
    metadata: str = Field(  # type: ignore[assignment]
        None,
        description="a JSON object: category, brand, price, in_stock, ...",
        examples=['{"category": "shoes", "price": 49.9, "in_stock": true}'],
    )
    job: ItemId = Field(None, description="a label grouping tasks in /v1/jobs")  # type: ignore[assignment]


# A region of an uploaded photo, read by api/params.py ``box_from_form``.
RegionBox = Annotated[
    str,
    Field(
        description="search by this region of the photo alone: x,y,width,height as fractions "
        "of its width and height (0.5,0,0.5,1: its right half); each side at least "
        f"{MIN_BOX_SIDE}, inside the photo",
        examples=["0.5,0,0.5,1"],
    ),
]


class PhotoQuery(BaseModel):
    image: Binary
    positive: str = Field(None, description="liked item ids, comma-separated")  # type: ignore[assignment]
    negative: str = Field(None, description="disliked item ids, comma-separated")  # type: ignore[assignment]
    box: RegionBox = None  # type: ignore[assignment]


class ExplainQuery(BaseModel):
    """POST /v1/explain: a result and its query, an item or an uploaded photo (one of them)."""

    result: ItemId = Field(description="the matching item's id")
    id: ItemId = Field(None, description="the query item's id (or give image)")  # type: ignore[assignment]
    image: Binary = Field(None, description="a query photo (or give id)")  # type: ignore[assignment]
    box: RegionBox = None  # type: ignore[assignment]
