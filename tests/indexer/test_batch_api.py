"""The endpoints ingestion jobs use (api/batches.py, api/duplicates.py, api/reindex.py), on
the embedded service: real worker, real model, real qdrant-edge, real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from api import create_app
from lookalike.images import decode_image
from lookalike.settings import Settings
from support import edited_copy, labelled_images, wait_for_task
from worker.model import load_embedder

TENANT = {"X-Tenant": "batch-api"}


def put_blob(client: Any, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    resp = client.put(
        f"/v1/blobs/{sha}", data=data, content_type="application/octet-stream", headers=TENANT
    )
    assert resp.status_code == 200, resp.get_json()
    return sha


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, Path]]:
    return labelled_images(per_category=3, categories=("animals", "food"))


@pytest.fixture(scope="module")
def indexed(client: Any, photos: list[tuple[str, Path]]) -> dict[str, str]:
    """Six photos, an exact copy and an edited copy of the first, indexed in one batch."""
    first = photos[0][1]
    images = {f"p-{i}": path.read_bytes() for i, (_, path) in enumerate(photos)}
    images["exact-copy"] = first.read_bytes()
    images["edited-copy"] = edited_copy(first)
    shas = {item_id: put_blob(client, data) for item_id, data in images.items()}
    categories = {f"p-{i}": c for i, (c, _) in enumerate(photos)}
    items = [
        {"id": i, "image_sha256": sha, "metadata": {"category": categories.get(i, "copies")}}
        for i, sha in shas.items()
    ]
    resp = client.post("/v1/batches", json={"items": items, "job": "nightly"}, headers=TENANT)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["rejected"] == [] and body["accepted"] == list(shas)
    done = wait_for_task(client, body["task_id"], headers=TENANT)
    assert done["status"] == "succeeded" and sorted(done["indexed"]) == sorted(shas)
    return shas


def test_a_blob_is_checked_against_its_hash_and_decoded(client: Any) -> None:
    data = b"GIF89a but not really an image"
    wrong = client.put("/v1/blobs/" + "0" * 64, data=data)
    assert wrong.status_code == 400
    assert wrong.get_json()["error"]["code"] == "checksum_mismatch"
    broken = client.put(f"/v1/blobs/{hashlib.sha256(data).hexdigest()}", data=data)
    assert broken.status_code == 422
    assert broken.get_json()["error"]["code"] in ("corrupt_image", "not_an_image")
    assert client.put("/v1/blobs/not-a-hash", data=data).status_code == 400


def test_a_batch_rejects_items_one_by_one_or_a_malformed_request_whole(
    client: Any, indexed: dict[str, str]
) -> None:
    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    huge = {"notes": "x" * 20_000}
    resp = client.post(
        "/v1/batches",
        json={
            "items": [
                {"id": "missing-image", "image_sha256": unknown},
                {"id": "too-much", "image_sha256": indexed["p-0"], "metadata": huge},
            ]
        },
        headers=TENANT,
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["task_id"] is None
    assert {r["id"]: r["code"] for r in body["rejected"]} == {
        "missing-image": "image_missing",
        "too-much": "metadata_too_large",
    }
    twice = [{"id": "a", "image_sha256": unknown}] * 2
    for bad in (
        {"items": []},
        {"items": twice},
        {"items": [{"id": "bad id!", "image_sha256": unknown}]},
        {"items": [{"id": "a", "image_sha256": "abc"}]},
        {"items": [{"id": "a", "image_sha256": unknown, "metadata": ["not", "an", "object"]}]},
    ):
        resp = client.post("/v1/batches", json=bad, headers=TENANT)
        assert resp.status_code == 400, (bad, resp.get_json())
    assert client.post("/v1/batches", data="x", headers=TENANT).status_code == 415


def test_metadata_changes_without_re_embedding(client: Any, indexed: dict[str, str]) -> None:
    before = client.get("/v1/items/p-1", headers=TENANT).get_json()
    resp = client.post(
        "/v1/batches/metadata",
        json={
            "items": [
                {"id": "p-1", "metadata": {"category": "sale"}},
                {"id": "nope", "metadata": {}},
            ]
        },
        headers=TENANT,
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["updated"] == ["p-1"]
    assert [(f["id"], f["code"]) for f in body["failed"]] == [("nope", "item_not_found")]
    after = client.get("/v1/items/p-1", headers=TENANT).get_json()
    assert after["metadata"] == {"category": "sale"}
    # Not re-embedded: the worker stamps every embedding with its time.
    assert after["ingested_at"] == before["ingested_at"]


def test_exact_and_near_duplicates_are_told_apart_from_similar_items(
    client: Any,
    indexed: dict[str, str],
    photos: list[tuple[str, Path]],
    model_cache_dir: Path,
) -> None:
    resp = client.get("/v1/items/p-0/duplicates", headers=TENANT)
    assert resp.status_code == 200
    body = resp.get_json()
    assert [e["id"] for e in body["exact"]] == ["exact-copy"]
    assert [n["id"] for n in body["near"]] == ["edited-copy"]
    near = body["near"][0]
    assert near["score"] >= body["threshold"] > 0
    # The default (multiscale) vectors are judged on their pooled head alone: the similarity
    # the test weighs is the cosine of the two images' pooled features, as measured for it
    # (docs/indexer.md), not that of the whole vectors.
    item = client.get("/v1/items/p-0", headers=TENANT).get_json()
    assert item["model_version"].endswith(":multiscale")
    pooled = load_embedder("efficientnet-lite0", model_cache_dir)
    pixels = Settings().max_image_pixels
    first, copy = pooled.embed(
        [
            decode_image(data, max_pixels=pixels)
            for data in (photos[0][1].read_bytes(), edited_copy(photos[0][1]))
        ]
    )
    assert near["embedding_similarity"] == pytest.approx(float(first @ copy), abs=2e-4)
    # The other animals are similar items, not duplicates; they do rank among the similar.
    similar = client.get("/v1/items/p-0/similar?limit=8", headers=TENANT).get_json()["items"]
    assert {"p-1", "p-2"} <= {s["id"] for s in similar}

    many = client.post(
        "/v1/duplicates", json={"ids": ["edited-copy", "p-4", "ghost"]}, headers=TENANT
    ).get_json()
    assert many["missing"] == ["ghost"]
    by_id = {entry["id"]: entry for entry in many["items"]}
    assert {n["id"] for n in by_id["edited-copy"]["near"]} == {"p-0", "exact-copy"}
    assert by_id["p-4"]["exact"] == [] and by_id["p-4"]["near"] == []
    # A stricter threshold than the pair's score leaves it out.
    strict = client.get(
        f"/v1/items/p-0/duplicates?threshold={min(1.0, near['score'] + 0.001)}", headers=TENANT
    ).get_json()
    assert strict["near"] == [] and strict["exact"] == body["exact"]
    bad = client.get("/v1/items/p-0/duplicates?threshold=0", headers=TENANT)
    assert bad.status_code == 400


def test_a_batch_delete_removes_items_and_names_the_missing(
    client: Any, indexed: dict[str, str]
) -> None:
    resp = client.post("/v1/batches/delete", json={"ids": ["p-5", "ghost"]}, headers=TENANT)
    assert resp.status_code == 200
    assert resp.get_json() == {"deleted": ["p-5"], "missing": ["ghost"]}
    assert client.get("/v1/items/p-5", headers=TENANT).status_code == 404


def test_reindex_calls_name_the_catalog_and_need_a_reindex_in_progress(client: Any) -> None:
    status = client.get("/v1/reindex").get_json()
    assert status["collection"] == "catalog"
    assert status["active"]["model"] == "efficientnet-lite0" and status["next"] is None
    wrong = client.post("/v1/reindex/switch", json={"collection": "another"})
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "wrong_collection"
    idle = client.post("/v1/reindex/batches", json={"collection": "catalog"})
    assert idle.status_code == 409 and idle.get_json()["error"]["code"] == "no_reindex"
    none = client.post("/v1/reindex/rollback", json={"collection": "catalog"})
    assert none.status_code == 409 and none.get_json()["error"]["code"] == "no_previous"
    unknown = client.post("/v1/reindex", json={"collection": "catalog", "model": "resnet"})
    assert unknown.status_code == 400
    # A head: a valid name of one in the model cache, trained on the model's vectors.
    lite0 = {"collection": "catalog", "model": "efficientnet-lite0"}
    bad = client.post("/v1/reindex", json={**lite0, "head": "Not A Name"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "head"
    missing = client.post("/v1/reindex", json={**lite0, "head": "nothing"})
    assert missing.status_code == 409 and missing.get_json()["error"] == {
        "code": "model_unavailable",
        "message": missing.get_json()["error"]["message"],
        "field": "head",
    }
    assert "head 'nothing'" in missing.get_json()["error"]["message"]
    assert client.get("/v1/reindex").get_json()["next"] is None
    # The vectors a head is trained on: by a keyword field of the catalog only.
    for field in ("price", "in_stock", "nothing"):
        wrong_field = client.get("/v1/vectors", query_string={"field": field})
        assert (
            wrong_field.status_code == 400 and wrong_field.get_json()["error"]["field"] == "field"
        )


def test_reindexing_needs_a_key_for_every_tenant(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        qdrant_url=":memory:",
        api_keys_read="readkey-123",
        api_keys_write="shop/shopkey-123,adminkey-123",
    )
    client = create_app(settings).test_client()
    body = {"collection": "catalog"}
    for key in ("readkey-123", "shopkey-123"):
        resp = client.post("/v1/reindex/abort", json=body, headers={"X-API-Key": key})
        assert resp.status_code == 403, key
    admin = client.post("/v1/reindex/abort", json=body, headers={"X-API-Key": "adminkey-123"})
    assert admin.status_code == 409  # allowed; there is just nothing to abort
    # Every tenant's vectors: the same rule.
    vectors = {"field": "category"}
    for key in ("readkey-123", "shopkey-123"):
        resp = client.get("/v1/vectors", query_string=vectors, headers={"X-API-Key": key})
        assert resp.status_code == 403, key
    resp = client.get("/v1/vectors", query_string=vectors, headers={"X-API-Key": "adminkey-123"})
    assert resp.status_code == 200 and resp.get_json()["items"] == []
