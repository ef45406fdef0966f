"""Tenants cannot reach each other's images: an image is usable by sha256 only for a tenant
that uploaded it, and whether another tenant holds an image is not observable. Through the
API of the embedded service (real worker, real model) with API keys bound to tenants."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lookalike.images import sha256_hex
from lookalike.settings import Settings
from support import labelled_images, wait_for_task

ACME = {"X-API-Key": "acme-writer-0001"}
GLOBEX = {"X-API-Key": "globex-writer-01"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[Any]:
    from launcher.embedded import start_embedded

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("tenants") / "data",
        model_cache=model_cache_dir,
        api_keys_write="acme/acme-writer-0001, globex/globex-writer-01",
    )
    running = start_embedded(settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [p.read_bytes() for _, p in labelled_images(per_category=2, categories=("food",))]


def _batch(client, headers: dict[str, str], item_id: str, sha: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batches", json={"items": [{"id": item_id, "image_sha256": sha}]}, headers=headers
    )
    assert resp.status_code in (200, 202), resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def test_a_tenant_cannot_use_or_detect_another_tenants_image(service, photos) -> None:  # type: ignore[no-untyped-def]
    client = service.app.test_client()
    secret, unknown = photos[0], photos[1]
    sha = sha256_hex(secret)
    # acme uploads its photo as an item; the worker indexes it.
    resp = client.post(
        "/v1/items",
        data={"id": "secret", "image": (io.BytesIO(secret), "s.jpg")},
        headers=ACME,
    )
    assert resp.status_code == 202, resp.get_json()
    assert wait_for_task(client, resp.get_json()["task_id"], headers=ACME)["status"] == "succeeded"

    # globex names acme's image by its hash: refused exactly as a hash nobody uploaded.
    stolen = _batch(client, GLOBEX, "steal", sha)
    never = _batch(client, GLOBEX, "steal", sha256_hex(unknown))
    assert stolen == never
    assert stolen["task_id"] is None and [r["code"] for r in stolen["rejected"]] == [
        "image_missing"
    ]
    assert client.get("/v1/items/steal/image", headers=GLOBEX).status_code == 404
    assert client.get("/v1/items/secret/image", headers=GLOBEX).status_code == 404
    # acme still reads its own image.
    own = client.get("/v1/items/secret/image", headers=ACME)
    assert own.status_code == 200 and own.data == secret


def test_the_same_bytes_uploaded_by_two_tenants_serve_both_and_are_stored_once(  # type: ignore[no-untyped-def]
    service, photos
) -> None:
    client = service.app.test_client()
    data = photos[0]
    sha = sha256_hex(data)
    # globex has the bytes itself: uploading them takes the same path whether acme holds
    # them or not (validated again, then recorded as globex's).
    put = client.put(f"/v1/blobs/{sha}", data=data, headers=GLOBEX)
    assert put.status_code == 200, put.get_json()
    accepted = _batch(client, GLOBEX, "mine", sha)
    assert accepted["accepted"] == ["mine"], accepted
    task = wait_for_task(client, accepted["task_id"], headers=GLOBEX)
    assert task["status"] == "succeeded", task
    assert client.get("/v1/items/mine/image", headers=GLOBEX).data == data
    assert client.get("/v1/items/secret/image", headers=ACME).data == data
    # One copy of the bytes; an owner record per tenant.
    image_dir = service.app.extensions["lookalike.settings"].image_dir
    copies = [p for p in image_dir.rglob(sha) if p.read_bytes() == data]
    assert len(copies) == 1, copies
    owners = [p for p in image_dir.rglob(sha) if p.stat().st_size == 0]
    assert len(owners) == 2
    # A tenant's own multipart upload, then a bad file named by another tenant's hash:
    # rejected by its content, as for anybody.
    many = client.post(
        "/v1/blobs",
        data={sha256_hex(photos[1]): (io.BytesIO(photos[1]), "b.jpg")},
        headers=ACME,
        content_type="multipart/form-data",
    )
    assert many.get_json()["stored"] == [sha256_hex(photos[1])]
    forged = client.put(f"/v1/blobs/{sha}", data=b"not the bytes", headers=ACME)
    assert forged.status_code == 400 and forged.get_json()["error"]["code"] == "checksum_mismatch"
