"""The query side of the API on the embedded default (real worker, real model, qdrant-edge):
filters inside the search, tenants, pagination, grouping, diversity, recommend/discover,
batches, photo search refined by likes, thumbnails, facets and the jobs view."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from support import labelled_images, wait_for_task

CATEGORIES = ("animals", "food", "plants", "vehicles")
PER_CATEGORY = 4


def _error(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"]["code"] == code
    return body["error"]


def _post(client, item_id: str, data: bytes, meta: dict, *, job=None, tenant=None):  # type: ignore[no-untyped-def]
    form: dict[str, Any] = {"id": item_id, "image": (io.BytesIO(data), "i.png")}
    form["metadata"] = json.dumps(meta)
    if job:
        form["job"] = job
    headers = {"X-Tenant": tenant} if tenant else {}
    return client.post("/v1/items", data=form, headers=headers, content_type="multipart/form-data")


def _ids(body: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in body["items"]]


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """16 real photos in 4 categories with brand, price and stock; tenant "other" holds
    copies of the first 3 (same images, so the same vectors) under the same ids."""
    items: dict[str, dict[str, Any]] = {}
    tasks = []
    for n, (category, path) in enumerate(labelled_images(PER_CATEGORY, CATEGORIES)):
        item_id = f"{category}-{n % PER_CATEGORY}"
        meta = {
            "category": category,
            "brand": "acme" if n % 2 else "zeta",
            "price": float(10 + n),
            "in_stock": n % 3 != 0,
        }
        items[item_id] = {"path": path, **meta}
        resp = _post(client, item_id, path.read_bytes(), meta, job="catalog-load")
        tasks.append((resp, {}))
        if n < 3:
            resp = _post(client, item_id, path.read_bytes(), meta, tenant="other")
            tasks.append((resp, {"X-Tenant": "other"}))
    for resp, headers in tasks:
        assert resp.status_code == 202, resp.get_json()
        status = wait_for_task(client, resp.get_json()["task_id"], headers=headers)
        assert status["status"] == "succeeded"
    return items


def test_filters_run_inside_the_search(client, catalog) -> None:  # type: ignore[no-untyped-def]
    # An animal's nearest neighbours are mostly animals; a food filter applied after a
    # top-4 search would come back short. Inside the search it finds all 4 foods.
    body = client.get("/v1/items/animals-0/similar?limit=4&category=food").get_json()
    assert sorted(_ids(body)) == sorted(i for i in catalog if i.startswith("food-"))
    assert all(hit["metadata"]["category"] == "food" for hit in body["items"])


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("category=food,plants", lambda m: m["category"] in ("food", "plants")),
        ("category=food&category=vehicles", lambda m: m["category"] in ("food", "vehicles")),
        ("price_min=14&price_max=20.5", lambda m: 14 <= m["price"] <= 20.5),
        ("in_stock=false", lambda m: m["in_stock"] is False),
        ("brand=acme&in_stock=true", lambda m: m["brand"] == "acme" and m["in_stock"]),
    ],
)
def test_each_filter_keeps_exactly_the_matching_items(client, catalog, query, keep) -> None:  # type: ignore[no-untyped-def]
    expected = {i for i, meta in catalog.items() if keep(meta) and i != "plants-0"}

    body = client.get(f"/v1/items/plants-0/similar?limit=100&{query}").get_json()

    assert set(_ids(body)) == expected
    browse = client.get(f"/v1/items?limit=100&{query}").get_json()
    assert {i["id"] for i in browse["items"]} == {i for i, m in catalog.items() if keep(m)}
    assert browse["total"] == len(browse["items"])


def test_a_tenant_sees_and_queries_only_its_own_items(client, catalog) -> None:  # type: ignore[no-untyped-def]
    mine = client.get("/v1/items/animals-0/similar?limit=100").get_json()
    assert {hit["tenant"] for hit in mine["items"]} == {"default"}
    assert len(mine["items"]) == len(catalog) - 1

    theirs = client.get("/v1/items/animals-0/similar?limit=100", headers={"X-Tenant": "other"})
    assert theirs.status_code == 200
    assert {hit["tenant"] for hit in theirs.get_json()["items"]} == {"other"}
    assert len(theirs.get_json()["items"]) == 2
    listing = client.get("/v1/items", headers={"X-Tenant": "other"}).get_json()
    assert listing["total"] == 3
    _error(client.get("/v1/items/vehicles-3", headers={"X-Tenant": "other"}), 404, "item_not_found")
    recommend = client.post(
        "/v1/recommend", json={"positive": ["food-0"]}, headers={"X-Tenant": "other"}
    )
    _error(recommend, 404, "item_not_found")
    _error(client.get("/v1/items", headers={"X-Tenant": "bad tenant"}), 400, "invalid_tenant")


def test_browse_newest_first_pages_through_the_catalog(client, catalog) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/items?sort=newest: the most recently ingested first, every item once, under
    the filters too."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "sort=newest&limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/v1/items?{query}").get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(i["id"] for i in seen) == sorted(catalog)
    times = [i["ingested_at"] for i in seen]
    assert times == sorted(times, reverse=True)
    food = client.get("/v1/items?sort=newest&category=food&limit=100").get_json()
    assert sorted(i["id"] for i in food["items"]) == sorted(c for c in catalog if "food" in c)
    for wrong in ("oldest", ""):  # an empty sort is no sort named (schemathesis found it)
        bad = client.get(f"/v1/items?sort={wrong}")
        error = bad.get_json()["error"]
        assert bad.status_code == 400 and error["code"] == "invalid_parameter", wrong
        assert error["field"] == "sort"
    assert client.get("/v1/items?sort=newest&cursor=nope").status_code == 400


def test_browse_by_id_words_and_name_prefix(client, catalog) -> None:  # type: ignore[no-untyped-def]
    """GET /v1/items?q=: the words of an id, the start of a word of a name or title."""
    tenant = {"X-Tenant": "search"}
    paths = [v["path"] for v in catalog.values()][:3]
    rows = {
        "shop.shoes.red-runner": {"name": "Red Runner", "category": "shoes"},
        "shop.shoes.trail-2": {"title": "Trail shoe, size 42", "category": "shoes"},
        "shop.food.crumb-7": {"category": "food"},
    }
    for (item_id, meta), path in zip(rows.items(), paths, strict=True):
        resp = _post(client, item_id, path.read_bytes(), meta, tenant="search")
        assert wait_for_task(client, resp.get_json()["task_id"], headers=tenant)["status"] == (
            "succeeded"
        )

    def found(query: str) -> list[str]:
        body = client.get(f"/v1/items?{query}", headers=tenant).get_json()
        assert body["total"] == len(body["items"])
        return sorted(i["id"] for i in body["items"])

    assert found("q=crumb") == ["shop.food.crumb-7"]
    assert found("q=shoes") == ["shop.shoes.red-runner", "shop.shoes.trail-2"]
    assert found("q=run") == ["shop.shoes.red-runner"]
    assert found("q=TRAIL%20sh") == ["shop.shoes.trail-2"]
    assert found("q=shoes&category=food") == []
    assert found("q=red&sort=newest") == ["shop.shoes.red-runner"]
    assert client.get("/v1/items?q=runner").get_json()["total"] == 0  # another tenant's
    for bad in ("q=", "q=%20", "q=" + "x" * 201):
        resp = client.get(f"/v1/items?{bad}", headers=tenant)
        assert resp.status_code == 400 and resp.get_json()["error"]["field"] == "q", bad


def test_offset_pages_through_the_ranking(client, catalog) -> None:  # type: ignore[no-untyped-def]
    whole = client.get("/v1/items/food-1/similar?limit=12").get_json()
    pages, offset = [], 0
    while offset is not None:
        page = client.get(f"/v1/items/food-1/similar?limit=5&offset={offset}").get_json()
        pages.extend(_ids(page))
        offset = page["next_offset"]
        if offset is not None and offset >= 12:
            break
    assert pages[:12] == _ids(whole)


def test_score_threshold_cuts_the_tail(client, catalog) -> None:  # type: ignore[no-untyped-def]
    scores = [
        h["score"] for h in client.get("/v1/items/food-1/similar?limit=15").get_json()["items"]
    ]
    threshold = (scores[3] + scores[4]) / 2
    cut = client.get(f"/v1/items/food-1/similar?limit=15&score_threshold={threshold}").get_json()
    assert [h["score"] for h in cut["items"]] == scores[:4]
    assert cut["next_offset"] is None


def test_group_by_keeps_at_most_n_per_category(client, catalog) -> None:  # type: ignore[no-untyped-def]
    body = client.get(
        "/v1/items/animals-0/similar?group_by=category&group_size=2&limit=3"
    ).get_json()

    groups = body["groups"]
    assert len(groups) == 3 and len({g["key"] for g in groups}) == 3
    assert all(1 <= len(g["items"]) <= 2 for g in groups)
    assert all(h["metadata"]["category"] == g["key"] for g in groups for h in g["items"])
    best = [g["items"][0]["score"] for g in groups]
    assert best == sorted(best, reverse=True)
    assert sorted(_ids(body)) == sorted(h["id"] for g in groups for h in g["items"])
    by_brand = client.get("/v1/items/animals-0/similar?group_by=brand&limit=5").get_json()
    assert sorted(g["key"] for g in by_brand["groups"]) == ["acme", "zeta"]


def test_diversity_spreads_the_page(client, catalog) -> None:  # type: ignore[no-untyped-def]
    plain = client.get("/v1/items/vehicles-0/similar?limit=6").get_json()
    diverse = client.get("/v1/items/vehicles-0/similar?limit=6&diversity=0.9").get_json()
    same = client.get("/v1/items/vehicles-0/similar?limit=6&diversity=0").get_json()

    assert _ids(same) == _ids(plain)
    assert _ids(diverse)[0] == _ids(plain)[0]
    assert _ids(diverse) != _ids(plain)

    def categories(body: dict[str, Any]) -> int:
        return len({h["metadata"]["category"] for h in body["items"]})

    assert categories(diverse) >= categories(plain)


def _similarities(client, item_id: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Cosine similarity of every other item to ``item_id``, as the API reports it."""
    body = client.get(f"/v1/items/{item_id}/similar?limit=100").get_json()
    return {hit["id"]: hit["score"] for hit in body["items"]}


def _best_score(positive: list[float], negative: list[float]) -> float:
    """Qdrant's best_score: the best similarity to a liked example, squashed into (0, 1);
    negative (and so below every other) when a disliked example is closer still."""
    best_pos, best_neg = max(positive), max(negative, default=float("-inf"))
    x = best_pos if best_pos > best_neg else best_neg
    squashed = 0.5 * (x / (1 + abs(x)) + 1)
    return squashed if best_pos > best_neg else -squashed


def test_recommend_from_liked_and_disliked_items(client, catalog) -> None:  # type: ignore[no-untyped-def]
    liked, disliked = ["animals-0", "animals-1"], ["food-0"]
    sims = {i: _similarities(client, i) for i in liked + disliked}

    resp = client.post(
        "/v1/recommend", json={"positive": liked, "negative": disliked, "limit": 100}
    )

    assert resp.status_code == 200, resp.get_json()
    result = resp.get_json()
    assert result["query"] == {"positive": liked, "negative": disliked, "strategy": "best_score"}
    assert sorted(_ids(result)) == sorted(set(catalog) - {*liked, *disliked})
    for hit in result["items"]:
        expected = _best_score(
            [sims[i][hit["id"]] for i in liked], [sims[i][hit["id"]] for i in disliked]
        )
        assert hit["score"] == pytest.approx(expected, abs=1e-4), hit["id"]
    scores = [hit["score"] for hit in result["items"]]
    assert scores == sorted(scores, reverse=True)
    # Items nearer the disliked one than to both liked ones sink below all the others.
    sunk = [h["id"] for h in result["items"] if h["score"] < 0]
    closer_to_disliked = {
        i for i in _ids(result) if sims["food-0"][i] > max(sims[p][i] for p in liked)
    }
    assert set(sunk) == closer_to_disliked and sunk
    # With one liked item and nothing disliked, recommend ranks as "similar items" does.
    one = client.post("/v1/recommend", json={"positive": ["animals-0"], "limit": 8}).get_json()
    assert _ids(one) == list(sims["animals-0"])[:8]
    summed = client.post(
        "/v1/recommend",
        json={
            "positive": ["animals-0"],
            "strategy": "sum_scores",
            "filter": {"category": ["food", "plants"], "in_stock": True},
            "group_by": "category",
            "limit": 2,
        },
    ).get_json()
    assert {g["key"] for g in summed["groups"]} <= {"food", "plants"}
    assert all(h["metadata"]["in_stock"] for h in summed["items"])


def test_discover_with_context_pairs(client, catalog) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/discover",
        json={
            "target": "plants-0",
            "context": [{"positive": "plants-1", "negative": "vehicles-0"}],
            "limit": 5,
        },
    )
    assert resp.status_code == 200, resp.get_json()
    ids = _ids(resp.get_json())
    assert len(ids) == 5 and not {"plants-0", "plants-1", "vehicles-0"} & set(ids)


def test_batch_answers_each_query_as_its_own_endpoint_does(client, catalog) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/batch",
        json={
            "queries": [
                {"id": "food-2", "limit": 3},
                {"id": "missing-item"},
                {"positive": ["plants-2"], "negative": ["animals-3"], "limit": 4},
                {"id": "food-2", "limit": 3, "filter": {"category": "vehicles"}, "diversity": 0.5},
            ]
        },
    )
    assert resp.status_code == 200, resp.get_json()
    results = resp.get_json()["results"]

    alone = client.get("/v1/items/food-2/similar?limit=3").get_json()
    assert _ids(results[0]) == _ids(alone)
    assert results[1]["error"]["code"] == "item_not_found" and "items" not in results[1]
    rec = client.post(
        "/v1/recommend", json={"positive": ["plants-2"], "negative": ["animals-3"], "limit": 4}
    )
    assert _ids(results[2]) == _ids(rec.get_json())
    assert {h["metadata"]["category"] for h in results[3]["items"]} == {"vehicles"}


def test_photo_search_refined_by_likes(client, catalog) -> None:  # type: ignore[no-untyped-def]
    photo = catalog["vehicles-1"]["path"].read_bytes()

    def search(query: str, **form: str) -> dict[str, Any]:
        data: dict[str, Any] = {"image": (io.BytesIO(photo), "q.png"), **form}
        resp = client.post(f"/v1/search?{query}", data=data, content_type="multipart/form-data")
        assert resp.status_code == 200, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    plain = search("limit=100")
    assert _ids(plain)[0] == "vehicles-1"
    to_photo = {hit["id"]: hit["score"] for hit in plain["items"]}
    liked, disliked = ["food-0", "food-1"], ["vehicles-2"]
    sims = {i: _similarities(client, i) for i in liked + disliked}

    refined = search("limit=100", positive=",".join(liked), negative="vehicles-2")

    assert refined["query"]["positive"] == liked and refined["query"]["negative"] == disliked
    assert sorted(_ids(refined)) == sorted(set(catalog) - {*liked, *disliked})
    for hit in refined["items"]:
        positive = [to_photo[hit["id"]], *(sims[i][hit["id"]] for i in liked)]
        expected = _best_score(positive, [sims["vehicles-2"][hit["id"]]])
        assert hit["score"] == pytest.approx(expected, abs=1e-3), hit["id"]
    grouped = search("group_by=category&group_size=1&limit=4&in_stock=true")
    assert len(grouped["groups"]) == 4
    assert all(h["metadata"]["in_stock"] for h in grouped["items"])


def test_results_carry_id_score_metadata_and_served_image_urls(client, catalog) -> None:  # type: ignore[no-untyped-def]
    hit = client.get("/v1/items/food-3/similar?limit=1").get_json()["items"][0]
    assert {"id", "score", "metadata", "image_url", "thumbnail_url"} <= set(hit)
    original = client.get(hit["image_url"])
    assert original.status_code == 200
    assert original.data == catalog[hit["id"]]["path"].read_bytes()
    other = client.get("/v1/items/animals-1", headers={"X-Tenant": "other"}).get_json()
    assert "tenant=other" in other["image_url"]
    assert client.get(other["thumbnail_url"]).status_code == 200


def test_thumbnails_are_made_once(client, catalog, embedded_settings) -> None:  # type: ignore[no-untyped-def]
    first = client.get("/v1/items/plants-3/thumbnail?size=128")
    assert first.status_code == 200 and first.mimetype == "image/webp"
    with Image.open(io.BytesIO(first.data)) as thumb:
        assert max(thumb.size) == 128
        assert thumb.mode == "RGBA"  # the stamps' transparency is kept
    files = list((embedded_settings.data_dir / "thumbnails").rglob("*-128.webp"))
    assert len(files) == 1
    made = files[0].stat().st_mtime_ns

    again = client.get("/v1/items/plants-3/thumbnail?size=128")
    assert again.data == first.data
    assert files[0].stat().st_mtime_ns == made
    default = client.get("/v1/items/plants-3/thumbnail")
    with Image.open(io.BytesIO(default.data)) as thumb:
        assert max(thumb.size) <= 256
    _error(client.get("/v1/items/plants-3/thumbnail?size=300"), 400, "invalid_parameter")
    _error(client.get("/v1/items/nope/thumbnail"), 404, "item_not_found")


def test_facets_count_categories(client, catalog) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/v1/facets?field=category").get_json()
    assert {v["value"]: v["count"] for v in body["values"]} == dict.fromkeys(
        CATEGORIES, PER_CATEGORY
    )
    in_stock = client.get("/v1/facets?field=brand&in_stock=true").get_json()
    counts = {v["value"]: v["count"] for v in in_stock["values"]}
    assert sum(counts.values()) == sum(1 for m in catalog.values() if m["in_stock"])


def test_jobs_view_reports_the_tenants_tasks(client, catalog) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/v1/jobs").get_json()
    jobs = {j["job"]: j for j in body["jobs"]}
    load = jobs["catalog-load"]
    assert load["tasks"] == load["succeeded"] == len(catalog)
    assert load["items_indexed"] == len(catalog) and load["done"]
    assert body["summary"]["succeeded"] >= len(catalog)
    assert all(t["status"] == "succeeded" for t in body["tasks"] if t["job"] == "catalog-load")
    theirs = client.get("/v1/jobs", headers={"X-Tenant": "other"}).get_json()
    assert theirs["summary"]["tasks"] == 3 and {t["job"] for t in theirs["tasks"]} == {None}
    task_id = body["tasks"][0]["task_id"]
    _error(client.get(f"/v1/tasks/{task_id}", headers={"X-Tenant": "other"}), 404, "task_not_found")


@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "code", "field"),
    [
        (
            "get",
            "/v1/items/food-0/similar?group_by=color",
            None,
            400,
            "invalid_parameter",
            "group_by",
        ),
        (
            "get",
            "/v1/items/food-0/similar?group_by=category&offset=3",
            None,
            400,
            "invalid_parameter",
            "offset",
        ),
        (
            "get",
            "/v1/items/food-0/similar?group_by=category&diversity=0.5",
            None,
            400,
            "invalid_parameter",
            "diversity",
        ),
        (
            "get",
            "/v1/items/food-0/similar?diversity=2",
            None,
            400,
            "invalid_parameter",
            "diversity",
        ),
        (
            "get",
            "/v1/items/food-0/similar?price_min=cheap",
            None,
            400,
            "invalid_parameter",
            "price_min",
        ),
        (
            "get",
            "/v1/items/food-0/similar?in_stock=maybe",
            None,
            400,
            "invalid_parameter",
            "in_stock",
        ),
        (
            "get",
            "/v1/items/food-0/similar?score_threshold=nan",
            None,
            400,
            "invalid_parameter",
            "score_threshold",
        ),
        ("post", "/v1/recommend", {}, 400, "missing_field", "positive"),
        ("post", "/v1/recommend", {"positive": []}, 400, "invalid_parameter", "positive"),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "strategy": "best"},
            400,
            "invalid_parameter",
            "strategy",
        ),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "colour": "red"},
            400,
            "invalid_parameter",
            "colour",
        ),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "limit": None},
            400,
            "invalid_parameter",
            "limit",
        ),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "filter": {"in_stock": "yes"}},
            400,
            "invalid_parameter",
            "filter.in_stock",
        ),
        ("post", "/v1/recommend", {"positive": ["nope"]}, 404, "item_not_found", "positive"),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "negative": ["nope"]},
            404,
            "item_not_found",
            "negative",
        ),
        (
            "post",
            "/v1/recommend",
            {"positive": ["food-0"], "diversity": 0.5},
            400,
            "invalid_parameter",
            "diversity",
        ),
        ("post", "/v1/discover", {"target": "food-0"}, 400, "missing_field", "context"),
        (
            "post",
            "/v1/discover",
            {"target": "food-0", "context": [{"positive": "food-1"}]},
            400,
            "missing_field",
            "context[0].negative",
        ),
        ("post", "/v1/batch", {"queries": []}, 400, "invalid_parameter", "queries"),
        ("post", "/v1/batch", {"queries": [{"limit": 3}]}, 400, "missing_field", "queries[0].id"),
        (
            "post",
            "/v1/batch",
            {"queries": [{"id": "food-0", "group_by": "category"}]},
            400,
            "invalid_parameter",
            "queries[0].group_by",
        ),
        ("post", "/v1/batch", {"queries": [{"id": "a b"}]}, 400, "invalid_id", "queries[0].id"),
    ],
)
def test_bad_queries_get_clear_errors(
    client, catalog, method, url, payload, status, code, field
) -> None:  # type: ignore[no-untyped-def]
    resp = (
        getattr(client, method)(url, json=payload)
        if payload is not None
        else getattr(client, method)(url)
    )
    assert _error(resp, status, code).get("field") == field


def test_a_body_that_is_not_json_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/recommend", data="positive=food-0")
    _error(resp, 415, "unsupported_media_type")
    broken = client.post("/v1/recommend", data="{", content_type="application/json")
    _error(broken, 400, "invalid_json")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/recommend",
        "/v1/discover",
        "/v1/batch",
        "/v1/batches",
        "/v1/batches/metadata",
        "/v1/batches/delete",
        "/v1/duplicates",
    ],
)
@pytest.mark.parametrize("payload", [[1, 2], "food-0", 3])
def test_json_that_is_not_an_object_is_the_same_error_everywhere(client, url, payload) -> None:  # type: ignore[no-untyped-def]
    # Every endpoint that takes a JSON body refuses a JSON value that is not an object alike.
    error = _error(client.post(url, json=payload), 400, "invalid_json")
    assert error["field"] == "body"
