"""Reading catalog sources: folders, CSV and JSON Lines manifests, and their bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.sources import SourceError, count_items, open_source
from lookalike.settings import Settings


def test_a_folder_gives_ids_from_paths_and_categories_from_sub_folders(tmp_path: Path) -> None:
    (tmp_path / "shoes").mkdir()
    (tmp_path / "shoes" / "Red Boot.JPG").write_bytes(b"x")
    (tmp_path / "loose.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an image")

    items = list(open_source(tmp_path))

    assert [(i.id, i.metadata) for i in items] == [
        ("loose", {"path": "loose.png"}),
        ("shoes.Red-Boot", {"path": "shoes/Red Boot.JPG", "category": "shoes"}),
    ]
    assert count_items(tmp_path) == 2
    unlabelled = list(open_source(tmp_path, labels_from_folders=False))
    assert "category" not in unlabelled[1].metadata


def test_a_csv_manifest_types_the_indexed_fields(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "id,path,category,price,in_stock,brand,colour,tenant\n"
        "sku-1,img/a.jpg,shoes,19.90,yes,acme,red,\n"
        "sku-2,https://cdn.example.com/b.jpg,bags,,0,,,shop-2\n"
        "sku-3,/abs/c.jpg,hats,cheap,maybe,,,\n"
    )

    # An absolute path outside the manifest's folder needs the explicit opt-in
    # (tests/reliability/test_sources_security.py checks the refusal).
    items = list(open_source(manifest, allow_outside=True))

    assert [i.problem for i in items[:2]] == [None, None]
    one, two, three = items
    assert one.path == tmp_path / "img" / "a.jpg" and one.url is None
    assert one.metadata == {
        "category": "shoes",
        "price": 19.9,
        "in_stock": True,
        "brand": "acme",
        "colour": "red",
    }
    assert two.url == "https://cdn.example.com/b.jpg" and two.path is None
    assert two.tenant == "shop-2"
    assert two.metadata == {"category": "bags", "in_stock": False}
    # A value the catalog schema cannot read is reported, before anything is uploaded (it
    # was kept as text, and the item then never matched a price filter).
    assert three.id == "sku-3" and three.problem is not None
    assert three.problem[0] == "invalid_metadata"
    assert "catalog.csv:4: price must be a number" in three.problem[1]
    assert count_items(manifest) == 3


SHOP = {
    "fields": {
        "color": "keyword_list",
        "size": "keyword",
        "released": "datetime",
        "rating": "float",
        "stock": "integer",
    }
}


def test_a_declared_schema_types_csv_cells_and_reports_rows_it_cannot(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "id,path,color,size,released,rating,stock,price\n"
        "a,a.jpg,red|blue,M,2024-05-01,4.5,3,9.5\n"
        "b,b.jpg,green,42,2024-05-01T10:00:00+02:00,,0,\n"
        "c,c.jpg,red,S,May 2024,4,1,\n"
        "d,d.jpg,red,S,2024-01-01,great,1,\n"
        "e,e.jpg,red,S,2024-01-01,3,2.5,\n"
    )
    schema = Settings(catalog_schema=json.dumps(SHOP)).catalog

    items = list(open_source(manifest, schema=schema))

    a, b = items[0], items[1]
    assert a.metadata == {
        "color": ["red", "blue"],
        "size": "M",
        "released": "2024-05-01T00:00:00Z",
        "rating": 4.5,
        "stock": 3,
        "price": "9.5",  # not declared in this schema: text, stored but not filterable
    }
    assert b.metadata == {
        "color": ["green"],
        "size": "42",
        "released": "2024-05-01T08:00:00Z",
        "stock": 0,
    }
    problems = {i.id: i.problem for i in items[2:]}
    assert {k: v[0] for k, v in problems.items() if v} == {
        "c": "invalid_metadata",
        "d": "invalid_metadata",
        "e": "invalid_metadata",
    }
    assert "released must be an ISO 8601" in problems["c"][1]  # type: ignore[index]
    assert "rating must be a number" in problems["d"][1]  # type: ignore[index]
    assert "catalog.csv:6: stock must be an integer" in problems["e"][1]  # type: ignore[index]


def test_jsonl_rows_are_checked_against_the_declared_types(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.jsonl"
    rows = [
        {"id": "a", "path": "a.jpg", "color": ["red"], "metadata": {"rating": 4}},
        {"id": "b", "path": "b.jpg", "color": "red", "rating": "4.5"},
        {"id": "c", "path": "c.jpg", "stock": True},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = Settings(catalog_schema=json.dumps(SHOP)).catalog

    items = list(open_source(manifest, schema=schema))

    assert items[0].problem is None and items[0].metadata == {"color": ["red"], "rating": 4}
    assert items[1].problem is not None and "rating must be a number" in items[1].problem[1]
    assert items[2].problem is not None and "stock must be an integer" in items[2].problem[1]


def test_bad_rows_become_items_with_a_problem(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.jsonl"
    lines = [
        json.dumps({"id": "ok-1", "image": "a.png", "metadata": {"price": 3}, "brand": "x"}),
        json.dumps({"id": "no image here"}),
        json.dumps({"path": "b.png"}),
        "{not json",
        json.dumps({"id": "ok-2", "url": "http://host/c.png", "tenant": "bad tenant!"}),
        json.dumps(["a", "list"]),
        "",
    ]
    manifest.write_text("\n".join(lines) + "\n")

    items = list(open_source(manifest))

    assert items[0].problem is None
    assert items[0].metadata == {"brand": "x", "price": 3}
    codes = [i.problem[0] if i.problem else None for i in items]
    assert codes == [
        None,
        "invalid_id",
        "invalid_row",
        "invalid_row",
        "invalid_tenant",
        "invalid_row",
    ]
    # Each problem says where it is.
    assert items[3].problem is not None and "catalog.jsonl:4" in items[3].problem[1]


def test_unknown_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        open_source(tmp_path / "missing")
    (tmp_path / "catalog.xlsx").write_bytes(b"")
    with pytest.raises(SourceError):
        open_source(tmp_path / "catalog.xlsx")
    (tmp_path / "no-id.csv").write_text("sku,path\n1,a.png\n")
    with pytest.raises(SourceError):
        list(open_source(tmp_path / "no-id.csv"))
