"""Reading catalog sources: folders, CSV and JSON Lines manifests, and their bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.sources import SourceError, count_items, open_source


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

    assert [i.problem for i in items] == [None, None, None]
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
    # A value the schema cannot read is kept as text rather than dropped.
    assert three.metadata == {"category": "hats", "price": "cheap", "in_stock": "maybe"}
    assert three.path == Path("/abs/c.jpg")
    assert count_items(manifest) == 3


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
