"""API keys: none needed without keys configured; with keys, 401 for none or a wrong one,
403 for a read key on a write or a key of another tenant, never a 500; signed image URLs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.schema import point_id
from lookalike.settings import Settings, SettingsError
from lookalike.store import StoredItem
from support import labelled_images

READ, WRITE, ACME = "reader-key-0001", "writer-key-0001", "acme-reader-01"


def _seed(app: Flask, settings: Settings, items: list[tuple[str, str]]) -> None:
    """Store items (tenant, id) directly, with real images and random vectors: these tests
    are about who may see them, not about how they were embedded."""
    rng = np.random.default_rng(5)
    paths = [p for _, p in labelled_images(per_category=len(items), categories=("food",))]
    blobs = BlobStore(settings.image_dir)
    points = []
    for (tenant, item_id), path in zip(items, paths, strict=True):
        data = path.read_bytes()
        sha = sha256_hex(data)
        blobs.put(sha, data)
        payload = {
            "item_id": item_id,
            "tenant": tenant,
            "image_sha256": sha,
            "metadata": {"category": "food"},
        }
        vector = rng.normal(size=settings.vector_size()).astype(np.float32)
        points.append(StoredItem(point_id(item_id, tenant), payload, vector))
    app.extensions["lookalike.store"].get().upsert(points)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[FlaskClient]:
    settings = Settings(
        data_dir=tmp_path,
        qdrant_url=":memory:",
        api_keys_read=f"{READ}, acme/{ACME}",
        api_keys_write=WRITE,
    )
    app = create_app(settings)
    _seed(app, settings, [("default", "bread"), ("default", "cheese"), ("acme", "apple")])
    yield app.test_client()


def _error(resp, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == code


def test_without_keys_configured_no_key_is_needed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, qdrant_url=":memory:")
    app = create_app(settings)
    _seed(app, settings, [("default", "bread")])
    client = app.test_client()
    item = client.get("/v1/items/bread")
    assert item.status_code == 200
    assert "sig=" not in item.get_json()["image_url"]
    assert client.delete("/v1/items/bread").status_code == 204


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/v1/items"),
        ("get", "/v1/items/bread"),
        ("get", "/v1/items/bread/similar"),
        ("post", "/v1/recommend"),
        ("post", "/v1/items"),
        ("delete", "/v1/items/bread"),
        ("get", "/v1/jobs"),
        ("get", "/v1/no-such-route"),
    ],
)
def test_a_missing_or_wrong_key_is_401(keyed: FlaskClient, method: str, url: str) -> None:
    _error(getattr(keyed, method)(url), 401, "missing_api_key")
    _error(
        getattr(keyed, method)(url, headers={"X-API-Key": "wrong-key-123"}), 401, "invalid_api_key"
    )
    bad_bearer = {"Authorization": "Bearer wrong-key-123"}
    _error(getattr(keyed, method)(url, headers=bad_bearer), 401, "invalid_api_key")


def test_a_read_key_reads_and_queries_but_does_not_write(keyed: FlaskClient) -> None:
    headers = {"X-API-Key": READ}
    assert keyed.get("/v1/items", headers=headers).get_json()["total"] == 2
    assert keyed.get("/v1/items/bread/similar", headers=headers).status_code == 200
    recommend = keyed.post("/v1/recommend", json={"positive": ["bread"]}, headers=headers)
    assert recommend.status_code == 200 and [h["id"] for h in recommend.get_json()["items"]] == [
        "cheese"
    ]
    batch = keyed.post("/v1/batch", json={"queries": [{"id": "bread"}]}, headers=headers)
    assert batch.status_code == 200
    _error(keyed.delete("/v1/items/bread", headers=headers), 403, "read_only_key")
    upload = {"id": "x", "image": (io.BytesIO(b"not read"), "x.png")}
    _error(keyed.post("/v1/items", data=upload, headers=headers), 403, "read_only_key")


def test_a_write_key_may_write_bearer_or_header(keyed: FlaskClient) -> None:
    photo = labelled_images(per_category=1, categories=("plants",))[0][1].read_bytes()
    upload = {"id": "fern", "image": (io.BytesIO(photo), "fern.png")}
    bearer = {"Authorization": f"Bearer {WRITE}"}
    accepted = keyed.post("/v1/items", data=upload, headers=bearer)
    assert accepted.status_code == 202, accepted.get_json()
    assert keyed.delete("/v1/items/cheese", headers={"X-API-Key": WRITE}).status_code == 204


def test_a_tenant_key_acts_for_its_tenant_only(keyed: FlaskClient) -> None:
    mine = keyed.get("/v1/items", headers={"X-API-Key": ACME}).get_json()
    assert [i["id"] for i in mine["items"]] == ["apple"]
    same = keyed.get("/v1/items", headers={"X-API-Key": ACME, "X-Tenant": "acme"})
    assert same.status_code == 200
    other = keyed.get("/v1/items", headers={"X-API-Key": ACME, "X-Tenant": "default"})
    _error(other, 403, "tenant_forbidden")
    _error(keyed.get("/v1/items/bread", headers={"X-API-Key": ACME}), 404, "item_not_found")
    # An unbound key chooses its tenant.
    acme = keyed.get("/v1/items", headers={"X-API-Key": READ, "X-Tenant": "acme"}).get_json()
    assert [i["id"] for i in acme["items"]] == ["apple"]


def test_public_routes_need_no_key(keyed: FlaskClient) -> None:
    for url in ("/healthz", "/", "/jobs", "/openapi.json", "/static/gallery.css"):
        assert keyed.get(url).status_code == 200, url


def test_signed_image_urls_load_without_a_key(keyed: FlaskClient) -> None:
    item = keyed.get("/v1/items/apple", headers={"X-API-Key": ACME}).get_json()
    assert "sig=" in item["image_url"] and "tenant=acme" in item["image_url"]
    image = keyed.get(item["image_url"])
    assert image.status_code == 200 and image.mimetype == "image/png"
    thumb = keyed.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"

    forged = item["image_url"].replace("sig=", "sig=0")
    _error(keyed.get(forged), 403, "invalid_signature")
    # A valid signature for acme's apple does not open default's bread.
    other = item["image_url"].replace("/apple/", "/bread/").replace("tenant=acme", "tenant=default")
    _error(keyed.get(other), 403, "invalid_signature")
    _error(keyed.get("/v1/items/apple/image?tenant=acme"), 401, "missing_api_key")
    _error(
        keyed.get("/v1/items/apple/image?tenant=acme&sig=%C3%A9%F0%9F"), 403, "invalid_signature"
    )


@pytest.mark.parametrize(
    "keys", ["short", "acme/has space", "bad tenant!/abcdefghij", "/abcdefghijk"]
)
def test_malformed_key_settings_are_refused_at_start(keys: str) -> None:
    with pytest.raises(SettingsError):
        Settings(api_keys_read=keys)
