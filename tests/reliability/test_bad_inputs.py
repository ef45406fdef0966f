"""Every odd input end to end: through the API (a clear 4xx with a stable code, no point
written, no stack trace) and through a worker batch (a poison image fails alone, its
batch-mates are indexed, the worker keeps working). The embedded default: real in-process
Celery worker, the real model, a qdrant-edge shard."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from support import labelled_images, post_item, wait_for_task


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG declaring 50000x50000 pixels in a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    ((_, path),) = labelled_images(per_category=1, categories=("animals",))
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def refused(photo: Image.Image) -> dict[str, tuple[bytes, int, str]]:
    jpeg, png = encode(photo, "JPEG"), encode(photo, "PNG")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    return {
        "zero-byte": (b"", 422, "empty_image"),
        "truncated-jpeg": (jpeg[: len(jpeg) // 2], 422, "corrupt_image"),
        "truncated-png": (png[: len(png) // 2], 422, "corrupt_image"),
        "text-named-jpg": (b"just some text\n" * 20, 422, "not_an_image"),
        "pdf-named-jpg": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", 422, "not_an_image"),
        "bomb-50000x50000": (bomb_png(50_000, 50_000), 422, "image_too_large"),
        "one-by-one": (encode(Image.new("RGB", (1, 1)), "PNG"), 422, "image_too_small"),
        "elongated": (encode(Image.new("RGB", (4000, 40)), "PNG"), 422, "bad_aspect_ratio"),
        "heic": (heic, 422, "unsupported_format"),
        "ico": (encode(photo.resize((64, 64)), "ICO"), 422, "unsupported_format"),
    }


def accepted(photo: Image.Image) -> dict[str, bytes]:
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.new("L", photo.size, 128))
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    frames = [photo, Image.effect_noise(photo.size, 80).convert("RGB")]
    return {
        "cmyk-jpeg": encode(photo.convert("CMYK"), "JPEG"),
        "png-16-bit": encode(photo.convert("L").point(lambda v: v * 256).convert("I;16"), "PNG"),
        "palette-transparency": encode(palette, "PNG", transparency=0),
        "rgba": encode(rgba, "PNG"),
        "grayscale": encode(photo.convert("L"), "JPEG"),
        "tall-but-allowed": encode(photo.resize((60, 1000)), "PNG"),
        "animated-gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "animated-webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
    }


def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert "Traceback" not in text and 'File "' not in text
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_every_bad_upload_gets_a_clear_4xx_and_writes_nothing(client, photo) -> None:  # type: ignore[no-untyped-def]
    for name, (data, status, code) in refused(photo).items():
        error_of(post_item(client, f"bad-{name}", data), status, code)
        error_of(client.get(f"/v1/items/bad-{name}"), 404, "item_not_found")
        # The same files by search-by-photo and by blob upload: the same verdicts.
        search = client.post(
            "/v1/search",
            data={"image": (io.BytesIO(data), f"{name}.jpg")},
            content_type="multipart/form-data",
        )
        error_of(search, status, code)
        blob = client.put(f"/v1/blobs/{sha256_hex(data)}", data=data)
        error_of(blob, status, code)
        many = client.post(
            "/v1/blobs",
            data={sha256_hex(data): (io.BytesIO(data), name)},
            content_type="multipart/form-data",
        )
        assert many.status_code == 200, many.get_json()
        assert [r["code"] for r in many.get_json()["rejected"]] == [code], name
    assert client.get("/v1/items").get_json()["total"] == 0


def test_bad_fields_ids_and_parameters_get_stable_codes(client, photo) -> None:  # type: ignore[no-untyped-def]
    good = encode(photo, "JPEG")
    for bad_id in ("", "x" * 257, "tab\there", "nul\x00", "new\nline", "ünï", "../etc", " lead"):
        resp = post_item(client, bad_id, good)
        assert 400 <= resp.status_code < 500, (bad_id, resp.status_code)
        assert resp.get_json()["error"]["code"] in ("invalid_id", "missing_field")
    error_of(_with_metadata(client, "{x"), 400, "invalid_metadata")
    error_of(_with_metadata(client, "[1, 2]"), 400, "invalid_metadata")
    error_of(_with_metadata(client, "[" * 100_000), 400, "metadata_too_large")
    error_of(_with_metadata(client, json.dumps({"k": "v" * 20_000})), 400, "metadata_too_large")
    deep = "[" * 5000 + "]" * 5000
    assert _with_metadata(client, deep).status_code == 400
    # Wrong content type: a JSON body where a multipart form is expected.
    wrong = client.post("/v1/items", data=json.dumps({"id": "x"}), content_type="application/json")
    assert 400 <= wrong.status_code < 500 and "error" in wrong.get_json()
    # An image sent with a lying content type is judged by its bytes.
    lying = client.post(
        "/v1/items",
        data={"id": "lying", "image": (io.BytesIO(b"GIF89a" + b"\0" * 40), "a.png", "image/png")},
        content_type="multipart/form-data",
    )
    assert lying.status_code == 422
    # Unknown ids and invalid query parameters.
    for path in ("/v1/items/nope", "/v1/items/nope/similar", "/v1/items/nope/image"):
        error_of(client.get(path), 404, "item_not_found")
    error_of(client.delete("/v1/items/nope"), 404, "item_not_found")
    for query in (
        "limit=-1",
        "limit=0",
        "limit=100000",
        "limit=1e3",
        "offset=-5",
        "price_min=cheap",
        "in_stock=maybe",
        "group_by=colour",
        "diversity=2",
        "score_threshold=high",
    ):
        error_of(client.get(f"/v1/items/nope/similar?{query}"), 400, "invalid_parameter")
    for query in ("limit=-1", "limit=100000", "cursor=%00%ff"):
        resp = client.get(f"/v1/items?{query}")
        assert resp.status_code == 400, (query, resp.get_data(as_text=True))


def _with_metadata(client, metadata: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/items",
        data={"id": "meta", "metadata": metadata, "image": (io.BytesIO(b"x"), "a.jpg")},
        content_type="multipart/form-data",
    )


def test_a_batch_indexes_odd_valid_images_and_poison_images_fail_alone(  # type: ignore[no-untyped-def]
    client, embedded_settings, photo
) -> None:
    from PIL import ExifTags

    blobs = BlobStore(embedded_settings.image_dir)
    good = accepted(photo)
    good["upright"] = encode(photo, "JPEG", quality=95)
    # Stored on its side, with the EXIF tag that says "turn me 90° clockwise to view".
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    good["exif-rotated"] = encode(photo.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)
    poison = refused(photo)
    items = []
    # Poison images interleaved with good ones. They are written to the image store
    # directly, as a file damaged on disk (or accepted by an older API) would reach a worker.
    for (name, data), (bad, (bad_data, _, _)) in zip(
        list(good.items()), list(poison.items()) + [(None, (b"", 0, ""))] * 10, strict=False
    ):
        for item_id, payload in ((name, data), (bad and f"poison-{bad}", bad_data)):
            if item_id:
                blobs.put(sha256_hex(payload), payload, tenant="default")
                items.append({"id": item_id, "image_sha256": sha256_hex(payload)})
    resp = client.post("/v1/batches", json={"items": items})
    assert resp.status_code == 202, resp.get_json()
    task = wait_for_task(client, resp.get_json()["task_id"], timeout=300)

    assert task["status"] == "succeeded"
    assert sorted(task["indexed"]) == sorted(good)
    failures = {f["id"]: f["code"] for f in task["failed"]}
    assert failures == {f"poison-{name}": code for name, (_, _, code) in poison.items()}
    for name in poison:  # no partial point
        error_of(client.get(f"/v1/items/poison-{name}"), 404, "item_not_found")
    for name in good:
        assert client.get(f"/v1/items/{name}").status_code == 200, name

    # EXIF orientation honoured: the sideways file is the upright photo.
    similar = client.get("/v1/items/exif-rotated/similar?limit=1").get_json()["items"]
    assert similar[0]["id"] == "upright" and similar[0]["score"] > 0.95
    # The worker is alive and well: a search-by-photo after the poison batch.
    found = client.post(
        "/v1/search?limit=1",
        data={"image": (io.BytesIO(good["upright"]), "q.jpg")},
        content_type="multipart/form-data",
    )
    assert found.status_code == 200 and found.get_json()["items"][0]["id"] == "upright"
