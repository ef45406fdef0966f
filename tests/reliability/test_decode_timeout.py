"""The worker's time bound on a decode (LOOKALIKE_DECODE_TIMEOUT_S, worker/decoding.py), on
the embedded default (real in-process Celery worker, real model, qdrant-edge): a file that
keeps the decoder busy past the bound fails alone as ``decode_timeout`` in its batch, and is a
422 by search-by-photo; its batch-mates are indexed and the worker goes on decoding. The
bound is set low here (0.3 s) so that the slowest legitimate file found, a 40 MP 16-bit PNG
(1.0-1.3 CPU-s), runs past it; the small photos around it decode in milliseconds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmarks.fuzz_images import good_photos, jpeg_many_scans, png_deep, png_many_chunks
from lookalike.blobs import BlobStore
from lookalike.images import sha256_hex
from lookalike.settings import Settings
from support import wait_for_task

TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("decode-timeout") / "data",
        model_cache=model_cache_dir,
        decode_timeout_s=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def slow_png() -> bytes:
    # 0.3 MB; the API reads its header only, the worker inflates 320 MB.
    return png_deep(6324)


def test_a_slow_decode_fails_alone_in_its_batch_and_the_worker_goes_on(  # type: ignore[no-untyped-def]
    client, embedded_settings, slow_png
) -> None:
    blobs = BlobStore(embedded_settings.image_dir)
    photos = good_photos(4)
    items = []
    for n, photo in enumerate(photos):
        blobs.put(sha256_hex(photo), photo, tenant="default")
        items.append({"id": f"good-{n}", "image_sha256": sha256_hex(photo)})
        if n == 1:
            blobs.put(sha256_hex(slow_png), slow_png, tenant="default")
            items.append({"id": "slow", "image_sha256": sha256_hex(slow_png)})
    resp = client.post("/v1/batches", json={"items": items})
    assert resp.status_code == 202, resp.get_json()
    task = wait_for_task(client, resp.get_json()["task_id"], timeout=300)

    assert task["status"] == "succeeded", task
    assert sorted(task["indexed"]) == [f"good-{n}" for n in range(len(photos))]
    (failure,) = task["failed"]
    assert (failure["id"], failure["code"]) == ("slow", "decode_timeout"), failure
    assert "LOOKALIKE_DECODE_TIMEOUT_S" in failure["message"]
    assert client.get("/v1/items/slow").status_code == 404
    # The decoder that was stopped is replaced: the next batch decodes as before.
    again = client.post(
        "/v1/batches", json={"items": [{"id": "after", "image_sha256": sha256_hex(photos[0])}]}
    )
    assert wait_for_task(client, again.get_json()["task_id"])["indexed"] == ["after"]


def test_a_slow_search_photo_is_a_422_and_the_next_search_works(client, slow_png) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/search?limit=1", data={"image": (io.BytesIO(slow_png), "q.png")})
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"]["code"] == "decode_timeout"
    photo = good_photos(1)[0]
    found = client.post("/v1/search?limit=1", data={"image": (io.BytesIO(photo), "q.jpg")})
    assert found.status_code == 200, found.get_json()


@pytest.mark.parametrize(
    ("name", "word"), [("jpeg-many-scans", "scans"), ("png-many-chunks", "chunks")]
)
def test_files_that_keep_a_decoder_busy_are_refused_before_any_decode(  # type: ignore[no-untyped-def]
    client, name: str, word: str
) -> None:
    # 36 MP and 3,000 scans: 2.1 CPU-s of libjpeg without the scan limit; a million empty
    # chunks: 2.6 CPU-s of Pillow's header read (docs/reliability.md). Refused by the API
    # from their segments / chunks, by upload and by search.
    data = jpeg_many_scans(6000, 3000) if name.startswith("jpeg") else png_many_chunks(10**6)
    for path, form in (
        ("/v1/items", {"id": name, "image": (io.BytesIO(data), "x")}),
        ("/v1/search", {"image": (io.BytesIO(data), "x")}),
    ):
        resp = client.post(path, data=form)
        assert resp.status_code == 422, (path, resp.get_json())
        body = resp.get_json()["error"]
        assert body["code"] == "corrupt_image" and word in body["message"], body
