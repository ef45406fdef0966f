"""The API's operations: each route with the models it takes and answers (api/contract.py,
api/responses.py). The OpenAPI document is built from this table (api/openapi.py), and a
route's query string is checked against it; a test fails when a route is missing here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from api import contract as c
from api import responses as r

# A response: a model (JSON), a media type ("text/html"), or None (no body).
Answer = type[BaseModel] | str | None


@dataclass(frozen=True)
class Op:
    summary: str
    tag: str
    responses: dict[int, tuple[Answer, str]]
    query: type[BaseModel] | None = None
    filters: bool = False  # the catalog's filter parameters (api/params.py)
    body: type[BaseModel] | None = None
    media: str = "application/json"  # the body's
    errors: tuple[int, ...] = ()
    public: bool = False  # no tenant, no key
    extra: dict[str, Any] = field(default_factory=dict)  # raw OpenAPI, for a body no model says


HTML = ("text/html", "HTML page")
SIMILARITY = (404, 415, 503)
REINDEX = (409, 415, 503)


def _reindex(summary: str, body: type[BaseModel] = c.ReindexBody) -> Op:
    return Op(
        summary, "reindex", {200: (r.ReindexStatus, "the versions now")}, body=body, errors=REINDEX
    )


PATHS: dict[str, dict[str, Op]] = {
    "/healthz": {
        "get": Op("liveness", "probes", {200: (r.Health, "the process answers")}, public=True)
    },
    "/readyz": {
        "get": Op(
            "readiness: the vector store and the broker answer, and a worker consumes the query "
            "queue (`serves` says what ingest and search by photo can do)",
            "probes",
            {200: (r.Readiness, "ready"), 503: (r.Readiness, "not ready; `checks` says why")},
            public=True,
        )
    },
    "/metrics": {
        "get": Op(
            "Prometheus metrics (no API key: keep it off the public ingress)",
            "probes",
            {200: ("text/plain", "metrics")},
            public=True,
        )
    },
    "/openapi.json": {
        "get": Op(
            "this document",
            "meta",
            {200: ("application/json", "OpenAPI 3.0 document")},
            public=True,
        )
    },
    "/": {"get": Op("the web gallery", "pages", {200: HTML}, public=True)},
    "/jobs": {"get": Op("the ingestion jobs page", "pages", {200: HTML}, public=True)},
    "/v1/items": {
        "post": Op(
            "add or replace an item: its image is indexed by a worker",
            "items",
            {202: (r.TaskAccepted, "queued for indexing")},
            body=c.NewItem,
            media="multipart/form-data",
            errors=(413, 415, 422),
        ),
        "get": Op(
            "browse the catalog (filtered), a page at a time",
            "items",
            {
                200: (
                    r.ItemPage,
                    "a page of items, in a stable order (of the point ids), or the "
                    "most recently ingested first with sort=newest",
                )
            },
            query=c.ItemsArgs,
            filters=True,
            errors=(503,),
        ),
    },
    "/v1/facets": {
        "get": Op(
            "the values of a declared facet field, with counts, under the filters",
            "items",
            {200: (r.Facets, "values, most frequent first")},
            query=c.FacetsArgs,
            filters=True,
            errors=(503,),
        )
    },
    "/v1/tags": {
        "get": Op(
            "the tags of the items (the classifier's labels and their WordNet parents), with "
            "counts, under the filters: what `q` finds",
            "items",
            {200: (r.Tags, "tags, most frequent first")},
            query=c.TagsArgs,
            filters=True,
            errors=(503,),
        )
    },
    "/v1/schema": {
        "get": Op(
            "the catalog's declared fields: their types and roles (filter, facet, group)",
            "items",
            {200: (r.CatalogSchema, "the declared fields")},
        )
    },
    "/v1/items/{item_id}": {
        "get": Op("one item", "items", {200: (r.Item, "the item")}, errors=(404, 503)),
        "delete": Op(
            "remove an item from the index", "items", {204: (None, "removed")}, errors=(404, 503)
        ),
    },
    "/v1/items/{item_id}/image": {
        "get": Op(
            "the image as uploaded",
            "items",
            {200: ("image/*", "the image")},
            query=c.ImageArgs,
            errors=(404, 503),
        )
    },
    "/v1/items/{item_id}/thumbnail": {
        "get": Op(
            "a WebP thumbnail, made on the first request and kept",
            "items",
            {200: ("image/webp", "the thumbnail")},
            query=c.ThumbnailArgs,
            errors=(404, 503),
        )
    },
    "/v1/items/{item_id}/similar": {
        "get": Op(
            "items that look like this one (by its stored vector), itself excluded",
            "queries",
            {200: (r.QueryResult, "the most similar items")},
            query=c.QueryArgs,
            filters=True,
            errors=(404, 503),
        )
    },
    "/v1/search": {
        "post": Op(
            "items that look like an uploaded photo; with positive/negative item ids, refined "
            "by them (a recommend query)",
            "queries",
            {200: (r.QueryResult, "the most similar items")},
            query=c.QueryArgs,
            filters=True,
            body=c.PhotoQuery,
            media="multipart/form-data",
            errors=(404, 409, 413, 415, 422, 503),
        )
    },
    "/v1/explain": {
        "post": Op(
            "why an item matches a query (an item or a photo): where in each image the "
            "similarity lies, as heatmaps, and how the score splits",
            "queries",
            {200: (r.Explanation, "heatmaps and the score's split")},
            body=c.ExplainQuery,
            media="multipart/form-data",
            errors=(404, 409, 413, 415, 422, 503),
        )
    },
    "/v1/recommend": {
        "post": Op(
            "more like these, not like those (Qdrant's recommend query)",
            "queries",
            {200: (r.QueryResult, "recommended items, examples excluded")},
            body=c.RecommendBody,
            errors=SIMILARITY,
        )
    },
    "/v1/discover": {
        "post": Op(
            "near a target, steered by liked/disliked pairs (Qdrant's discovery query)",
            "queries",
            {200: (r.QueryResult, "discovered items, examples excluded")},
            body=c.DiscoverBody,
            errors=SIMILARITY,
        )
    },
    "/v1/batch": {
        "post": Op(
            "many similar-item or recommend queries in one request",
            "queries",
            {200: (r.BatchResult, "one result (or error) per query")},
            body=c.BatchBody,
            errors=(415, 503),
        )
    },
    "/v1/tasks/{task_id}": {
        "get": Op("an indexing task's status", "jobs", {200: (r.Task, "the task")}, errors=(404,))
    },
    "/v1/tasks": {
        "get": Op(
            "many indexing tasks' statuses in one request",
            "jobs",
            {200: (r.Tasks, "the tasks this tenant knows, and the ids it does not")},
            query=c.TasksArgs,
        )
    },
    "/v1/jobs": {
        "get": Op(
            "the tenant's latest indexing tasks and their progress, per job label",
            "jobs",
            {200: (r.Jobs, "newest first")},
            query=c.JobsArgs,
        )
    },
    "/v1/blobs": {
        "post": Op(
            f"upload up to {c.MAX_BATCH_ITEMS} images in one request, each file part named by "
            "its sha256 (each checked and read through; a bad one is rejected alone)",
            "batches",
            {200: (r.BlobsStored, "the images stored (or already there), and the ones refused")},
            errors=(413, 415),
            extra={
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "format": "binary"},
                        }
                    }
                }
            },
        )
    },
    "/v1/blobs/{sha256}": {
        "put": Op(
            "upload an image by its sha256 (checked, and read through to refuse a bad file)",
            "batches",
            {200: (r.BlobStored, "stored (or already there)")},
            errors=(413, 422),
            extra={
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            },
        )
    },
    "/v1/batches": {
        "post": Op(
            f"index up to {c.MAX_BATCH_ITEMS} items whose images are uploaded, as one task",
            "batches",
            {
                202: (r.BatchAccepted, "queued as one task; `rejected` items were not"),
                200: (r.BatchAccepted, "nothing to queue: every item was rejected"),
            },
            body=c.BatchItemsBody,
            errors=(415, 503),
        )
    },
    "/v1/batches/metadata": {
        "post": Op(
            "replace (or merge) items' metadata without re-embedding them",
            "batches",
            {200: (r.MetadataUpdated, "updated items, and the ones that could not be")},
            body=c.MetadataBody,
            errors=(415, 503),
        )
    },
    "/v1/batches/delete": {
        "post": Op(
            "remove items from the index",
            "batches",
            {200: (r.Deleted, "removed items, and the ids that were not there")},
            body=c.DeleteBody,
            errors=(415, 503),
        )
    },
    "/v1/items/{item_id}/duplicates": {
        "get": Op(
            "the item's exact duplicates (same bytes), near-duplicates (same photo or shot, "
            "edited; verified by matching keypoints) and colour variants (same shot, another "
            "colour), apart from merely similar items",
            "duplicates",
            {200: (r.ItemDuplicates, "exact copies, near-duplicates and variants, best first")},
            query=c.DuplicatesArgs,
            errors=(404, 503),
        )
    },
    "/v1/duplicates": {
        "post": Op(
            f"the duplicates of up to {c.MAX_DUPLICATE_IDS} items",
            "duplicates",
            {200: (r.ManyDuplicates, "one entry per item found; `missing` lists the others")},
            body=c.DuplicatesBody,
            errors=(415, 503),
        )
    },
    "/v1/reindex": {
        "get": Op(
            "the catalog's versions: active, previous (for rollback), next (being built)",
            "reindex",
            {200: (r.ReindexStatus, "versions and their point counts")},
            errors=(503,),
        ),
        "post": Op(
            "start re-embedding the catalog with another model (or resume)",
            "reindex",
            {
                201: (r.ReindexStarted, "a new version is being built"),
                200: (r.ReindexStarted, "this reindex was already in progress"),
            },
            body=c.ReindexStartBody,
            errors=REINDEX,
        ),
    },
    "/v1/vectors": {
        "get": Op(
            "a page of the active version's stored vectors (every tenant) with their value of "
            "a keyword field, to train a head from the catalog's own labels "
            "(`indexer train-head --from-catalog`); a reindex's key rules",
            "reindex",
            {200: (r.VectorPage, "the page's points that have a value, and how many do not")},
            query=c.VectorsArgs,
            errors=(503,),
        )
    },
    "/v1/reindex/batches": {
        "post": Op(
            "queue the re-embedding of one page of the active version",
            "reindex",
            {202: (r.ReindexQueued, "queued"), 200: (r.ReindexQueued, "nothing left on this page")},
            body=c.ReindexPageBody,
            errors=REINDEX,
        )
    },
    "/v1/reindex/verify": {
        "post": Op(
            "compare a page of one side with the other and repair the difference",
            "reindex",
            {
                200: (r.ReindexVerified, "checked; nothing to re-embed"),
                202: (r.ReindexVerified, "checked; re-embedding queued"),
            },
            body=c.ReindexVerifyBody,
            errors=REINDEX,
        )
    },
    "/v1/reindex/switch": {
        "post": _reindex("serve the new version (atomically); keep the old one for rollback")
    },
    "/v1/reindex/rollback": {"post": _reindex("serve the previous version again")},
    "/v1/reindex/commit": {"post": _reindex("drop the previous version (no rollback after this)")},
    "/v1/reindex/abort": {"post": _reindex("drop the version a reindex was building")},
}
