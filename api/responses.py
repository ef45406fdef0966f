"""What the API answers, declared once as pydantic models: the OpenAPI document's response
schemas come from them (api/openapi.py), and tests/api/test_responses.py checks that real
answers of the main routes match the document, so a route whose answer drifts fails.

The routes build their answers as plain JSON (a model per hit would cost a similarity query
more than its validation does); these models say what that JSON is. Each is ``closed`` (the
document says ``additionalProperties: false``), so a field a route adds without declaring it
here fails the test; an item's ``metadata`` stays open (undeclared fields are returned as
given) and refers to the catalog's ``Metadata`` component.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from lookalike.schema import FIELD_ROLES, FIELD_TYPES
from lookalike.verify import VARIANT_COLOR_DELTA


def catalog_ref(name: str) -> WithJsonSchema:
    """A field documented by a component the catalog schema builds (``Metadata``, ``Filter``;
    api/openapi.py puts the reference in)."""
    return WithJsonSchema({"x-catalog": name})


Metadata = Annotated[dict[str, Any], catalog_ref("Metadata")]
AnyObject = Annotated[dict[str, Any], WithJsonSchema({"type": "object"})]
TaskStatus = Literal["queued", "running", "retrying", "succeeded", "failed"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    code: str
    message: str
    field: str | None = None


class Error(Answer):
    error: ErrorDetail


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    # "ok" or why not, for "ingest" and "search_by_photo" (api/readiness.py).
    serves: dict[str, str] = Field(default_factory=dict)


class Label(Answer):
    name: str
    score: float


class Item(Answer):
    id: str
    tenant: str
    metadata: Metadata
    image_url: str
    thumbnail_url: str
    image_sha256: str | None = None
    model: str | None = None
    model_version: str | None = None
    ingested_at: str | None = None
    # The classifier's (worker/model/tags.py); empty for an item indexed without tags.
    labels: list[Label] = Field(description="the classifier's top ImageNet labels, best first")
    tags: list[str] = Field(
        description="the labels' names and their WordNet parents: what q= matches"
    )


class ScoredItem(Item):
    score: float


class ItemPage(Answer):
    items: list[Item]
    next_cursor: str | None
    total: int


class FacetValue(Answer):
    value: Annotated[Any, WithJsonSchema({})]
    count: int


class Facets(Answer):
    field: str
    values: list[FacetValue]


class TagCount(Answer):
    tag: str
    count: int


class Tags(Answer):
    tags: list[TagCount] = Field(description="most frequent first")


class DeclaredField(Answer):
    type: Literal[FIELD_TYPES]  # type: ignore[valid-type]
    roles: list[Literal[FIELD_ROLES]]  # type: ignore[valid-type]


class CatalogSchema(Answer):
    fields: dict[str, DeclaredField]


class Group(Answer):
    key: str | int
    items: list[ScoredItem]


class QueryResult(Answer):
    query: AnyObject = Field(description="the query, as understood")
    items: list[ScoredItem]
    next_offset: int | None
    groups: list[Group] = Field(None, description="with group_by: the groups, best first")  # type: ignore[arg-type]


class BatchEntryResult(Answer):
    query: AnyObject
    items: list[ScoredItem] = None  # type: ignore[assignment]
    next_offset: int | None = None
    groups: list[Group] = None  # type: ignore[assignment]
    error: ErrorDetail = None  # type: ignore[assignment]


class BatchResult(Answer):
    results: list[BatchEntryResult] = Field(description="one result (or error) per query")


class TaskAccepted(Answer):
    task_id: str
    item_id: str
    status_url: str


class TaskError(Answer):
    code: str
    message: str


class Task(Answer):
    task_id: str
    status: TaskStatus
    items: list[str] = None  # type: ignore[assignment]
    indexed: list[str] = None  # type: ignore[assignment]
    failed: list[AnyObject] = None  # type: ignore[assignment]
    error: TaskError = None  # type: ignore[assignment]


class Tasks(Answer):
    tasks: list[Task]
    not_found: list[str] = Field(description="ids this tenant does not know")


class JobTask(Task):
    job: str | None = None
    submitted_at: str | None = None


class StatusCounts(Answer):
    queued: int
    running: int
    retrying: int
    succeeded: int
    failed: int


class JobSummary(StatusCounts):
    tasks: int


class Job(StatusCounts):
    job: str | None
    tasks: int
    items: int
    items_indexed: int
    items_failed: int
    done: bool
    first_submitted_at: str | None
    last_submitted_at: str | None


class Jobs(Answer):
    tenant: str
    generated_at: str
    summary: JobSummary
    jobs: list[Job]
    tasks: list[JobTask]


# --------------------------------------------------------------------------- catalog jobs


class Refused(Answer):
    code: str
    message: str
    field: str | None = None


class RefusedItem(Refused):
    id: str


class RefusedBlob(Refused):
    sha256: str


class BlobsStored(Answer):
    stored: list[str]
    rejected: list[RefusedBlob]


class BlobStored(Answer):
    sha256: str
    size: int


class BatchAccepted(Answer):
    task_id: str | None
    status_url: str | None
    accepted: list[str]
    rejected: list[RefusedItem]


class MetadataUpdated(Answer):
    updated: list[str]
    failed: list[RefusedItem]


class Deleted(Answer):
    deleted: list[str]
    missing: list[str]


class DuplicateMatch(Answer):
    id: str
    score: float = Field(
        description="share of the smaller keypoint set that one similarity transform explains"
    )
    inliers: int = Field(description="keypoints matched")
    color_difference: float = Field(
        description="how far the pair's colours moved: the 75th percentile of the Lab (a, b) "
        "distance over the matched points and over the two coarse colour grids laid on each "
        f"other, the larger; a variant from {VARIANT_COLOR_DELTA:g} on"
    )
    embedding_similarity: float


class ExactCopy(Answer):
    id: str


class DuplicateGroup(Answer):
    id: str
    verification: Literal["verified", "too_plain", "needs_reindex", "disabled"] = Field(
        description="too_plain: the image has too few keypoints to verify, so it has exact "
        "copies only; needs_reindex: indexed before keypoints were stored (or in an older "
        "keypoint format), exact copies only until `indexer reindex`; disabled: the service "
        "computes no keypoints (LOOKALIKE_DUPLICATE_KEYPOINTS=false), so near-duplicates and "
        "variants are not looked for: exact copies only"
    )
    exact: list[ExactCopy]
    near: list[DuplicateMatch]
    variants: list[DuplicateMatch]
    unverified: int = Field(
        description="look-alike candidates indexed before keypoints were stored: not verified "
        "until `indexer reindex`"
    )


class ItemDuplicates(DuplicateGroup):
    threshold: float


class ManyDuplicates(Answer):
    threshold: float
    items: list[DuplicateGroup]
    missing: list[str]


class VersionName(Answer):
    name: str
    model: str = Field(
        description="what embeds it: the backbone, or `<backbone>-head-<head>` with a head"
    )
    head: str | None = Field(description="the trained head it is embedded with, if any")


class VersionCount(VersionName):
    count: int


class ReindexStatus(Answer):
    collection: str
    active: VersionCount | None
    previous: VersionCount | None
    next: VersionCount | None
    versions: list[VersionName]


class ReindexStarted(ReindexStatus):
    started: bool


class CatalogVector(Answer):
    id: str
    tenant: str
    value: str | None = Field(
        description="the item's value of the requested field (null: none, with `unlabelled`)"
    )
    model: str
    model_version: str = Field(description="the embedder version that made the vector")
    vector: list[float]


class VectorPage(Answer):
    field: str
    version: str | None = Field(description="the active version the vectors are read from")
    items: list[CatalogVector]
    skipped: int = Field(
        description="points of this page with no value for the field (not returned)"
    )
    next_cursor: str | None


class ReindexQueued(Answer):
    task_id: str | None
    status_url: str | None
    count: int
    next_cursor: str | None


class ReindexVerified(Answer):
    checked: int
    requeued: int
    updated: int
    deleted: int
    task_id: str | None
    next_cursor: str | None


# --------------------------------------------------------------------------- explain


class Point(Answer):
    x: float
    y: float


class Region(Point):
    width: float
    height: float


class Heat(Answer):
    """Where in one image the similarity lies (worker/model/match_maps.py)."""

    heatmap: str = Field(
        description="PNG data URL: the image as the model framed it (a square), tinted red "
        "where it matches the other image"
    )
    heat: list[list[float]] = Field(
        description="each cell's share of the score (10x10 for the default 320 px input, 7x7 "
        "for 224 px; the cells of one image add up to the score, a negative cell pulls the "
        "images apart)"
    )
    peak: Point = Field(
        description="the centre of the cell with the largest share, as fractions of the "
        "framed square's sides"
    )


class ExplainedQuery(Heat):
    id: str = Field(None, description="the query item's id")  # type: ignore[assignment]
    image: bool = Field(None, description="the query was an uploaded photo")  # type: ignore[assignment]
    box: Region | None = Field(None, description="with image: the region searched by")


class ExplainedItem(Item, Heat):
    pass


class Explanation(Answer):
    query: ExplainedQuery
    result: ExplainedItem
    score: float = Field(description="the cosine similarity of the two images' embeddings")
    split: dict[str, float] | None = Field(
        description="the score's parts: `head` (pooled last stage) and, with multiscale "
        "features, `stage6`; they add up to the score. Null with a trained head or flip "
        "averaging, whose scores do not split this way"
    )
    model_version: str
