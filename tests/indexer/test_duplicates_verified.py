"""Near-duplicates verified by keypoints, colour variants, plain images and items indexed
before keypoints existed (api/duplicates.py, lookalike/verify.py, worker/keypoints.py), on
the embedded service: real worker, real model, real qdrant-edge, real photos. Its own
service: a test here reindexes the catalog."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike import verify
from lookalike.verify import KEYPOINTS_FIELD
from support import (
    edited_copy,
    format_2,
    labelled_images,
    reindex_through_api,
    wait_for_task,
)

TENANT = {"X-Tenant": "verified"}


def _flat(path: Path) -> Image.Image:
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def hue_variant(path: Path) -> bytes:
    """The same shot in another colour: hue turned by 120 degrees."""
    hsv = np.asarray(_flat(path).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 85) % 256
    return _jpeg(Image.fromarray(hsv, "HSV").convert("RGB"))


def plain(shade: int) -> bytes:
    """A flat grey card with a faint gradient: nothing to find keypoints on."""
    ramp = np.linspace(shade, shade + 6, 600)[None, :, None] * np.ones((500, 1, 3))
    return _jpeg(Image.fromarray(ramp.astype(np.uint8)))


def tiny(path: Path, quality: int) -> bytes:
    """The photo as a 48 px thumbnail: too few pixels to prove it is the same shot."""
    return _jpeg(_flat(path).resize((48, 48), Image.Resampling.LANCZOS), quality)


def put_blob(client: Any, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    resp = client.put(
        f"/v1/blobs/{sha}", data=data, content_type="application/octet-stream", headers=TENANT
    )
    assert resp.status_code == 200, resp.get_json()
    return sha


def index(client: Any, images: dict[str, bytes]) -> None:
    items = [{"id": i, "image_sha256": put_blob(client, data)} for i, data in images.items()]
    resp = client.post("/v1/batches", json={"items": items}, headers=TENANT)
    assert resp.status_code == 202, resp.get_json()
    done = wait_for_task(client, resp.get_json()["task_id"], headers=TENANT)
    assert done["status"] == "succeeded" and sorted(done["indexed"]) == sorted(images)


@pytest.fixture(scope="module")
def indexed(client: Any) -> list[str]:
    photos = labelled_images(per_category=4, categories=("animals", "clothes"))
    # A colourful photo (an albino peahen's blue and green), so its hue shift is plain to see.
    first = photos[2][1]
    images = {f"p-{i}": path.read_bytes() for i, (_, path) in enumerate(photos)}
    images["edited-copy"] = edited_copy(first)
    images["in-another-colour"] = hue_variant(first)
    images["plain-a"] = plain(180)
    images["plain-b"] = plain(186)
    # One thumbnail and a recompressed copy of it: tiny images get no keypoints.
    images["tiny-a"] = tiny(first, 95)
    images["tiny-b"] = tiny(first, 60)
    index(client, images)
    return list(images)


def duplicates(client: Any, item_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/items/{item_id}/duplicates", headers=TENANT)
    assert resp.status_code == 200, resp.get_json()
    return dict(resp.get_json())


def test_an_edit_is_near_a_recolouring_a_variant_and_look_alikes_neither(
    client: Any, indexed: list[str]
) -> None:
    body = duplicates(client, "p-2")
    assert body["verification"] == "verified" and body["unverified"] == 0
    assert [n["id"] for n in body["near"]] == ["edited-copy"]
    assert [v["id"] for v in body["variants"]] == ["in-another-colour"]
    near, variant = body["near"][0], body["variants"][0]
    assert near["score"] >= body["threshold"] and variant["score"] >= body["threshold"]
    assert variant["color_difference"] > near["color_difference"]
    # Other animals and clothes, photographed alike, are neither.
    many = client.post(
        "/v1/duplicates", json={"ids": [i for i in indexed if i.startswith("p-")]}, headers=TENANT
    ).get_json()
    for entry in many["items"]:
        others = {n["id"] for n in entry["near"]} | {v["id"] for v in entry["variants"]}
        assert not others & {i for i in indexed if i.startswith("p-")}, entry
    by_id = {entry["id"]: entry for entry in many["items"]}
    assert [v["id"] for v in by_id["p-2"]["variants"]] == ["in-another-colour"]


def test_a_plain_image_is_nobodys_near_duplicate(client: Any, indexed: list[str]) -> None:
    for item_id in ("plain-a", "plain-b", "tiny-a", "tiny-b"):
        body = duplicates(client, item_id)
        # Too plain to verify: said so, and only exact copies could be listed.
        assert body["verification"] == "too_plain"
        assert body["near"] == [] and body["variants"] == []
    many = client.post("/v1/duplicates", json={"ids": indexed}, headers=TENANT).get_json()
    for entry in many["items"]:
        listed = {n["id"] for n in entry["near"]} | {v["id"] for v in entry["variants"]}
        assert not listed & {"plain-a", "plain-b", "tiny-a", "tiny-b"}, entry


def test_items_from_before_keypoints_are_unverified_until_a_reindex(
    client: Any, embedded: Any, indexed: list[str]
) -> None:
    store = embedded.worker.app.lookalike.store
    from lookalike.schema import point_id

    # As a catalog indexed before keypoints were stored: the field is not there; or before
    # the thumbnails (format 2): keypoints that cannot be compared pixel by pixel.
    store.set_payload(point_id("edited-copy", "verified"), {KEYPOINTS_FIELD: None})
    (stored,) = store.retrieve([point_id("p-2", "verified")])
    points = verify.decode(stored.payload[KEYPOINTS_FIELD])
    assert points is not None
    store.set_payload(point_id("p-2", "verified"), {KEYPOINTS_FIELD: format_2(points)})
    old = duplicates(client, "p-2")
    assert old["verification"] == "needs_reindex"
    assert old["near"] == [] and old["variants"] == []
    # The variant still has keypoints, but the edited copy is counted, not guessed.
    recoloured = duplicates(client, "in-another-colour")
    assert recoloured["verification"] == "verified"
    assert recoloured["near"] == [] and recoloured["unverified"] >= 1

    reindex_through_api(client)
    after = duplicates(client, "p-2")
    assert after["verification"] == "verified" and after["unverified"] == 0
    assert [n["id"] for n in after["near"]] == ["edited-copy"]
    assert [v["id"] for v in after["variants"]] == ["in-another-colour"]
