"""Tags and keyword search on the embedded default (real worker, real model, qdrant-edge):
the classifier's tags on items, q= on GET /v1/items and as a filter of every query, and
GET /v1/tags."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import skimage.data
from PIL import Image

from support import wait_for_task

# scikit-image's photos: a cup of coffee, a cat, a rocket on its pad, a camera on a tripod.
PHOTOS = {"coffee-1": "coffee", "cat-1": "chelsea", "rocket-1": "rocket", "camera-1": "camera"}


def _png(name: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(out, "PNG")
    return out.getvalue()


def _ids(body: dict[str, Any]) -> list[str]:
    return sorted(hit["id"] for hit in body["items"])


@pytest.fixture(scope="module")
def tagged(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The four photos, indexed in tenant "tags", as the API returns them."""
    headers = {"X-Tenant": "tags"}
    for item_id, name in PHOTOS.items():
        form = {"id": item_id, "image": (io.BytesIO(_png(name)), "p.png"), "metadata": "{}"}
        resp = client.post("/v1/items", data=form, headers=headers)
        assert resp.status_code == 202, resp.get_json()
        assert wait_for_task(client, resp.get_json()["task_id"], headers=headers)["status"] == (
            "succeeded"
        )
    return {i: client.get(f"/v1/items/{i}", headers=headers).get_json() for i in PHOTOS}


H = {"X-Tenant": "tags"}


def test_items_carry_the_classifiers_labels_and_their_parents(tagged) -> None:  # type: ignore[no-untyped-def]
    coffee = tagged["coffee-1"]
    assert coffee["labels"][0]["name"] == "espresso"
    assert 0.1 <= coffee["labels"][0]["score"] <= 1
    # The label's WordNet parents are tags too: a search for "coffee" finds an espresso.
    assert {"espresso", "coffee", "beverage"} <= set(coffee["tags"])
    assert "cat" in tagged["cat-1"]["tags"] and "cat" not in coffee["tags"]


def test_q_finds_items_by_tag_on_every_query(client, tagged) -> None:  # type: ignore[no-untyped-def]
    def listed(query: str) -> list[str]:
        return _ids(client.get(f"/v1/items?{query}", headers=H).get_json())

    assert listed("q=cat") == ["cat-1"]
    assert listed("q=Beverages") == ["coffee-1"]  # case and a plural do not matter
    assert listed("q=coffee") == ["coffee-1"]  # the tag, and the id's word
    assert listed("q=tripod") == ["camera-1"]
    assert listed("q=unicorn") == []
    # The same q filters the similarity queries, inside the vector search.
    similar = client.get("/v1/items/rocket-1/similar?q=cat", headers=H).get_json()
    assert _ids(similar) == ["cat-1"]
    body = {"positive": ["rocket-1"], "q": "coffee"}
    assert _ids(client.post("/v1/recommend", json=body, headers=H).get_json()) == ["coffee-1"]
    pair = {"positive": "cat-1", "negative": "camera-1"}
    body = {"target": "rocket-1", "context": [pair], "q": "tripod"}
    assert _ids(client.post("/v1/discover", json=body, headers=H).get_json()) == []  # in context
    body = {"target": "cat-1", "context": [{"positive": "rocket-1", "negative": "camera-1"}]}
    found = client.post("/v1/discover", json={**body, "q": "beverage"}, headers=H).get_json()
    assert _ids(found) == ["coffee-1"]
    batch = {"queries": [{"id": "rocket-1", "q": "tripod"}, {"positive": ["cat-1"], "q": "cat"}]}
    first, second = client.post("/v1/batch", json=batch, headers=H).get_json()["results"]
    assert _ids(first) == ["camera-1"] and _ids(second) == []  # the example itself is left out
    photo = {"image": (io.BytesIO(_png("coffee")), "q.png")}
    found = client.post("/v1/search?q=cat", data=photo, headers=H).get_json()
    assert _ids(found) == ["cat-1"]


def test_tags_are_counted(client, tagged) -> None:  # type: ignore[no-untyped-def]
    tags = client.get("/v1/tags?limit=1000", headers=H).get_json()["tags"]
    counts = {t["tag"]: t["count"] for t in tags}
    every = {tag for item in tagged.values() for tag in item["tags"]}
    assert set(counts) == every
    assert counts["cat"] == 1
    assert [t["count"] for t in tags] == sorted((t["count"] for t in tags), reverse=True)
    assert len(client.get("/v1/tags?limit=2", headers=H).get_json()["tags"]) == 2
    assert client.get("/v1/tags", headers={"X-Tenant": "nobody"}).get_json() == {"tags": []}


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("get", "/v1/items/cat-1/similar?q=%20", None, "q"),
        ("get", "/v1/items/cat-1/similar?q=" + "x" * 201, None, "q"),
        ("post", "/v1/recommend", {"positive": ["cat-1"], "q": ""}, "q"),
        ("post", "/v1/recommend", {"positive": ["cat-1"], "q": 3}, "q"),
        # q is a field of a batch entry's model: its error names it by its path, as limit's.
        ("post", "/v1/batch", {"queries": [{"id": "cat-1", "q": " "}]}, "queries[0].q"),
        ("get", "/v1/tags?limit=0", None, "limit"),
    ],
)
def test_a_bad_q_is_a_400_naming_it(client, tagged, method, url, body, field) -> None:  # type: ignore[no-untyped-def]
    resp = getattr(client, method)(url, headers=H, **({"json": body} if body else {}))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["field"] == field and error["code"] == "invalid_parameter", json.dumps(error)
