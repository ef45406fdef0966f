"""A catalog that declares its own fields (LOOKALIKE_CATALOG_SCHEMA), on the embedded
default (real worker, real model, qdrant-edge): a colour list, a size, a release date and a
rating are typed at the door, filtered, faceted and grouped on; typo'd and repeated query
parameters are refused; a re-post without metadata keeps it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from lookalike.settings import Settings
from support import labelled_images, wait_for_task

SCHEMA = {
    "fields": {
        "category": "keyword",
        "color": {"type": "keyword_list", "roles": ["filter", "facet", "group"]},
        "size": {"type": "keyword", "roles": ["filter", "facet", "group"]},
        "released": "datetime",
        "rating": "float",
        "stock": "integer",
        "in_stock": "bool",
    }
}
CATEGORIES = ("animals", "food", "plants")
PER_CATEGORY = 4
COLORS = [["red"], ["red", "blue"], ["green"], ["blue"]]
SIZES = ["S", "M", "L"]


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("catalog-fields") / "data",
        model_cache=model_cache_dir,
        catalog_schema=json.dumps(SCHEMA),
    )


def _post(client, item_id: str, data: bytes, meta: Any = None):  # type: ignore[no-untyped-def]
    form: dict[str, Any] = {"id": item_id, "image": (io.BytesIO(data), "i.png")}
    if meta is not None:
        form["metadata"] = meta if isinstance(meta, str) else json.dumps(meta)
    return client.post("/v1/items", data=form, content_type="multipart/form-data")


def _error(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == code
    return error


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """12 real photos; item n: colours COLORS[n % 4], size SIZES[n % 3], released in
    2021 + n % 4, rating n % 5, stock n."""
    items: dict[str, dict[str, Any]] = {}
    tasks = []
    for n, (category, path) in enumerate(labelled_images(PER_CATEGORY, CATEGORIES)):
        item_id = f"{category}-{n % PER_CATEGORY}"
        meta = {
            "category": category,
            "color": COLORS[n % 4],
            "size": SIZES[n % 3],
            "released": f"{2021 + n % 4}-06-01T12:00:00+02:00",
            "rating": float(n % 5),
            "stock": n,
            "in_stock": n % 2 == 0,
            "material": "cotton",  # undeclared: stored and returned, not filterable
        }
        items[item_id] = {"path": path, "n": n, **meta}
        resp = _post(client, item_id, path.read_bytes(), meta)
        assert resp.status_code == 202, resp.get_data(as_text=True)
        tasks.append(resp.get_json()["task_id"])
    for task_id in tasks:
        assert wait_for_task(client, task_id)["status"] == "succeeded"
    return items


def _all_ids(client, query: str) -> set[str]:  # type: ignore[no-untyped-def]
    resp = client.get(f"/v1/items?limit=500&{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {i["id"] for i in resp.get_json()["items"]}


def _expected(catalog: dict[str, dict[str, Any]], keep: Any) -> set[str]:
    return {item_id for item_id, meta in catalog.items() if keep(meta)}


def test_the_schema_is_served(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/v1/schema").get_json()
    assert body["fields"]["color"] == {
        "type": "keyword_list",
        "roles": ["filter", "facet", "group"],
    }
    assert body["fields"]["rating"] == {"type": "float", "roles": ["filter"]}


def test_declared_fields_are_stored_typed(client, catalog) -> None:  # type: ignore[no-untyped-def]
    item = client.get("/v1/items/animals-1").get_json()
    assert item["metadata"]["released"] == "2022-06-01T10:00:00Z"  # normalized to UTC
    assert item["metadata"]["color"] == ["red", "blue"]
    assert item["metadata"]["material"] == "cotton"


def test_filters_on_every_declared_type(client, catalog) -> None:  # type: ignore[no-untyped-def]
    red_or_green = _expected(catalog, lambda m: {"red", "green"} & set(m["color"]))
    assert _all_ids(client, "color=red&color=green") == red_or_green
    assert _all_ids(client, "color=red,green") == red_or_green
    assert _all_ids(client, "size=M") == _expected(catalog, lambda m: m["size"] == "M")
    assert _all_ids(client, "released_min=2023-01-01&released_max=2023-12-31T23:59:59Z") == (
        _expected(catalog, lambda m: m["released"].startswith("2023"))
    )
    assert _all_ids(client, "rating_min=2.5&rating_max=4") == _expected(
        catalog, lambda m: 2.5 <= m["rating"] <= 4
    )
    assert _all_ids(client, "stock=3&stock=5") == _expected(catalog, lambda m: m["stock"] in (3, 5))
    assert _all_ids(client, "stock_min=9") == _expected(catalog, lambda m: m["stock"] >= 9)
    assert _all_ids(client, "in_stock=false&size=S") == _expected(
        catalog, lambda m: not m["in_stock"] and m["size"] == "S"
    )
    # A field of the default schema this catalog does not declare is no filter here.
    _error(client.get("/v1/items?brand=acme"), 400, "unknown_parameter")


def test_filters_in_similarity_queries_and_json_bodies(client, catalog) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/items/animals-0/similar?limit=20&color=blue&released_min=2022-01-01")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    wanted = _expected(catalog, lambda m: "blue" in m["color"] and m["released"][:4] >= "2022") - {
        "animals-0"
    }
    assert {h["id"] for h in resp.get_json()["items"]} == wanted

    body = {
        "positive": ["food-0"],
        "limit": 20,
        "filter": {"color": ["green", "blue"], "rating_max": 2, "released_max": "2023-12-31"},
    }
    resp = client.post("/v1/recommend", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    wanted = _expected(
        catalog,
        lambda m: (
            {"green", "blue"} & set(m["color"]) and m["rating"] <= 2 and m["released"][:4] <= "2023"
        ),
    ) - {"food-0"}
    assert {h["id"] for h in resp.get_json()["items"]} == wanted

    bad = {"positive": ["food-0"], "filter": {"rating_max": "high"}}
    error = _error(client.post("/v1/recommend", json=bad), 400, "invalid_parameter")
    assert error["field"] == "filter.rating_max"
    bad = {"positive": ["food-0"], "filter": {"colour": "red"}}
    assert _error(client.post("/v1/recommend", json=bad), 400, "invalid_parameter")["field"] == (
        "filter.colour"
    )


@pytest.mark.parametrize("field", ["color", "size", "category"])
def test_facets_on_declared_keyword_fields(client, catalog, field: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.get(f"/v1/facets?field={field}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    counts: dict[str, int] = {}
    for meta in catalog.values():
        values = meta[field] if isinstance(meta[field], list) else [meta[field]]
        for value in values:
            counts[value] = counts.get(value, 0) + 1
    assert {v["value"]: v["count"] for v in resp.get_json()["values"]} == counts


def test_a_facet_is_counted_under_the_other_filters(client, catalog) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/facets?field=size&color=green")
    counts: dict[str, int] = {}
    for meta in catalog.values():
        if "green" in meta["color"]:
            counts[meta["size"]] = counts.get(meta["size"], 0) + 1
    assert {v["value"]: v["count"] for v in resp.get_json()["values"]} == counts
    error = _error(client.get("/v1/facets?field=rating"), 400, "invalid_parameter")
    assert error["field"] == "field" and "color" in error["message"]


@pytest.mark.parametrize("field", ["color", "size"])
def test_group_by_declared_fields(client, catalog, field: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.get(f"/v1/items/plants-0/similar?group_by={field}&group_size=2&limit=10")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    groups = resp.get_json()["groups"]
    keys = {g["key"] for g in groups}
    others = [m for i, m in catalog.items() if i != "plants-0"]
    assert keys == {v for m in others for v in (m[field] if field == "color" else [m[field]])}
    for group in groups:
        assert 1 <= len(group["items"]) <= 2
        for hit in group["items"]:
            value = hit["metadata"][field]
            assert group["key"] in (value if isinstance(value, list) else [value])
    resp = client.post("/v1/recommend", json={"positive": ["plants-0"], "group_by": "size"})
    assert resp.status_code == 200 and resp.get_json()["groups"]
    error = _error(
        client.get("/v1/items/plants-0/similar?group_by=rating"), 400, "invalid_parameter"
    )
    assert error["field"] == "group_by"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"rating": "4.5"}, "metadata.rating"),
        ({"rating": True}, "metadata.rating"),
        ({"in_stock": "true"}, "metadata.in_stock"),
        ({"category": 123}, "metadata.category"),
        ({"color": ["red", 7]}, "metadata.color"),
        ({"stock": 2.5}, "metadata.stock"),
        ({"released": "next spring"}, "metadata.released"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(client, metadata: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    path = labelled_images(1, ("town",))[0][1]
    error = _error(_post(client, "typed-1", path.read_bytes(), metadata), 422, "invalid_metadata")
    assert error["field"] == field
    assert field.split(".")[1] in error["message"]
    assert client.get("/v1/items/typed-1").status_code == 404  # nothing was queued


def test_batches_report_wrong_types_per_item(client, catalog) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batches/metadata",
        json={
            "items": [
                {"id": "animals-0", "metadata": {"rating": "five"}},
                {"id": "animals-2", "metadata": {"category": "animals", "size": "XL"}},
            ]
        },
    )
    body = resp.get_json()
    assert resp.status_code == 200 and body["updated"] == ["animals-2"]
    assert body["failed"] == [
        {
            "id": "animals-0",
            "code": "invalid_metadata",
            "message": body["failed"][0]["message"],
            "field": "items[0].metadata.rating",
        }
    ]
    assert "rating must be a number" in body["failed"][0]["message"]
    assert client.get("/v1/items/animals-2").get_json()["metadata"] == {
        "category": "animals",
        "size": "XL",
    }
    # merge: only the fields given change
    resp = client.post(
        "/v1/batches/metadata",
        json={"mode": "merge", "items": [{"id": "animals-2", "metadata": {"rating": 1.5}}]},
    )
    assert resp.get_json()["updated"] == ["animals-2"]
    assert client.get("/v1/items/animals-2").get_json()["metadata"] == {
        "category": "animals",
        "size": "XL",
        "rating": 1.5,
    }
    error = _error(
        client.post("/v1/batches/metadata", json={"mode": "patch", "items": [{"id": "x"}]}),
        400,
        "invalid_parameter",
    )
    assert error["field"] == "mode"


def test_a_repost_without_metadata_keeps_it(client, catalog) -> None:  # type: ignore[no-untyped-def]
    before = client.get("/v1/items/food-1").get_json()
    other = catalog["plants-3"]["path"].read_bytes()  # a new image for the same id
    resp = _post(client, "food-1", other)
    assert resp.status_code == 202
    assert wait_for_task(client, resp.get_json()["task_id"])["status"] == "succeeded"
    after = client.get("/v1/items/food-1").get_json()
    assert after["image_sha256"] != before["image_sha256"]
    assert after["metadata"] == before["metadata"]
    # An explicit empty object still replaces (a deliberate wipe).
    resp = _post(client, "food-1", other, {})
    assert wait_for_task(client, resp.get_json()["task_id"])["status"] == "succeeded"
    assert client.get("/v1/items/food-1").get_json()["metadata"] == {}


@pytest.mark.parametrize(
    ("url", "status", "code", "field"),
    [
        ("/v1/items?catgory=shoes", 400, "unknown_parameter", "catgory"),
        ("/v1/items?limit=5&limit=500", 400, "invalid_parameter", "limit"),
        ("/v1/items/animals-0/similar?colour=red", 400, "unknown_parameter", "colour"),
        ("/v1/items/animals-0/similar?limit=5&limit=6", 400, "invalid_parameter", "limit"),
        (
            "/v1/items/animals-0/similar?in_stock=true&in_stock=false",
            400,
            "invalid_parameter",
            "in_stock",
        ),
        ("/v1/facets?field=color&field=size", 400, "invalid_parameter", "field"),
        ("/v1/items/animals-0?verbose=1", 400, "unknown_parameter", "verbose"),
        ("/v1/items?rating_min=abc", 400, "invalid_parameter", "rating_min"),
        ("/v1/items?released_min=yesterday", 400, "invalid_parameter", "released_min"),
        ("/v1/items?stock=many", 400, "invalid_parameter", "stock"),
    ],
)
def test_typod_and_repeated_parameters_are_refused(
    client, catalog, url, status, code, field
) -> None:  # type: ignore[no-untyped-def]
    error = _error(client.get(url), status, code)
    assert error["field"] == field


def test_the_document_shows_the_declared_fields(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").get_json()
    params = doc["components"]["parameters"]
    names = {p["name"] for p in params.values() if p["in"] == "query"}
    assert {"color", "size", "released_min", "released_max", "rating_min", "stock"} <= names
    assert "brand" not in names and "price_min" not in names
    assert params["Filter_released_min"]["schema"]["format"] == "date-time"
    assert doc["components"]["schemas"]["Filter"]["properties"]["rating_max"] == {"type": "number"}
    group_by = next(p for p in params.values() if p["name"] == "group_by")
    assert set(group_by["schema"]["enum"]) == {"category", "color", "size", "stock"}
    item = doc["components"]["schemas"]["Item"]["properties"]["metadata"]
    assert item == {"$ref": "#/components/schemas/Metadata"}
    metadata = doc["components"]["schemas"]["Metadata"]
    assert set(metadata["properties"]) == set(SCHEMA["fields"])


def test_a_batch_entry_without_metadata_keeps_it_and_a_wrong_one_is_refused_alone(
    client, catalog
) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    before = client.get("/v1/items/plants-1").get_json()
    data = catalog["animals-3"]["path"].read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert client.put(f"/v1/blobs/{sha}", data=data).status_code in (200, 201, 204)
    resp = client.post(
        "/v1/batches",
        json={
            "items": [
                {"id": "plants-1", "image_sha256": sha},
                {"id": "new-1", "image_sha256": sha, "metadata": {"released": 2024}},
            ]
        },
    )
    body = resp.get_json()
    assert resp.status_code == 202, body
    assert body["accepted"] == ["plants-1"]
    assert [(r["id"], r["code"], r["field"]) for r in body["rejected"]] == [
        ("new-1", "invalid_metadata", "items[1].metadata.released")
    ]
    assert wait_for_task(client, body["task_id"])["status"] == "succeeded"
    after = client.get("/v1/items/plants-1").get_json()
    assert after["image_sha256"] == sha != before["image_sha256"]
    assert after["metadata"] == before["metadata"]
