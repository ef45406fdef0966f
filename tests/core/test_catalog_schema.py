"""The declared catalog schema (lookalike/schema.py): parsing, type checks, and the payload
indexes both store backends build from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    InvalidMetadata,
    SchemaError,
    load_catalog_schema,
    point_id,
)
from lookalike.settings import Settings, SettingsError
from lookalike.store import EdgeStore, Range, StoredItem, StoreError, TextMatch, open_store
from support import store_settings

SHOP = {
    "fields": {
        "color": {"type": "keyword_list", "roles": ["filter", "facet", "group"]},
        "size": "keyword",
        "released": "datetime",
        "rating": "float",
        "category": "keyword",
        "price": "float",
    }
}
DIM = 8


def test_the_default_is_the_four_fields_the_api_always_had() -> None:
    schema = load_catalog_schema("")
    assert schema is DEFAULT_CATALOG_SCHEMA
    assert {f.name: f.type for f in schema.fields} == {
        "category": "keyword",
        "brand": "keyword",
        "price": "float",
        "in_stock": "bool",
    }
    assert [f.name for f in schema.with_role("facet")] == ["category", "brand"]
    assert [f.name for f in schema.with_role("group")] == ["category", "brand"]
    # The indexes a catalog built before declared schemas has (it is served unchanged), and
    # those GET /v1/items?sort=newest and ?q= need (added to an existing catalog at start).
    assert schema.payload_indexes() == {
        "item_id": "keyword",
        "tenant": "keyword",
        "image_sha256": "keyword",
        "ingested_at": "datetime",
        "tags": "keyword",  # the classifier's tags: q= and GET /v1/tags
        "metadata.name": "text_prefix",
        "metadata.title": "text_prefix",
        "metadata.category": "keyword",
        "metadata.brand": "keyword",
        "metadata.price": "float",
        "metadata.in_stock": "bool",
    }
    assert schema.text_search_paths() == ("item_id", "metadata.name", "metadata.title")


def test_a_declared_name_is_its_type_and_no_longer_searched() -> None:
    schema = load_catalog_schema(json.dumps({"fields": {"name": "keyword", "color": "keyword"}}))
    assert schema.text_search_paths() == ("item_id", "metadata.title")
    indexes = schema.payload_indexes()
    assert indexes["metadata.name"] == "keyword" and indexes["metadata.title"] == "text_prefix"


def test_a_schema_from_inline_json_or_a_file(tmp_path: Path) -> None:
    inline = load_catalog_schema(json.dumps(SHOP))
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SHOP))
    from_file = Settings(catalog_schema=str(path)).catalog
    assert inline == from_file
    color = inline.field("color")
    assert color is not None and color.roles == {"filter", "facet", "group"}
    rating = inline.field("rating")
    assert rating is not None and rating.roles == {"filter"}  # a float cannot be counted
    assert inline.payload_indexes()["metadata.released"] == "datetime"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"Color": "keyword"}, "lower-case"),
        ({"limit": "keyword"}, "query option"),
        ({"color": "colour"}, "not one of"),
        ({"rating": {"type": "float", "roles": ["facet"]}}, "cannot be a facet"),
        ({"color": {"type": "keyword", "roles": ["sort"]}}, "unknown role"),
        ({"price": "float", "price_min": "float"}, "collides"),
        ({"color": {"type": "keyword", "index": True}}, "unknown key"),
    ],
)
def test_a_bad_declaration_is_refused_at_start(fields: dict, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings(catalog_schema=json.dumps({"fields": fields}))


def test_unreadable_schema_settings_are_named() -> None:
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_catalog_schema("{fields")
    with pytest.raises(SchemaError, match="cannot read"):
        load_catalog_schema("/nonexistent/schema.json")


def test_values_are_checked_against_their_type() -> None:
    schema = load_catalog_schema(json.dumps(SHOP))
    good = {
        "color": "red",
        "size": "M",
        "released": "2024-05-01",
        "rating": 4,
        "undeclared": {"any": ["thing"]},
    }
    assert schema.check_metadata(good) == {
        "color": ["red"],
        "size": "M",
        "released": "2024-05-01T00:00:00Z",
        "rating": 4,
        "undeclared": {"any": ["thing"]},
    }
    for wrong, field in [
        ({"price": "25.0"}, "price"),
        ({"price": True}, "price"),
        ({"category": 123}, "category"),
        ({"color": ["red", 3]}, "color"),
        ({"released": "last tuesday"}, "released"),
        ({"rating": float("nan")}, "rating"),
        ({"size": ""}, "size"),
    ]:
        with pytest.raises(InvalidMetadata) as excinfo:
            schema.check_metadata(wrong)
        assert excinfo.value.field == field
        assert field in excinfo.value.message


def test_text_is_converted_to_the_declared_type() -> None:
    schema = load_catalog_schema(json.dumps({"fields": {**SHOP["fields"], "stock": "integer"}}))
    fields = {f.name: f for f in schema.fields}
    assert fields["color"].from_text("red| blue ") == ["red", "blue"]
    assert fields["stock"].from_text(" 12 ") == 12
    assert fields["rating"].from_text("4.5") == 4.5
    assert fields["released"].from_text("2024-05-01T10:00:00+02:00") == "2024-05-01T08:00:00Z"
    with pytest.raises(InvalidMetadata, match="stock must be an integer"):
        fields["stock"].from_text("twelve")
    assert DEFAULT_CATALOG_SCHEMA.field("in_stock").from_text("Yes") is True  # type: ignore[union-attr]


def _items(n: int) -> list[StoredItem]:
    rng = np.random.default_rng(3)
    colors = [["red"], ["red", "blue"], ["green"]]
    return [
        StoredItem(
            point_id(f"i{k}"),
            {
                "item_id": f"i{k}",
                "tenant": "default",
                "metadata": {
                    "color": colors[k % 3],
                    "released": f"202{k % 4}-06-01T00:00:00Z",
                    "rating": float(k % 5),
                },
            },
            rng.normal(size=DIM).astype(np.float32),
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("backend", ["edge", "client-memory"])
def test_a_field_declared_on_an_existing_catalog_is_indexed_without_reembedding(
    backend: str, tmp_path: Path
) -> None:
    default = store_settings(backend, tmp_path)
    shop = default.replace(catalog_schema=json.dumps(SHOP))
    items = _items(12)
    store = open_store(default)
    store.ensure_collection(DIM)
    store.upsert(items)
    before = {
        i.point_id: i.vector for i in store.retrieve([i.point_id for i in items], with_vectors=True)
    }
    if backend == "edge":
        store.close()
        store = open_store(shop)
    else:
        # local mode lives in its client: the same collection, seen with the new schema
        store.schema = shop.catalog  # type: ignore[attr-defined]
    store.ensure_collection(DIM)
    after = store.retrieve(list(before), with_vectors=True)
    assert all(np.array_equal(before[i.point_id], i.vector) for i in after)  # type: ignore[arg-type]
    assert store.count({"metadata.color": "red"}) == 8
    assert store.count({"metadata.released": Range(gte="2022-01-01T00:00:00Z")}) == 6
    assert [(f.value, f.count) for f in store.facet("metadata.color")] == [
        ("red", 8),
        ("blue", 4),
        ("green", 4),
    ]
    if isinstance(store, EdgeStore):
        indexed = set(store._open().info().payload_schema)
        assert {"metadata.color", "metadata.released", "metadata.rating"} <= indexed
    store.close()


def test_a_type_change_is_refused_with_the_field_named(tmp_path: Path) -> None:
    shop = store_settings("edge", tmp_path).replace(catalog_schema=json.dumps(SHOP))
    with open_store(shop) as store:
        store.ensure_collection(DIM)
        store.upsert(_items(3))
    changed = dict(SHOP["fields"], rating="integer")
    with (
        open_store(shop.replace(catalog_schema=json.dumps({"fields": changed}))) as store,
        pytest.raises(StoreError, match=r"'rating' is declared integer .* indexes it as float"),
    ):
        store.ensure_collection(DIM)
    with open_store(shop) as store:  # the catalog is untouched
        store.ensure_collection(DIM)
        assert store.count() == 3


def test_a_reindexed_version_keeps_the_schema(tmp_path: Path) -> None:
    shop = store_settings("edge", tmp_path).replace(catalog_schema=json.dumps(SHOP))
    with open_store(shop) as store:
        store.ensure_collection(DIM)
        version = store.create_version("efficientnet-lite1", DIM)
        view = store.version(version.name)
        view.upsert(_items(6))
        assert isinstance(view, EdgeStore)
        assert "metadata.released" in view._open().info().payload_schema
        assert view.count({"metadata.released": Range(lt="2022-01-01T00:00:00Z")}) == 4


@pytest.mark.parametrize("backend", ["edge", "client-memory"])
def test_a_declared_name_is_filtered_exactly_and_q_searches_the_title(
    backend: str, tmp_path: Path
) -> None:
    named = store_settings(backend, tmp_path).replace(
        catalog_schema=json.dumps({"fields": {"name": "keyword"}})
    )
    store = open_store(named)
    store.ensure_collection(DIM)
    rng = np.random.default_rng(3)
    rows = {"a": {"name": "Red Runner", "title": "Trail shoe"}, "b": {"name": "Blue Boot"}}
    store.upsert(
        [
            StoredItem(
                point_id=point_id(item_id),
                vector=rng.standard_normal(DIM).astype(np.float32),
                payload={"item_id": item_id, "tenant": "default", "metadata": meta},
            )
            for item_id, meta in rows.items()
        ]
    )
    assert store.count({"metadata.name": "Red Runner"}) == 1
    first, *others = named.catalog.text_search_paths()
    items, _ = store.scroll(limit=10, where={first: TextMatch("trail", tuple(others))})
    assert [i.payload["item_id"] for i in items] == ["a"]
    if isinstance(store, EdgeStore):
        indexed = store._open().info().payload_schema
        assert str(indexed["metadata.name"].data_type).endswith("Keyword")
    store.close()


def test_declaring_a_text_indexed_name_on_an_existing_catalog_is_refused(tmp_path: Path) -> None:
    default = store_settings("edge", tmp_path)
    with open_store(default) as store:
        store.ensure_collection(DIM)
    named = default.replace(catalog_schema=json.dumps({"fields": {"name": "keyword"}}))
    with (
        open_store(named) as store,
        pytest.raises(StoreError, match=r"'name' is declared keyword .* indexes it as text_prefix"),
    ):
        store.ensure_collection(DIM)
    with open_store(default) as store:  # the catalog is untouched
        store.ensure_collection(DIM)
