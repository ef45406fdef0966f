"""Region queries ("shop the look") on the embedded default (real worker, real model,
qdrant-edge): a composite photo of two catalog objects, searched with a box around each,
finds that object's item first; a bad box is a 400 naming it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from support import composite, index_stamps

H = {"X-Tenant": "regions"}


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return index_stamps(client, 3, "regions")


def _search(client, data: bytes, box: str | None = None, query: str = "") -> Any:  # type: ignore[no-untyped-def]
    form: dict[str, Any] = {"image": (io.BytesIO(data), "look.jpg")}
    if box is not None:
        form["box"] = box
    return client.post(f"/v1/search?limit=3{query}", data=form, headers=H)


@pytest.mark.parametrize(
    ("left", "right"),
    [("animals-0", "vehicles-1"), ("food-2", "plants-0"), ("vehicles-0", "animals-2")],
)
def test_a_box_around_each_object_finds_its_item_first(client, catalog, left, right) -> None:  # type: ignore[no-untyped-def]
    data, boxes = composite(catalog[left], catalog[right])
    for expected, box in zip((left, right), boxes, strict=True):
        text = ",".join(f"{v:.4f}" for v in box)
        resp = _search(client, data, text)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        assert body["items"][0]["id"] == expected, (text, [i["id"] for i in body["items"]])
        assert body["query"]["box"] == pytest.approx(
            dict(
                zip(("x", "y", "width", "height"), (float(v) for v in text.split(",")), strict=True)
            )
        )
    # A box is a region of the photo, with the other options as usual (here a filter).
    category = left.split("-")[0]
    half = _search(client, data, "0,0,0.5,1", f"&q={category}-0").get_json()
    assert [i["id"] for i in half["items"]] == [f"{category}-0"]
    assert _search(client, data).get_json()["query"]["box"] is None


@pytest.mark.parametrize(
    "box",
    [
        "0,0,1",
        "a,b,c,d",
        "0.5,0,0.6,1",
        "0,0,0,1",
        "0,0,0.01,1",
        "nan,0,0.5,0.5",
        "-0.1,0,0.5,0.5",
        "0,0.9,1,0.2",
        "",
    ],
)
def test_a_bad_box_is_a_400_naming_it(client, catalog, box) -> None:  # type: ignore[no-untyped-def]
    data, _ = composite(catalog["animals-0"], catalog["food-0"])
    resp = _search(client, data, box)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["field"] == "box"
