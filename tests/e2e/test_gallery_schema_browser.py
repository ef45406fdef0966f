"""The gallery draws its filters from the catalog schema (GET /v1/schema): with a declared
colour list, size, release date and rating, a real headless Chromium shows a colour row
and a size row of chips, date and rating ranges, groups by colour, and the selected item's
declared fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lookalike.settings import Settings
from support import SCREENSHOTS, index_items, labelled_images, served_over_http

SCHEMA = {
    "fields": {
        "category": "keyword",
        "color": "keyword_list",
        "size": {"type": "keyword", "roles": ["filter", "facet"]},
        "released": "datetime",
        "rating": "float",
    }
}
COLORS = [["red"], ["red", "blue"], ["green"]]

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("gallery-schema") / "data",
        model_cache=model_cache_dir,
        catalog_schema=json.dumps(SCHEMA),
    )


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    items = []
    for n, (category, path) in enumerate(labelled_images(3, ("animals", "food", "plants"))):
        meta = {
            "category": category,
            "color": COLORS[n % 3],
            "size": "SML"[n % 3],
            "released": f"{2022 + n % 4}-03-01",
            "rating": float(n % 5),
        }
        items.append((f"{category}-{n % 3}", path, meta))
    index_items(client, items)
    return {item_id: meta for item_id, _, meta in items}


@pytest.fixture(scope="module")
def base_url(embedded, catalog) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with served_over_http(embedded.app) as url:
        yield url


def count(page, selector: str) -> int:  # type: ignore[no-untyped-def]
    return int(page.eval_on_selector_all(selector, "els => els.length"))


def test_the_filter_rows_follow_the_schema(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {len(catalog)}")
    page.wait_for_selector("#filter-color .chip")
    page.wait_for_selector("#filter-size .chip")
    # A colour row and a size row of chips with their counts; no brand or price row.
    colors = page.eval_on_selector_all(
        "#filter-color .chip", "els => els.map(e => e.dataset.value)"
    )
    assert sorted(colors) == ["blue", "green", "red"]
    assert count(page, "#filter-size .chip") == 3
    assert count(page, "#filter-brand") == 0 and count(page, "#filter-price-min") == 0
    assert count(page, "#filter-released-min[type=date]") == 1
    assert count(page, "#filter-rating-max[type=number]") == 1
    groups = page.eval_on_selector_all("#group-by option", "els => els.map(e => e.value)")
    assert groups == ["", "category", "color"]  # size is not declared for grouping

    page.click("#filter-color .chip[data-value=blue]")
    blue = sorted(i for i, m in catalog.items() if "blue" in m["color"])
    page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {len(blue)}")
    page.fill("#filter-released-min", "2023-01-01")
    page.dispatch_event("#filter-released-min", "change")
    later = sorted(i for i in blue if catalog[i]["released"] >= "2023")
    assert 0 < len(later) < len(blue)
    page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {len(later)}")
    shown = page.eval_on_selector_all("#catalog .card", "els => els.map(e => e.dataset.id)")
    assert sorted(shown) == later
    page.screenshot(path=str(SCREENSHOTS / "gallery-schema-filters.png"), full_page=True)


def test_the_selected_item_shows_its_declared_fields(page, catalog) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.wait_for_selector("#catalog .card[data-id=food-1] img")
    page.click("#catalog .card[data-id=food-1] img")
    page.wait_for_selector("#item-fields dd[data-field=color]")
    assert page.inner_text("#item-fields dd[data-field=color]") == "red, blue"
    assert page.inner_text("#item-fields dd[data-field=released]") == "2022-03-01T00:00:00Z"
    page.select_option("#group-by", "color")
    page.wait_for_selector("#results .group h3")
    keys = page.eval_on_selector_all("#results .group", "els => els.map(e => e.dataset.group)")
    assert set(keys) <= {"red", "blue", "green"} and keys


def test_declared_filters_live_in_the_url(page, catalog) -> None:  # type: ignore[no-untyped-def]
    """Every schema-drawn filter is in the view's URL: a link restores it, a change is a new
    history entry, back/forward and reload show the same view."""
    blue = sorted(i for i, m in catalog.items() if "blue" in m["color"])
    later = sorted(i for i in blue if catalog[i]["released"] >= "2023")
    item = later[0]

    def shown() -> list[str]:
        return sorted(
            page.eval_on_selector_all("#catalog .card", "els => els.map(e => e.dataset.id)")
        )

    def wait_for_cards(n: int) -> None:
        page.wait_for_function(f"document.querySelectorAll('#catalog .card').length === {n}")

    page.goto(f"/?item={item}&color=blue&released_min=2023-01-01")
    wait_for_cards(len(later))
    assert shown() == later
    page.wait_for_selector("#filter-color .chip.on")
    assert page.eval_on_selector_all(
        "#filter-color .chip.on", "els => els.map(e => e.dataset.value)"
    ) == ["blue"]
    assert page.input_value("#filter-released-min") == "2023-01-01"
    page.wait_for_selector("#applied")
    assert page.inner_text("#applied") == (
        "Filters applied: color blue · released from 2023-01-01."
    )
    assert page.get_attribute("#catalog .card.selected", "data-id") == item

    # A new filter: a new URL; back returns to the link's view, forward to the new one.
    top = int(max(catalog[i]["rating"] for i in later))
    rated = sorted(i for i in later if catalog[i]["rating"] <= top - 1)
    assert len(rated) < len(later)
    page.fill("#filter-rating-max", str(top - 1))
    page.dispatch_event("#filter-rating-max", "change")
    wait_for_cards(len(rated))
    assert f"rating_max={top - 1}" in page.url and "color=blue" in page.url
    page.go_back()
    wait_for_cards(len(later))
    assert page.input_value("#filter-rating-max") == ""
    page.go_forward()
    wait_for_cards(len(rated))
    assert page.input_value("#filter-rating-max") == str(top - 1)
    page.reload()
    wait_for_cards(len(rated))
    assert shown() == rated
    page.wait_for_selector("#filter-color .chip.on[data-value=blue]")
    assert page.input_value("#filter-released-min") == "2023-01-01"

    # A chip click is a view too; back undoes it.
    page.click("#filter-color .chip[data-value=blue]")
    page.wait_for_function("!location.search.includes('color=')")
    assert count(page, "#filter-color .chip.on") == 0
    page.go_back()
    page.wait_for_selector("#filter-color .chip.on[data-value=blue]")
    wait_for_cards(len(rated))
    page.screenshot(path=str(SCREENSHOTS / "gallery-schema-url-state.png"), full_page=True)
