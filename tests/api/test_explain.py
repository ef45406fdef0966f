"""Explain a match on the embedded default (real worker, real model, qdrant-edge): on a
composite photo of two catalog objects the heatmap peaks on the object that matches; an
item-to-item explanation gives the search's score, split over the embedding's parts."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from support import composite, index_stamps

H = {"X-Tenant": "explain"}


@pytest.fixture(scope="module")
def catalog(client) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return index_stamps(client, 2, "explain")


def _explain(client, **form: Any) -> Any:  # type: ignore[no-untyped-def]
    if "image" in form:
        form["image"] = (io.BytesIO(form["image"]), "look.jpg")
    return client.post("/v1/explain", data=form, headers=H)


def _png(data_url: str) -> Image.Image:
    head, _, body = data_url.partition(",")
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(body)))


@pytest.mark.parametrize(("left", "right"), [("animals-0", "vehicles-1"), ("food-1", "plants-0")])
def test_on_a_composite_the_heatmap_peaks_on_the_matching_object(
    client, catalog, left, right
) -> None:  # type: ignore[no-untyped-def]
    data, _ = composite(catalog[left], catalog[right])
    for result, side in ((left, "left"), (right, "right")):
        resp = _explain(client, image=data, result=result)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        heat = np.array(body["query"]["heat"])
        half = heat.shape[1] // 2
        # The photo's half holding the object that matches carries most of the score.
        left_share, right_share = heat[:, :half].sum(), heat[:, -half:].sum()
        if side == "left":
            assert left_share > right_share and body["query"]["peak"]["x"] < 0.5, heat.round(3)
        else:
            assert right_share > left_share and body["query"]["peak"]["x"] > 0.5, heat.round(3)
        assert body["result"]["id"] == result
        assert _png(body["query"]["heatmap"]).size == _png(body["result"]["heatmap"]).size


def test_an_item_pair_gives_the_searchs_score_split_over_the_parts(client, catalog) -> None:  # type: ignore[no-untyped-def]
    similar = client.get("/v1/items/animals-0/similar?limit=3", headers=H).get_json()
    hit = similar["items"][0]
    body = _explain(client, id="animals-0", result=hit["id"]).get_json()
    assert body["query"]["id"] == "animals-0" and body["result"]["id"] == hit["id"]
    # The same cosine as the search's (the maps are the embedding's before pooling; the
    # default's GeM head, too, as the mean of its positions' contributions).
    assert body["score"] == pytest.approx(hit["score"], abs=2e-3)
    # Multiscale (the default): the pooled head and the pooled stage 6, half each.
    assert set(body["split"]) == {"head", "stage6"}
    assert sum(body["split"].values()) == pytest.approx(body["score"], abs=1e-5)
    for side in ("query", "result"):
        assert np.sum(body[side]["heat"]) == pytest.approx(body["score"], abs=1e-4)
        # The image as the default model frames it: 320 px, a 10x10 grid of cells.
        assert _png(body[side]["heatmap"]).size == (320, 320)
        assert np.shape(body[side]["heat"]) == (10, 10)
    # With a region: the box is echoed.
    data, boxes = composite(catalog["animals-0"], catalog["food-0"])
    box = ",".join(f"{v:.4f}" for v in boxes[0])
    boxed = _explain(client, image=data, box=box, result="animals-0").get_json()
    assert boxed["query"]["box"]["width"] == pytest.approx(boxes[0][2], abs=1e-4)
    # The region alone is nearer the item than the whole composite is.
    whole = _explain(client, image=data, result="animals-0").get_json()
    assert boxed["score"] > whole["score"]


@pytest.mark.parametrize(
    ("form", "status", "field"),
    [
        ({"id": "animals-0"}, 400, "result"),
        ({"result": "animals-0"}, 400, "id"),
        ({"result": "animals-0", "id": "food-0", "image": b"x"}, 400, "id"),
        ({"result": "nope", "id": "food-0"}, 404, "result"),
        ({"result": "animals-0", "id": "nope"}, 404, "id"),
        ({"result": "animals-0", "id": "food-0", "box": "0,0,0.5,1"}, 400, "box"),
        ({"result": "animals-0", "image": b"not an image"}, 422, "image"),
    ],
)
def test_bad_requests_answer_in_the_common_shape(client, catalog, form, status, field) -> None:  # type: ignore[no-untyped-def]
    resp = _explain(client, **form)
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["field"] == field and error["code"] and error["message"]
