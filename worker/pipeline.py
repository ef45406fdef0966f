"""What a worker does with a batch of catalog items: decode, embed, upsert.

One bad image fails alone with a recorded reason; its batch-mates are indexed.

Items are embedded with the model of the catalog's active version (its label, see
lookalike/store/), so after a reindex switch new items match the vectors already there.
While a reindex builds the ``next`` version, or while the ``previous`` one is kept for a
rollback, each batch is written there too, embedded with that version's model: neither a
switch nor a rollback loses an item ingested in between.

Catalog images are decoded shrink-on-load (lookalike/images.py ``decode_scaled``): only the
pixels the model needs. A version whose points were decoded in full (indexed before
shrink-on-load) keeps being filled that way, so its vectors stay comparable, until
``indexer reindex`` rebuilds the catalog into a new version; every point records how it was
decoded (``decode``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image

from lookalike.images import (
    DECODE_FIELD,
    DECODE_FULL,
    DECODE_SCALED,
    Box,
    ImageProblem,
    crop_box,
    decode_as,
    decode_image,
    decode_with_larger,
)
from lookalike.models import MODELS
from lookalike.schema import (
    DEFAULT_TENANT,
    KEYPOINTS_FIELD,
    LABELS_FIELD,
    RETIRED_FIELDS,
    TAGS_FIELD,
    InvalidId,
    point_id,
    validate_id,
)
from lookalike.store import StoredItem, VectorStore, Version, versions
from lookalike.verify import SIDE as KEYPOINTS_SIDE
from worker import task_metrics as metrics
from worker.keypoints import keypoint_payload
from worker.model.tags import tag_payloads
from worker.resources import WorkerRuntime

log = logging.getLogger(__name__)

TAG_FIELDS = (TAGS_FIELD, LABELS_FIELD)

# A query photo (JPEG) is decoded at the smallest JPEG scale with both sides at least this
# many times the model's input side.
QUERY_DRAFT_FACTOR = 2


@dataclass
class BatchReport:
    indexed: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def fail(self, item_id: str, code: str, message: str) -> None:
        log.warning("item %r failed: %s: %s", item_id, code, message)
        self.failed.append({"id": item_id, "code": code, "message": message})

    def as_dict(self) -> dict[str, Any]:
        return {"indexed": self.indexed, "failed": self.failed}


@dataclass
class _Decoded:
    item_id: str
    tenant: str
    image: Image.Image
    payload: dict[str, Any]
    decode: str = DECODE_SCALED


def first_point(runtime: WorkerRuntime, version: Version | None) -> dict[str, str] | None:
    """How a catalog version was made, as its first stored point says: its decode mode
    (``DECODE_FIELD``, empty for points from before shrink-on-load) and ``model_version``;
    None while the version is empty. Read once per version name: a version's points are all
    decoded alike and made by one embedder, and a new version (a reindex's) is always
    created empty."""
    name = version.name if version is not None else ""
    known = runtime.first_points.get(name)
    if known is None:
        store = runtime.store.version(name) if version is not None else runtime.store
        points, _ = store.scroll(limit=1)
        if not points:
            return None
        payload = points[0].payload
        known = {key: str(payload.get(key) or "") for key in (DECODE_FIELD, "model_version")}
        runtime.first_points[name] = known
    return known


def decode_mode(runtime: WorkerRuntime, version: Version | None) -> str:
    """How the catalog version's images are decoded: as its points were (``full`` for points
    from before shrink-on-load, which do not say), ``scaled`` for an empty version."""
    first = first_point(runtime, version)
    if first is None:
        return DECODE_SCALED
    return first[DECODE_FIELD] or DECODE_FULL


class ModelMismatch(Exception):
    """The catalog version's stored vectors were made by another embedder than the one this
    worker would use: mixing them would compare vectors of two models."""


def check_stored_model(runtime: WorkerRuntime, version: Version | None, embedder: Any) -> None:
    """Refuse to add to, or query, a catalog version whose vectors another embedder made.

    A worker's embedder comes from its settings (``LOOKALIKE_FEATURES``, ``_INPUT_SIZE``,
    ``_POOLING``, ``_HEAD``, ...); several of them change the vectors but not their size,
    so nothing else would notice a worker started with other settings than the catalog was
    indexed with. Every point records the ``model_version`` that made it, and
    :func:`first_point` tells a version's; an empty version, or points from before versions
    were recorded, are not refused.
    """
    first = first_point(runtime, version)
    stored = first["model_version"] if first is not None else ""
    if stored and stored != embedder.version:
        raise ModelMismatch(
            f"the catalog's vectors were made by {stored}, and this worker makes "
            f"{embedder.version}: start the workers with the settings the catalog was indexed "
            "with, or index it into a new collection (LOOKALIKE_COLLECTION) with these"
        )


def decode_for(
    runtime: WorkerRuntime, data: bytes, mode: str, input_size: int, *, larger_side: int = 0
) -> tuple[Image.Image, Image.Image | None, float]:
    """A catalog image decoded the way ``mode`` says (lookalike/images.py DECODE_*), in a
    child process killed past LOOKALIKE_DECODE_TIMEOUT_S (worker/decoding.py): ImageProblem
    ``decode_timeout``. Returns the image; with ``larger_side``, the picture reduced to that
    many pixels on its longer side from the same decode when it held them (None: it did not,
    decode again: lookalike.images.decode_with_larger); and the CPU seconds the decode took
    in the child (0 when decoded here: the caller's thread time counts it)."""
    max_pixels = runtime.settings.max_image_pixels
    decoder = runtime.decoder
    if decoder is None:
        if larger_side:
            image, larger = decode_with_larger(
                data, mode, max_pixels=max_pixels, input_size=input_size, longer=larger_side
            )
            return image, larger, 0.0
        return decode_as(data, mode, max_pixels=max_pixels, input_size=input_size), None, 0.0
    if larger_side:
        done = decoder.decode_with_larger(
            data, mode, max_pixels=max_pixels, input_size=input_size, longer=larger_side
        )
    else:
        done = decoder.decode_as(data, mode, max_pixels=max_pixels, input_size=input_size)
    return done.image, done.larger, done.cpu_s


def index_items(runtime: WorkerRuntime, items: list[dict[str, Any]]) -> BatchReport:
    report = BatchReport()
    aliases = runtime.store.aliases()
    embedder = embedder_for(runtime, aliases.active)
    try:
        check_stored_model(runtime, aliases.active, embedder)
    except ModelMismatch as exc:
        for raw in items:
            report.fail(str(raw.get("id", "")), "model_mismatch", str(exc))
        metrics.observe_items(0, len(report.failed))
        return report
    mode = decode_mode(runtime, aliases.active)
    decoded: list[_Decoded] = []
    for raw in items:
        item = _decode_item(runtime, raw, report, mode, embedder.input_size)
        if item is not None:
            decoded.append(item)
    if not decoded:
        metrics.observe_items(0, len(report.failed))
        return report
    _keep_stored_metadata(runtime, items, decoded)

    started, cpu = time.perf_counter(), time.thread_time()
    vectors = _embed_isolating_failures(runtime, embedder, decoded, report)
    metrics.observe_stage("embed", time.thread_time() - cpu)
    metrics.observe_embedding(
        "ingest", len(decoded), time.perf_counter() - started, embedder.batch_size
    )
    now = datetime.now(UTC).isoformat()
    points = []
    for item, vector in zip(decoded, vectors, strict=True):
        if vector is None:
            continue
        payload = dict(item.payload)
        payload.update(model=embedder.name, model_version=embedder.version, ingested_at=now)
        payload[DECODE_FIELD] = mode
        points.append(StoredItem(point_id(item.item_id, item.tenant), payload, vector))
    if points:
        # StoreUnavailable propagates: the task retries the whole batch, which is safe because
        # point ids are derived from the items, so a retry overwrites instead of duplicating.
        cpu = time.thread_time()
        runtime.store.upsert(points)
        metrics.observe_stage("upsert", time.thread_time() - cpu)
        report.indexed.extend(p.payload["item_id"] for p in points)
        indexed = set(report.indexed)
        kept = [d for d in decoded if d.item_id in indexed]
        active = aliases.active.name if aliases.active is not None else None
        for version in (aliases.next, aliases.previous):
            if version is not None and version.name != active:
                _write_version(runtime, version, kept, now)
    metrics.observe_items(len(report.indexed), len(report.failed))
    log.info("indexed %d items, %d failed", len(report.indexed), len(report.failed))
    return report


def _keep_stored_metadata(
    runtime: WorkerRuntime, items: list[dict[str, Any]], decoded: list[_Decoded]
) -> None:
    """An item sent without metadata (``None``: a new image for an existing id) keeps the
    metadata stored with it, read now, when its new vector is written; a new item gets none.
    An explicit ``{}`` replaces (lookalike's update semantics, README "The catalog schema")."""
    keep = {
        str(raw.get("id", ""))
        for raw in items
        if isinstance(raw, dict) and raw.get("metadata") is None
    }
    wanted = {point_id(d.item_id, d.tenant): d for d in decoded if d.item_id in keep}
    if not wanted:
        return
    # StoreUnavailable propagates: the task retries, as for the upsert below.
    for stored in runtime.store.retrieve(list(wanted)):
        metadata = stored.payload.get("metadata")
        if isinstance(metadata, dict):
            item = wanted[stored.point_id]
            item.payload = {**item.payload, "metadata": metadata}


def _decode_item(
    runtime: WorkerRuntime, raw: dict[str, Any], report: BatchReport, mode: str, input_size: int
) -> _Decoded | None:
    item_id = str(raw.get("id", ""))
    cpu = time.thread_time()
    try:
        validate_id(item_id, "id")
        tenant = validate_id(str(raw.get("tenant") or DEFAULT_TENANT), "tenant")
        sha = str(raw["image_sha256"])
        data = runtime.blobs.get(sha)
    except InvalidId as exc:
        report.fail(item_id, "invalid_id", str(exc))
        return None
    except (KeyError, ValueError, FileNotFoundError):
        report.fail(item_id, "image_missing", "the item's image is not in the image store")
        return None
    read = time.thread_time()
    metrics.observe_stage("read", read - cpu)
    try:
        image, larger, child_cpu = decode_for(
            runtime,
            data,
            mode,
            input_size,
            # One decode for the model and, when it holds enough pixels, the keypoints.
            larger_side=KEYPOINTS_SIDE if runtime.settings.duplicate_keypoints else 0,
        )
    except ImageProblem as exc:
        metrics.observe_stage("decode", time.thread_time() - read)
        report.fail(item_id, exc.code, exc.message)
        return None
    decoded = time.thread_time()
    metrics.observe_stage("decode", decoded - read + child_cpu)
    keypoints: dict[str, Any] = {}
    if runtime.settings.duplicate_keypoints:
        try:
            # What verifies near-duplicates without decoding the image again
            # (lookalike/verify.py), from more pixels than the model's when shrink-on-load
            # reduced them (worker/keypoints.py).
            keypoints = keypoint_payload(
                data, image, max_pixels=runtime.settings.max_image_pixels, source=larger
            )
        except ImageProblem as exc:
            report.fail(item_id, exc.code, exc.message)
            return None
        finally:
            metrics.observe_stage("keypoints", time.thread_time() - decoded)
    metadata = raw.get("metadata") or {}
    payload = {
        "item_id": item_id,
        "tenant": tenant,
        "image_sha256": sha,
        "metadata": metadata if isinstance(metadata, dict) else {},
        **keypoints,
    }
    return _Decoded(item_id, tenant, image, payload, mode)


def model_of(runtime: WorkerRuntime, version: Version | None) -> versions.VersionModel:
    """The backbone and head that fill a version (lookalike.store.versions.model_of)."""
    return versions.model_of(version, runtime.settings.model, runtime.settings.head)


def embedder_for(runtime: WorkerRuntime, version: Version | None) -> Any:
    chosen = model_of(runtime, version)
    settings = runtime.settings
    if chosen == versions.VersionModel(settings.model, settings.head):
        return runtime.embedder
    from worker.model import get_embedder

    return get_embedder(settings.replace(model=chosen.model, head=chosen.head))


def _write_version(
    runtime: WorkerRuntime, version: Version, decoded: list[_Decoded], now: str
) -> None:
    """Also write a batch into another version, embedded with that version's model."""
    if not decoded:
        return
    embedder = embedder_for(runtime, version)
    mirror = BatchReport()
    mode = decode_mode(runtime, version)
    if any(item.decode != mode for item in decoded):
        # The other version decodes differently (a reindex that moves a catalog to
        # shrink-on-load, or its rollback): its points must be decoded its way.
        again = []
        for item in decoded:
            raw = {**item.payload, "id": item.item_id}
            redone = _decode_item(runtime, raw, mirror, mode, embedder.input_size)
            if redone is not None:
                redone.payload = item.payload
                again.append(redone)
        decoded = again
    vectors = _embed_isolating_failures(runtime, embedder, decoded, mirror)
    points = [
        StoredItem(
            point_id(item.item_id, item.tenant),
            {
                **item.payload,
                "model": embedder.name,
                "model_version": embedder.version,
                "ingested_at": now,
                DECODE_FIELD: mode,
            },
            vector,
        )
        for item, vector in zip(decoded, vectors, strict=True)
        if vector is not None
    ]
    if points:
        runtime.store.version(version.name).upsert(points)


def reindex_items(runtime: WorkerRuntime, target: str, point_ids: list[str]) -> dict[str, Any]:
    """Re-embed stored items into the version ``target`` with its model.

    The payloads are read from the active version now, not from the task's arguments, so a
    metadata change made since the task was queued is not overwritten with an old one; an
    item deleted since is deleted from the target too.
    """
    store = runtime.store
    version = next((v for v in store.versions() if v.name == target), None)
    if version is None:
        return {"indexed": [], "failed": [], "deleted": 0, "error": "no such version"}
    into: VectorStore = store.version(target)
    report = BatchReport()
    found = store.retrieve(point_ids)
    gone = set(point_ids) - {item.point_id for item in found}
    if gone:
        into.delete(sorted(gone))
    embedder = embedder_for(runtime, version)
    mode = decode_mode(runtime, version)
    decoded: list[_Decoded] = []
    for stored in found:
        raw = {**stored.payload, "id": stored.payload.get("item_id", "")}
        item = _decode_item(runtime, raw, report, mode, embedder.input_size)
        if item is not None:
            # Keep everything the payload holds (ingest time included) but the retired
            # fields; the vector and the keypoints change (none when they are turned off).
            dropped = (*RETIRED_FIELDS, KEYPOINTS_FIELD)
            kept = {k: v for k, v in stored.payload.items() if k not in dropped}
            item.payload = {**kept, **item.payload}
            decoded.append(item)
    started = time.perf_counter()
    vectors = _embed_isolating_failures(runtime, embedder, decoded, report)
    metrics.observe_embedding(
        "ingest", len(decoded), time.perf_counter() - started, embedder.batch_size
    )
    points = [
        StoredItem(
            point_id(item.item_id, item.tenant),
            {
                **item.payload,
                "model": embedder.name,
                "model_version": embedder.version,
                DECODE_FIELD: mode,
            },
            vector,
        )
        for item, vector in zip(decoded, vectors, strict=True)
        if vector is not None
    ]
    if points:
        into.upsert(points)
        report.indexed.extend(p.payload["item_id"] for p in points)
    log.info("reindexed %d items into %s, %d failed", len(points), target, len(report.failed))
    return {**report.as_dict(), "deleted": len(gone)}


def _embed_isolating_failures(
    runtime: WorkerRuntime, embedder: Any, decoded: list[_Decoded], report: BatchReport
) -> list[np.ndarray | None]:
    """Each item's vector (None for one that failed alone); its tags are added to its
    payload, from the same model call (worker/model/tags.py)."""
    try:
        vectors: list[np.ndarray | None] = list(_embed_tagging(runtime, embedder, decoded))
        return vectors
    except Exception:
        log.exception("batch embedding failed; retrying its images one by one")
    vectors = []
    for item in decoded:
        try:
            vectors.append(_embed_tagging(runtime, embedder, [item])[0])
        except Exception as exc:
            report.fail(item.item_id, "embedding_failed", f"{type(exc).__name__}: {exc}")
            vectors.append(None)
    return vectors


def _embed_tagging(runtime: WorkerRuntime, embedder: Any, decoded: list[_Decoded]) -> np.ndarray:
    vectors, logits = embedder.embed_and_classify([d.image for d in decoded])
    settings = runtime.settings
    # A reindex or an image replaced drops the old tags: they described the old pixels.
    for item in decoded:
        item.payload = {k: v for k, v in item.payload.items() if k not in TAG_FIELDS}
    if logits is not None and settings.tags_top_k:
        tags = tag_payloads(logits, settings.tags_top_k, settings.tags_min_score)
        for item, fields in zip(decoded, tags, strict=True):
            item.payload = {**item.payload, **fields}
    return vectors


def embed_query(runtime: WorkerRuntime, data: bytes, box: Box | None = None) -> dict[str, Any]:
    """A query photo's vector, or that of the region ``box`` of it alone (a checked
    normalised x, y, width, height: "shop the look")."""
    # The query must be embedded like the catalog it is searched in.
    active = runtime.store.aliases().active
    embedder = embedder_for(runtime, active)
    try:
        check_stored_model(runtime, active, embedder)
    except ModelMismatch as exc:
        return {"error": {"code": "model_mismatch", "message": str(exc), "status": 409}}
    try:
        image = _query_image(runtime, data, box, embedder.input_size, decode_mode(runtime, active))
    except ImageProblem as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    started = time.perf_counter()
    vector = embedder.embed([image])[0]
    metrics.observe_embedding("query", 1, time.perf_counter() - started, embedder.batch_size)
    return {
        "vector": [float(v) for v in vector],
        "model": embedder.name,
        "model_version": embedder.version,
    }


def _query_image(
    runtime: WorkerRuntime, data: bytes, box: Box | None, input_size: int, mode: str
) -> Image.Image:
    """A query photo (or its region ``box``) decoded for a catalog decoded in ``mode``."""
    # A region is decoded at the scale that gives it the pixels a whole photo would have.
    side = input_size if box is None else math.ceil(input_size / min(box[2], box[3]))
    if mode != DECODE_FULL:
        # Decoded exactly as the catalog's images are.
        image = decode_for(runtime, data, DECODE_SCALED, side)[0]
    else:
        # A catalog decoded in full: a phone photo decodes several times faster at a
        # reduced JPEG scale that still leaves twice the model's input, and the query's
        # vector stays within cosine 0.99 of a full decode (docs/performance.md).
        image = _decode_draft(runtime, data, QUERY_DRAFT_FACTOR * side)
    return image if box is None else crop_box(image, box)


def explain(
    runtime: WorkerRuntime, query: dict[str, Any], result_sha: str, box: Box | None = None
) -> dict[str, Any]:
    """Why the result matches the query (worker/model/match_maps.py): ``query`` is a stored
    item's image (``{"image_sha256"}``) or a photo (``{"image": bytes}``, with an optional
    region ``box``)."""
    from worker.model.match_maps import explain_pair, get_map_reader

    active = runtime.store.aliases().active
    model = model_of(runtime, active).model
    if model not in MODELS or runtime.settings.model == "custom":
        message = "explanations need an EfficientNet-Lite backbone, not a custom model"
        return {"error": {"code": "explain_unavailable", "message": message}}
    embedder = embedder_for(runtime, active)
    mode = decode_mode(runtime, active)
    try:
        if "image" in query:
            first = _query_image(runtime, query["image"], box, embedder.input_size, mode)
        else:
            first = decode_for(
                runtime, runtime.blobs.get(query["image_sha256"]), mode, embedder.input_size
            )[0]
        second = decode_for(runtime, runtime.blobs.get(result_sha), mode, embedder.input_size)[0]
    except ImageProblem as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    except (ValueError, FileNotFoundError):
        return {
            "error": {
                "code": "image_missing",
                "message": "an item's image is not in the image store",
            }
        }
    settings = runtime.settings
    reader = get_map_reader(model, settings.model_dir, settings.input_size, settings.pooling)
    return {**explain_pair(embedder, reader, first, second), "model_version": embedder.version}


def _decode_draft(runtime: WorkerRuntime, data: bytes, draft_size: int) -> Image.Image:
    """A search photo for a catalog decoded in full, time-bounded as :func:`decode_for`."""
    max_pixels = runtime.settings.max_image_pixels
    decoder = runtime.decoder
    if decoder is None:
        return decode_image(data, max_pixels=max_pixels, draft_size=draft_size)
    return decoder.decode_draft(data, max_pixels=max_pixels, draft_size=draft_size).image
