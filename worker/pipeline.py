"""What a worker does with a batch of catalog items: decode, embed, upsert.

One bad image fails alone with a recorded reason; its batch-mates are indexed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image

from lookalike.images import ImageProblem, decode_image
from lookalike.schema import DEFAULT_TENANT, InvalidId, point_id, validate_id
from lookalike.store import StoredItem
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


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


def index_items(runtime: WorkerRuntime, items: list[dict[str, Any]]) -> BatchReport:
    report = BatchReport()
    decoded: list[_Decoded] = []
    for raw in items:
        item = _decode_item(runtime, raw, report)
        if item is not None:
            decoded.append(item)
    if not decoded:
        return report

    embedder = runtime.embedder
    vectors = _embed_isolating_failures(embedder, decoded, report)
    now = datetime.now(UTC).isoformat()
    points = []
    for item, vector in zip(decoded, vectors, strict=True):
        if vector is None:
            continue
        payload = dict(item.payload)
        payload.update(model=embedder.name, model_version=embedder.version, ingested_at=now)
        points.append(StoredItem(point_id(item.item_id, item.tenant), payload, vector))
    if points:
        # StoreUnavailable propagates: the task retries the whole batch, which is safe because
        # point ids are derived from the items, so a retry overwrites instead of duplicating.
        runtime.store.upsert(points)
        report.indexed.extend(p.payload["item_id"] for p in points)
    return report


def _decode_item(
    runtime: WorkerRuntime, raw: dict[str, Any], report: BatchReport
) -> _Decoded | None:
    item_id = str(raw.get("id", ""))
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
    try:
        image = decode_image(data, max_pixels=runtime.settings.max_image_pixels)
    except ImageProblem as exc:
        report.fail(item_id, exc.code, exc.message)
        return None
    metadata = raw.get("metadata") or {}
    payload = {
        "item_id": item_id,
        "tenant": tenant,
        "image_sha256": sha,
        "metadata": metadata if isinstance(metadata, dict) else {},
    }
    return _Decoded(item_id, tenant, image, payload)


def _embed_isolating_failures(
    embedder: Any, decoded: list[_Decoded], report: BatchReport
) -> list[np.ndarray | None]:
    try:
        return list(embedder.embed([d.image for d in decoded]))
    except Exception:
        log.exception("batch embedding failed; retrying its images one by one")
    vectors: list[np.ndarray | None] = []
    for item in decoded:
        try:
            vectors.append(embedder.embed([item.image])[0])
        except Exception as exc:
            report.fail(item.item_id, "embedding_failed", f"{type(exc).__name__}: {exc}")
            vectors.append(None)
    return vectors


def embed_query(runtime: WorkerRuntime, data: bytes) -> dict[str, Any]:
    try:
        image = decode_image(data, max_pixels=runtime.settings.max_image_pixels)
    except ImageProblem as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    embedder = runtime.embedder
    vector = embedder.embed([image])[0]
    return {
        "vector": [float(v) for v in vector],
        "model": embedder.name,
        "model_version": embedder.version,
    }
