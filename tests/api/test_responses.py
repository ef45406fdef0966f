"""Real answers of the main routes match the response schemas the served OpenAPI document
gives them (api/responses.py through api/paths.py), on the embedded default (real worker,
real model, qdrant-edge): a route whose answer drifts from its declared model (a field added,
renamed or retyped) fails here."""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

import jsonschema
import pytest

from support import labelled_images, wait_for_task

Json = dict[str, Any]


def _json_schema(node: Any, components: Json) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: references inlined, ``nullable`` as a null
    alternative."""
    if isinstance(node, list):
        return [_json_schema(n, components) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        return _json_schema(components[kind][name], components)
    out = {k: _json_schema(v, components) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


class Document:
    def __init__(self, doc: Json) -> None:
        self.doc = doc
        self.checked: set[tuple[str, str]] = set()

    def schema(self, method: str, path: str, status: int) -> Json:
        answer = self.doc["paths"][path][method]["responses"][str(status)]
        answer = _json_schema(answer, self.doc["components"])
        return answer["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    def check(self, resp: Any, method: str, path: str, status: int) -> Json:
        """``resp`` has ``status`` and a body the document allows for it."""
        assert resp.status_code == status, resp.get_data(as_text=True)
        body = resp.get_json()
        jsonschema.validate(body, self.schema(method, path, status))
        self.checked.add((method, path))
        return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def doc(client) -> Document:  # type: ignore[no-untyped-def]
    return Document(client.get("/openapi.json").get_json())


@pytest.fixture(scope="module")
def items(client, doc: Document) -> list[str]:  # type: ignore[no-untyped-def]
    """Four real photos in two categories, posted one by one, and their tasks followed."""
    ids = []
    for n, (category, path) in enumerate(labelled_images(2, ("animals", "food"))):
        item_id = f"{category}-{n}"
        meta = {"category": category, "brand": "acme", "price": 10.0 + n, "in_stock": n % 2 == 0}
        form = {
            "id": item_id,
            "image": (io.BytesIO(path.read_bytes()), "i.png"),
            "metadata": json.dumps({**meta, "colour_note": "undeclared"}),
            "job": "responses",
        }
        resp = client.post("/v1/items", data=form, content_type="multipart/form-data")
        accepted = doc.check(resp, "post", "/v1/items", 202)
        task = doc.check(client.get(accepted["status_url"]), "get", "/v1/tasks/{task_id}", 200)
        assert wait_for_task(client, task["task_id"])["status"] == "succeeded"
        ids.append(item_id)
    return ids


def test_the_catalog_routes_answer_as_documented(client, doc: Document, items: list[str]) -> None:  # type: ignore[no-untyped-def]
    first = items[0]
    doc.check(client.get("/healthz"), "get", "/healthz", 200)
    page = doc.check(client.get("/v1/items?limit=2"), "get", "/v1/items", 200)
    assert page["next_cursor"] is not None and len(page["items"]) == 2
    doc.check(client.get(f"/v1/items?cursor={page['next_cursor']}"), "get",
              "/v1/items", 200)  # fmt: skip
    item = doc.check(client.get(f"/v1/items/{first}"), "get", "/v1/items/{item_id}", 200)
    assert item["metadata"]["colour_note"] == "undeclared"  # undeclared fields come back
    facets = doc.check(client.get("/v1/facets?field=category"), "get", "/v1/facets", 200)
    assert {v["value"] for v in facets["values"]} == {"animals", "food"}
    doc.check(client.get("/v1/items?sort=newest&category=food"), "get", "/v1/items", 200)
    doc.check(client.get("/v1/schema"), "get", "/v1/schema", 200)
    jobs = doc.check(client.get("/v1/jobs"), "get", "/v1/jobs", 200)
    assert any(j["job"] == "responses" for j in jobs["jobs"])
    task_id = jobs["tasks"][0]["task_id"]
    tasks = doc.check(client.get(f"/v1/tasks?ids={task_id},nope"), "get", "/v1/tasks", 200)
    assert tasks["not_found"] == ["nope"]


def test_the_query_routes_answer_as_documented(client, doc: Document, items: list[str]) -> None:  # type: ignore[no-untyped-def]
    first, second = items[:2]
    similar = "/v1/items/{item_id}/similar"
    found = doc.check(client.get(f"/v1/items/{first}/similar?limit=2"), "get", similar, 200)
    assert found["items"] and all("score" in hit for hit in found["items"])
    grouped = doc.check(
        client.get(f"/v1/items/{first}/similar?group_by=category"), "get", similar, 200
    )
    assert grouped["groups"]
    doc.check(
        client.post("/v1/recommend", json={"positive": [first], "filter": {"in_stock": True}}),
        "post",
        "/v1/recommend",
        200,
    )
    doc.check(
        client.post(
            "/v1/discover",
            json={"target": first, "context": [{"positive": first, "negative": second}]},
        ),
        "post",
        "/v1/discover",
        200,
    )
    batch = doc.check(
        client.post("/v1/batch", json={"queries": [{"id": first}, {"id": "missing-1"}]}),
        "post",
        "/v1/batch",
        200,
    )
    assert batch["results"][1]["error"]["code"] == "item_not_found"
    for resp, method, path, status in (
        (client.get("/v1/items/nope-1"), "get", "/v1/items/{item_id}", 404),
        (client.get("/v1/items?limit=0"), "get", "/v1/items", 400),
        (client.get(f"/v1/items/{first}/similar?limt=3"), "get", similar, 400),
        (client.post("/v1/recommend", json={"positive": []}), "post", "/v1/recommend", 400),
    ):
        error = doc.check(resp, method, path, status)
        assert error["error"]["code"]


def test_the_catalog_job_routes_answer_as_documented(
    client, doc: Document, items: list[str]
) -> None:  # type: ignore[no-untyped-def]
    first = items[0]
    path = "/v1/items/{item_id}/duplicates"
    doc.check(client.get(f"/v1/items/{first}/duplicates?limit=5"), "get", path, 200)
    many = doc.check(
        client.post("/v1/duplicates", json={"ids": [first, "gone-1"]}),
        "post",
        "/v1/duplicates",
        200,
    )
    assert many["missing"] == ["gone-1"]
    data = labelled_images(1, ("plants",))[0][1].read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    doc.check(client.put(f"/v1/blobs/{sha}", data=data), "put", "/v1/blobs/{sha256}", 200)
    queued = doc.check(
        client.post(
            "/v1/batches",
            json={
                "items": [
                    {"id": "plants-0", "image_sha256": sha, "metadata": {"category": "plants"}},
                    {"id": "plants-1", "image_sha256": sha, "metadata": {"price": "cheap"}},
                ]
            },
        ),
        "post",
        "/v1/batches",
        202,
    )
    assert queued["rejected"][0]["code"] == "invalid_metadata"
    assert wait_for_task(client, queued["task_id"])["status"] == "succeeded"
    updated = doc.check(
        client.post(
            "/v1/batches/metadata",
            json={"items": [{"id": "plants-0", "metadata": {"brand": "b"}}], "mode": "merge"},
        ),
        "post",
        "/v1/batches/metadata",
        200,
    )
    assert updated["updated"] == ["plants-0"]
    deleted = doc.check(
        client.post("/v1/batches/delete", json={"ids": ["plants-0", "plants-9"]}),
        "post",
        "/v1/batches/delete",
        200,
    )
    assert deleted == {"deleted": ["plants-0"], "missing": ["plants-9"]}
    doc.check(client.get("/v1/reindex"), "get", "/v1/reindex", 200)
    page = doc.check(
        client.get("/v1/vectors", query_string={"field": "category", "limit": 50}),
        "get",
        "/v1/vectors",
        200,
    )
    assert page["items"] and page["items"][0]["model_version"]
    # With the items without a value too (`value` null there): still the documented shape.
    every = doc.check(
        client.get("/v1/vectors", query_string={"field": "brand", "unlabelled": "true"}),
        "get",
        "/v1/vectors",
        200,
    )
    assert every["skipped"] == 0 and every["items"]


def test_an_answer_that_drifts_from_its_model_fails(
    client, doc: Document, items: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """The check above would catch a route adding, dropping or retyping a field."""
    item = client.get(f"/v1/items/{items[0]}").get_json()
    schema = doc.schema("get", "/v1/items/{item_id}", 200)
    jsonschema.validate(item, schema)
    for drifted in (
        {**item, "thumbnail": item["thumbnail_url"]},
        {k: v for k, v in item.items() if k != "image_url"},
        {**item, "tenant": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(drifted, schema)
    # every route of the test's module is covered by one check or another
    assert all(re.match(r"/(v1|healthz)", path) for _, path in doc.checked)


def test_the_tag_region_and_explain_routes_answer_as_documented(
    client, doc: Document, items: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """Issue #20's answers (tags, region search, explain) match their declared models."""
    first, second = items[:2]
    item = doc.check(client.get(f"/v1/items/{first}"), "get", "/v1/items/{item_id}", 200)
    assert item["tags"] and item["labels"][0]["name"] in item["tags"]
    tags = doc.check(client.get("/v1/tags?limit=5&category=animals"), "get", "/v1/tags", 200)
    assert 1 <= len(tags["tags"]) <= 5
    tag = item["tags"][0]
    page = doc.check(client.get(f"/v1/items?q={tag}"), "get", "/v1/items", 200)
    assert first in {i["id"] for i in page["items"]}
    photo = labelled_images(1, ("animals",))[0][1].read_bytes()
    found = doc.check(
        client.post(
            "/v1/search?limit=2",
            data={"image": (io.BytesIO(photo), "q.png"), "box": "0,0,0.5,1"},
            content_type="multipart/form-data",
        ),
        "post",
        "/v1/search",
        200,
    )
    assert found["query"]["box"] == {"x": 0, "y": 0, "width": 0.5, "height": 1}
    explained = doc.check(
        client.post("/v1/explain", data={"id": first, "result": second}),
        "post",
        "/v1/explain",
        200,
    )
    assert explained["query"]["id"] == first and explained["result"]["id"] == second
    by_photo = doc.check(
        client.post(
            "/v1/explain",
            data={"image": (io.BytesIO(photo), "q.png"), "box": "0,0,0.5,1", "result": first},
            content_type="multipart/form-data",
        ),
        "post",
        "/v1/explain",
        200,
    )
    assert by_photo["query"]["box"]["width"] == 0.5
