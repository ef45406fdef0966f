"""The web gallery in a real headless Chromium (Debian's `chromium`, driven by Playwright),
against the embedded service over real HTTP: browse with filters, click an item for similar
items with scores, mark likes and dislikes, group the results, drop and pick a photo, and
follow the ingestion jobs. Screenshots go to build/screenshots/ (support.SCREENSHOTS); the
browser and page fixtures are in tests/e2e/conftest.py."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    SCREENSHOTS,
    composite,
    index_items,
    labelled_images,
    served_over_http,
    wait_for_task,
)

CATEGORIES = ("animals", "food", "plants", "vehicles")
PER_CATEGORY = 4

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    items = []
    for n, (category, path) in enumerate(labelled_images(PER_CATEGORY, CATEGORIES)):
        meta = {
            "category": category,
            "brand": "acme" if n % 2 else "zeta",
            "price": float(5 + 3 * n),
            "in_stock": n % 5 != 0,
        }
        items.append((f"{category}-{n % PER_CATEGORY}", path, meta))
    index_items(client, items, job="gallery-load")
    return {item_id: path for item_id, path, _ in items}


@pytest.fixture(scope="module")
def base_url(embedded, catalog) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with served_over_http(embedded.app) as url:
        yield url


def shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def card_ids(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return list(page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.id)"))


def result_scores(page) -> list[float]:  # type: ignore[no-untyped-def]
    texts = page.eval_on_selector_all("#results .card .score", "els => els.map(e => e.textContent)")
    return [float(t) for t in texts]


def wait_for_results(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#results .card")


def test_browse_filter_and_find_similar_items(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {len(catalog)}")
    page.wait_for_selector("#filter-category .chip")
    assert page.locator("#stat").inner_text().startswith(f"{len(catalog)} items")
    # Thumbnails, not the full images, fill the grid, and every one loads.
    page.wait_for_function(
        "[...document.querySelectorAll('#catalog img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert "/thumbnail" in page.get_attribute("#catalog .card img", "src")
    shot(page, "01-catalog")

    page.click("#filter-category .chip[data-value=food]")
    page.wait_for_function("document.querySelectorAll('#catalog .card').length === 4")
    assert sorted(card_ids(page, "#catalog .card")) == [f"food-{i}" for i in range(4)]
    page.select_option("#filter-in-stock", "true")
    page.wait_for_function("document.querySelectorAll('#catalog .card').length < 4")
    shot(page, "02-filtered")
    page.select_option("#filter-in-stock", "")
    page.click("#filter-category .chip[data-value=food]")
    page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {len(catalog)}")

    with page.expect_response(lambda r: "/similar" in r.url) as similar:
        page.click("#catalog .card[data-id=animals-0] img")
    assert similar.value.status == 200
    wait_for_results(page)
    ids = card_ids(page, "#results .card")
    scores = result_scores(page)
    assert len(ids) == 12 and "animals-0" not in ids
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert "Looks like animals-0" in page.inner_text("#query")
    assert page.get_attribute("#catalog .card.selected", "data-id") == "animals-0"
    shot(page, "03-similar-items")


def test_likes_and_dislikes_refine_the_results(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.click("#catalog .card[data-id=plants-0] img")
    wait_for_results(page)
    before = card_ids(page, "#results .card")
    liked, disliked = before[1], before[0]

    with page.expect_response(lambda r: r.url.endswith("/v1/recommend")) as first:
        page.click(f"#results .card[data-id='{liked}'] button.like")
    body = first.value.json()
    assert body["query"]["positive"] == ["plants-0", liked]
    wait_for_results(page)
    with page.expect_response(lambda r: r.url.endswith("/v1/recommend")) as second:
        page.click(f"#results .card[data-id='{disliked}'] button.dislike")
    assert second.value.json()["query"]["negative"] == [disliked]
    page.wait_for_selector("#feedback:not([hidden]) .tag.neg")
    wait_for_results(page)

    refined = card_ids(page, "#results .card")
    assert liked not in refined and disliked not in refined and refined != before
    assert page.inner_text("#feedback .tag.pos") == liked
    assert "refined by your likes" in page.inner_text("#query")
    shot(page, "04-refined-by-likes")

    with page.expect_response(lambda r: r.url.endswith("/v1/recommend")) as grouped:
        page.select_option("#group-by", "category")
    assert "groups" in grouped.value.json()
    page.wait_for_selector("#results .group h3")
    groups = page.eval_on_selector_all("#results .group", "els => els.map(e => e.dataset.group)")
    assert len(groups) == len(set(groups)) >= 2
    for group in groups:
        assert page.locator(f"#results .group[data-group='{group}'] .card").count() <= 2
    shot(page, "05-grouped-by-category")

    page.click("#clear-votes")
    page.wait_for_selector("#feedback[hidden]", state="attached")


def test_drop_or_pick_a_photo(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.wait_for_selector("#catalog .card")
    photo = catalog["vehicles-1"]
    encoded = base64.b64encode(photo.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "image/png"}));
            return dt;
        }""",
        [encoded, photo.name],
    )
    with page.expect_response(lambda r: "/v1/search" in r.url) as search:
        page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    assert search.value.status == 200
    wait_for_results(page)
    assert card_ids(page, "#results .card")[0] == "vehicles-1"
    assert result_scores(page)[0] == pytest.approx(1.0, abs=0.002)
    assert "Looks like your photo" in page.inner_text("#query")
    page.wait_for_function("document.querySelector('#query-image').naturalWidth > 0")
    shot(page, "06-dropped-photo")

    with page.expect_response(lambda r: "/v1/search" in r.url) as liked:
        page.click("#results .card:nth-child(2) button.like")
    assert liked.value.json()["query"]["positive"]

    other = catalog["food-2"]
    with page.expect_response(lambda r: "/v1/search" in r.url):
        page.set_input_files("#photo", str(other))
    page.wait_for_function("document.querySelector('#results .card')?.dataset.id === 'food-2'")
    assert page.locator("#feedback").is_hidden()


def test_jobs_page_shows_ingestion_progress(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/jobs")
    row = page.wait_for_selector("#jobs tr[data-job=gallery-load]")
    assert f"{len(catalog)}/{len(catalog)}" in row.inner_text()
    succeeded = page.inner_text(".summary .box[data-count=succeeded] b")
    assert int(succeeded) >= len(catalog)
    assert page.locator("#tasks .status.succeeded").count() >= len(catalog)
    shot(page, "07-ingestion-jobs")


NAMED = {"X-Tenant": "named-shop"}


@pytest.fixture(scope="module")
def named_catalog(client, catalog) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A tenant of its own whose items have dotted ids, some with a name: the labels."""
    items = {
        "shop.shoes.red-runner": {"category": "shoes", "name": "Red runner"},
        "shop.shoes.trail-2": {"category": "shoes", "title": "Trail shoe, size 42"},
        "shop.food.crumb-7": {"category": "food"},
    }
    paths = list(catalog.values())
    for (item_id, meta), path in zip(items.items(), paths, strict=False):
        form = {
            "id": item_id,
            "metadata": json.dumps(meta),
            "image": (io.BytesIO(path.read_bytes()), path.name),
        }
        resp = client.post("/v1/items", data=form, headers=NAMED)
        assert resp.status_code == 202, resp.get_json()
        assert wait_for_task(client, resp.get_json()["task_id"], headers=NAMED)["status"] == (
            "succeeded"
        )
    return {"shop.shoes.red-runner": "Red runner", "shop.shoes.trail-2": "Trail shoe, size 42",
            "shop.food.crumb-7": "crumb-7"}  # fmt: skip


def test_every_view_has_a_url_that_reloads_and_goes_back(page, catalog) -> None:  # type: ignore[no-untyped-def]
    # A shared link: an item's similar items under a filter.
    page.goto("/?item=food-1&category=food")
    page.wait_for_function("document.querySelectorAll('#catalog .card').length === 4")
    wait_for_results(page)
    assert "Looks like food-1" in page.inner_text("#query")
    assert page.get_attribute("#filter-category .chip.on", "data-value") == "food"
    assert set(card_ids(page, "#results .card")) <= {f"food-{i}" for i in range(4)}
    # The panel says which filters its results are under.
    assert page.inner_text("#applied") == "Filters applied: category food."
    shot(page, "08-linked-item-and-filter")

    # A click is a new view with its own URL; back returns to the previous one.
    with page.expect_response(lambda r: "/v1/items/food-2/similar" in r.url):
        page.click("#catalog .card[data-id=food-2] img")
    assert "item=food-2" in page.url and "category=food" in page.url
    page.go_back()
    page.wait_for_function("document.querySelector('#query h2')?.textContent.includes('food-1')")
    assert "item=food-1" in page.url
    page.go_forward()
    page.wait_for_function("document.querySelector('#query h2')?.textContent.includes('food-2')")

    # Filters and result options are in the URL too, and a reload shows the same view.
    page.select_option("#filter-in-stock", "true")
    page.select_option("#group-by", "brand")
    page.wait_for_selector("#results .group h3")
    assert "in_stock=true" in page.url and "group_by=brand" in page.url
    page.reload()
    page.wait_for_selector("#results .group h3")
    assert page.input_value("#filter-in-stock") == "true"
    assert page.input_value("#group-by") == "brand"
    assert page.inner_text("#applied") == (
        "Filters applied: category food · in stock; grouped by brand, at most 2 each."
    )
    assert page.get_attribute("#catalog .card.selected", "data-id") == "food-2"
    shot(page, "09-reloaded-view")

    # Back to where the first link started, then to no item at all.
    page.go_back()
    page.go_back()
    page.go_back()
    page.wait_for_function("document.querySelector('#query h2')?.textContent.includes('food-1')")
    assert page.input_value("#group-by") == "" and page.input_value("#filter-in-stock") == ""


def test_labels_tenant_link_and_find_by_id(page, catalog, named_catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/?tenant=named-shop")
    page.wait_for_function("document.querySelectorAll('#catalog .card').length === 3")
    labels = dict(
        zip(
            card_ids(page, "#catalog .card"),
            page.eval_on_selector_all(
                "#catalog .card .label", "els => els.map(e => e.textContent)"
            ),
            strict=True,
        )
    )
    assert labels == named_catalog
    categories = page.eval_on_selector_all(
        "#catalog .card .category", "els => els.map(e => e.textContent)"
    )
    assert sorted(categories) == ["food", "shoes", "shoes"]
    assert page.get_attribute("#catalog .card[data-id='shop.food.crumb-7']", "title") == (
        "shop.food.crumb-7 · food"
    )
    assert "tenant: named-shop" in page.inner_text("#access-summary")

    # Newest first: the items were ingested in this order, one task each.
    with page.expect_response(lambda r: "sort=newest" in r.url):
        page.select_option("#sort", "newest")
    page.wait_for_function(
        "document.querySelector('#catalog .card')?.dataset.id === 'shop.food.crumb-7'"
    )
    assert card_ids(page, "#catalog .card") == list(reversed(list(named_catalog)))
    assert "sort=newest" in page.url and "tenant=named-shop" in page.url

    # Find an item by its id: its similar items, with a URL that keeps the tenant.
    page.fill("#find-id", "shop.shoes.trail-2")
    with page.expect_response(lambda r: "/similar" in r.url) as similar:
        page.press("#find-id", "Enter")
    assert similar.value.request.headers.get("x-tenant") == "named-shop"
    wait_for_results(page)
    assert "Looks like Trail shoe, size 42 (shop.shoes.trail-2)" in page.inner_text("#query")
    assert "tenant=named-shop" in page.url and "item=shop.shoes.trail-2" in page.url
    assert page.inner_text("#applied") == "No filter: the whole catalog."
    shot(page, "10-named-labels-find-by-id")
    # By the start of a word of a name: the catalog narrows, the search is in the URL.
    with page.expect_response(lambda r: "q=run" in r.url):
        page.fill("#find-id", "run")
        page.press("#find-id", "Enter")
    # The catalog held one card before too (the item found by its id): wait for the new one.
    page.wait_for_function(
        "document.querySelectorAll('#catalog .card').length === 1"
        " && document.querySelector('#catalog .card').dataset.id === 'shop.shoes.red-runner'"
    )
    assert card_ids(page, "#catalog .card") == ["shop.shoes.red-runner"]
    assert "q=run" in page.url
    shot(page, "11-search-by-name")
    page.reload()
    page.wait_for_function("document.querySelectorAll('#catalog .card').length === 1")
    assert page.input_value("#find-id") == "run"
    page.fill("#find-id", "no-such-item")
    page.press("#find-id", "Enter")
    page.wait_for_selector("#results .error")
    assert 'No item matches "no-such-item"' in page.inner_text("#results .error")
    assert page.locator("#catalog .card").count() == 0


def test_an_items_tags_are_shown_and_find_the_items_with_that_tag(page, client, catalog) -> None:  # type: ignore[no-untyped-def]
    # The catalog's most frequent tag that not every item has: searching it narrows.
    tags = client.get("/v1/tags?limit=1000").get_json()["tags"]
    total = client.get("/v1/items?limit=1").get_json()["total"]
    tag = next(t["tag"] for t in tags if t["count"] < total)
    expected = sorted(
        i["id"] for i in client.get(f"/v1/items?q={tag}&limit=100").get_json()["items"]
    )

    page.goto(f"/?item={expected[0]}")
    wait_for_results(page)
    item = client.get(f"/v1/items/{expected[0]}").get_json()
    chips = page.eval_on_selector_all("#item-tags .chip", "els => els.map(e => e.dataset.tag)")
    assert chips == item["tags"] and tag in chips
    assert f"Looks like: {item['labels'][0]['name']}" in page.inner_text("#item-tags")
    # The search box suggests the catalog's tags.
    page.wait_for_function("document.querySelectorAll('#tag-list option').length > 0")
    options = page.eval_on_selector_all("#tag-list option", "els => els.map(e => e.value)")
    assert options == [t["tag"] for t in tags][: len(options)]
    # Clicking a tag narrows the catalog to the items with that tag (GET /v1/items?q=).
    with page.expect_response(lambda r: "/v1/items?" in r.url and "q=" in r.url):
        page.click(f"#item-tags .chip[data-tag={json.dumps(tag)}]")
    page.wait_for_function(
        f"document.querySelectorAll('#catalog .card').length === {len(expected)}"
    )
    assert sorted(card_ids(page, "#catalog .card")) == expected
    assert page.input_value("#find-id") == tag
    shot(page, "12-tags-and-keyword-search")


def test_draw_a_box_on_the_photo_to_search_by_one_thing_in_it(page, catalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    left, right = "animals-0", "vehicles-1"
    data, boxes = composite(catalog[left], catalog[right])
    photo = tmp_path / "look.jpg"
    photo.write_bytes(data)
    page.goto("/")
    page.wait_for_selector("#catalog .card")
    with page.expect_response(lambda r: "/v1/search" in r.url):
        page.set_input_files("#photo", str(photo))
    wait_for_results(page)
    assert "Drag a box on the photo" in page.inner_text("#region")
    page.wait_for_function("document.querySelector('#region-photo').naturalWidth > 0")
    for expected, (x, y, w, h) in zip((left, right), boxes, strict=True):
        rect = page.locator("#region-photo").bounding_box()
        start = (rect["x"] + x * rect["width"], rect["y"] + y * rect["height"])
        end = (start[0] + w * rect["width"], start[1] + h * rect["height"])
        with page.expect_response(lambda r: "/v1/search" in r.url) as search:
            page.mouse.move(*start)
            page.mouse.down()
            page.mouse.move(*end, steps=5)
            page.mouse.up()
        # The API echoes the box it searched by: the one drawn, to the pixel.
        box = search.value.json()["query"]["box"]
        drawn = (box["x"], box["y"], box["width"], box["height"])
        assert drawn == pytest.approx((x, y, w, h), abs=2 / rect["width"])
        page.wait_for_function(
            f"document.querySelector('#results .card')?.dataset.id === {json.dumps(expected)}"
        )
        assert page.locator("#region-box").is_visible()
        assert "nearest to the boxed region" in page.inner_text("#query")
        if expected == left:
            shot(page, "13-region-search")
    # Back to the whole photo.
    with page.expect_response(lambda r: "/v1/search" in r.url) as whole:
        page.click("#region-clear")
    assert whole.value.json()["query"]["box"] is None
    page.wait_for_selector("#region-box", state="hidden")


def test_why_is_this_a_match_shows_heatmaps_and_the_score_split(page, catalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page.goto("/?item=animals-0")
    wait_for_results(page)
    first = card_ids(page, "#results .card")[0]
    score = result_scores(page)[0]
    assert "null" not in page.inner_text("#query")
    with page.expect_response(lambda r: "/v1/explain" in r.url) as answer:
        page.click("#results .card:nth-child(1) button.why")
    assert answer.value.status == 200
    page.wait_for_selector("#explain .heatmaps img")
    page.wait_for_function(
        "[...document.querySelectorAll('#explain .heatmaps img')].every(i => i.naturalWidth > 0)"
    )
    text = page.inner_text("#explain-score")
    # The explanation's score is the result's, and the split adds up to it.
    assert text.startswith(f"score {score:.3f} = head ")
    assert "stage6" in text
    assert answer.value.json()["result"]["id"] == first
    page.click("#explain-close")
    page.wait_for_selector("#explain", state="hidden")

    # A photo of two catalog objects: the truck's explanation lights up the truck's half.
    data, _ = composite(catalog["animals-0"], catalog["vehicles-1"])
    photo = tmp_path / "look.jpg"
    photo.write_bytes(data)
    with page.expect_response(lambda r: "/v1/search" in r.url):
        page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#results .card[data-id='vehicles-1']")
    with page.expect_response(lambda r: "/v1/explain" in r.url) as answer:
        page.click("#results .card[data-id='vehicles-1'] button.why")
    assert answer.value.json()["query"]["peak"]["x"] > 0.5
    page.wait_for_function(
        "[...document.querySelectorAll('#explain .heatmaps img')].every(i => i.naturalWidth > 0)"
    )
    shot(page, "14-why-is-this-a-match")
