"""The HTTP API through the embedded default: a real in-process Celery worker, the real model
and a qdrant-edge shard."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from api import create_app
from lookalike.settings import Settings
from support import labelled_images, post_item, wait_for_task


@pytest.fixture(scope="module")
def photo() -> bytes:
    ((_, path),) = labelled_images(per_category=1, categories=("animals",))
    return path.read_bytes()


def _error(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"vector_store": "ok", "broker": "ok"}


def test_item_lifecycle(client, photo: bytes) -> None:  # type: ignore[no-untyped-def]
    resp = post_item(client, "lion-1", photo, {"category": "animals", "price": 12.5})
    assert resp.status_code == 202
    accepted = resp.get_json()
    assert accepted["item_id"] == "lion-1"
    assert accepted["status_url"] == f"/v1/tasks/{accepted['task_id']}"

    done = wait_for_task(client, accepted["task_id"])
    assert done["status"] == "succeeded" and done["indexed"] == ["lion-1"]

    item = client.get("/v1/items/lion-1").get_json()
    assert item["id"] == "lion-1"
    assert item["metadata"] == {"category": "animals", "price": 12.5}
    assert item["model"] == "efficientnet-lite0"
    # The default: Lite0 at 320 px with its head GeM-pooled, multiscale.
    assert item["model_version"].endswith(":320:gem:resize:multiscale")
    image = client.get(item["image_url"])
    assert image.status_code == 200 and image.data == photo and image.mimetype == "image/png"

    assert client.delete("/v1/items/lion-1").status_code == 204
    _error(client.get("/v1/items/lion-1"), 404, "item_not_found")


def test_similar_excludes_the_item_itself_and_search_by_photo(client, photo: bytes) -> None:  # type: ignore[no-untyped-def]
    images = labelled_images(per_category=2, categories=("animals", "food"))
    tasks = [
        post_item(client, f"sim-{i}", p.read_bytes(), {"category": c}).get_json()["task_id"]
        for i, (c, p) in enumerate(images)
    ]
    for task_id in tasks:
        assert wait_for_task(client, task_id)["status"] == "succeeded"

    similar = client.get("/v1/items/sim-0/similar?limit=3").get_json()
    ids = [hit["id"] for hit in similar["items"]]
    assert "sim-0" not in ids and len(ids) == 3
    scores = [hit["score"] for hit in similar["items"]]
    assert scores == sorted(scores, reverse=True)

    found = client.post(
        "/v1/search?limit=2",
        data={"image": (io.BytesIO(images[0][1].read_bytes()), "q.png")},
        content_type="multipart/form-data",
    )
    assert found.status_code == 200, found.get_json()
    body = found.get_json()
    assert body["items"][0]["id"] == "sim-0"
    assert body["items"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert body["query"]["model"] == "efficientnet-lite0"


def test_bad_uploads_get_clear_errors(client, photo: bytes) -> None:  # type: ignore[no-untyped-def]
    no_image = client.post("/v1/items", data={"id": "x"}, content_type="multipart/form-data")
    assert _error(no_image, 400, "missing_field")["field"] == "image"
    assert _error(post_item(client, "bad id", photo), 400, "invalid_id")["field"] == "id"
    assert _error(post_item(client, "x" * 300, photo), 400, "invalid_id")
    bad_json = client.post(
        "/v1/items",
        data={"id": "x", "metadata": "{not json", "image": (io.BytesIO(photo), "a.png")},
        content_type="multipart/form-data",
    )
    assert _error(bad_json, 400, "invalid_metadata")["field"] == "metadata"
    not_object = client.post(
        "/v1/items",
        data={"id": "x", "metadata": json.dumps([1, 2]), "image": (io.BytesIO(photo), "a.png")},
        content_type="multipart/form-data",
    )
    _error(not_object, 400, "invalid_metadata")
    _error(post_item(client, "empty", b""), 422, "empty_image")
    _error(post_item(client, "text", b"%PDF-1.4 not an image"), 422, "not_an_image")
    _error(post_item(client, "cut", photo[: len(photo) // 2]), 422, "corrupt_image")


def test_bad_queries_get_clear_errors(client) -> None:  # type: ignore[no-untyped-def]
    _error(client.get("/v1/items/nope/similar"), 404, "item_not_found")
    _error(client.get("/v1/items/nope/similar?limit=-1"), 400, "invalid_parameter")
    _error(client.get("/v1/items/nope/similar?limit=1000"), 400, "invalid_parameter")
    _error(client.get("/v1/items/nope/similar?limit=ten"), 400, "invalid_parameter")
    _error(client.get("/v1/tasks/00000000-0000-0000-0000-000000000000"), 404, "task_not_found")
    _error(client.get("/v1/no/such/route"), 404, "not_found")
    _error(client.put("/v1/items"), 405, "method_not_allowed")
    search = client.post("/v1/search", data={}, content_type="multipart/form-data")
    _error(search, 400, "missing_field")


def test_upload_over_the_size_limit_is_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, qdrant_url=":memory:", max_upload_bytes=50_000)
    app = create_app(settings)
    big = io.BytesIO()
    Image.effect_noise((400, 400), 64).convert("RGB").save(big, "PNG")
    assert len(big.getvalue()) > 100_000
    resp = post_item(app.test_client(), "big", big.getvalue())
    _error(resp, 413, "payload_too_large")


def test_gallery_page_is_served(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert b"/v1/items" in resp.data and b"/similar" in resp.data


@pytest.mark.parametrize("keys", ["", "tenant-key-123456"])
@pytest.mark.parametrize("script_root", ["", "/shop/search"])
def test_result_image_urls_are_the_ones_url_for_builds(
    tmp_path: Path, keys: str, script_root: str
) -> None:
    """Result rows build their image URLs from a per-request template (api/routes.py
    _item_urls); every id and tenant the API accepts must come out as url_for gives it."""
    from flask import url_for

    from api.routes import _image_params, _item_urls

    app = create_app(Settings(data_dir=tmp_path, api_keys_read=keys))
    ids = ["sku-1", "A.b_c:d@e+f=g-h", "9", "x" * 120, "shoe:42+wide=yes"]
    tenants = ["default", "shop-a", "b2b:eu@x+y=z"]
    with app.test_request_context("/v1/items/x/similar", base_url=f"http://h{script_root}"):
        for item_id in ids:
            for tenant in tenants:
                for sha in (None, "ab" * 32):
                    params = _image_params(tenant, item_id, sha)
                    assert _item_urls(item_id, params) == (
                        url_for("api.item_image", item_id=item_id, **params),
                        url_for("api.item_thumbnail", item_id=item_id, **params),
                    )
