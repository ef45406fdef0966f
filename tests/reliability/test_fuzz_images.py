"""Mutated image files of every format Pillow opens (benchmarks/fuzz_images.py builds them):
any of them is a 4xx with a stable code through the API and a per-item failure in a worker
batch, never a 5xx, a hung request or a dead worker; good photos sent in between still index.
A bounded number of cases here; `python -m benchmarks.fuzz_images --cases N` runs more."""

from __future__ import annotations

import io
import random
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_images import (
    REQUEST_LIMIT_S,
    corpus,
    good_photos,
    mutate,
    run_through_service,
    seed_files,
)
from lookalike.images import ImageProblem, check_image, decode_image, validate_image

SEEDS = seed_files()
# Codes an image problem may carry: the API's documented 4xx codes for a file.
FILE_CODES = {
    "empty_image",
    "not_an_image",
    "corrupt_image",
    "unsupported_format",
    "image_too_large",
    "image_too_small",
    "bad_aspect_ratio",
}


def test_the_seeds_cover_every_format_pillow_writes_and_the_files_that_gave_a_500() -> None:
    from PIL import Image

    Image.init()
    for fmt in ("jpeg", "png", "webp", "gif", "bmp", "tiff", "dds", "ico", "jpeg2000", "tga"):
        assert fmt in SEEDS, fmt
    assert {"apng-zero-frames", "dds-unknown-fourcc", "apng", "gif-animated"} <= set(SEEDS)
    assert len(SEEDS) >= 30


@pytest.mark.parametrize("fn", [check_image, validate_image, decode_image])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SEEDS)), rnd=st.randoms(use_true_random=False))
def test_a_mutated_file_raises_only_an_image_problem(fn, name: str, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    _, data = mutate(name, SEEDS[name], rnd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about some broken files; not our point
        try:
            fn(data, max_pixels=40_000_000)
        except ImageProblem as exc:
            assert exc.code in FILE_CODES, exc


def test_the_files_that_gave_a_500_get_a_stable_code(client) -> None:  # type: ignore[no-untyped-def]
    for name, status, code in (
        ("dds-unknown-fourcc", 422, "unsupported_format"),
        ("dds-atc", 422, "unsupported_format"),
        # Pillow 13 falls back to the default image of an APNG declaring no frames.
        ("apng-zero-frames", 202, None),
    ):
        for path in ("/v1/items", "/v1/search"):
            form = {"image": (io.BytesIO(SEEDS[name]), "x.png")}
            if path == "/v1/items":
                form["id"] = f"seed-{name}"
            resp = client.post(path, data=form)
            body = resp.get_json()
            if code is None:
                assert resp.status_code in (200, 202), (name, path, body)
            else:
                assert (resp.status_code, body["error"]["code"]) == (status, code), (name, body)


@pytest.mark.slow
def test_mutants_through_the_api_and_a_worker_never_give_a_5xx(client, embedded_settings) -> None:  # type: ignore[no-untyped-def]
    files = corpus(len(SEEDS) + 80, seed=22)
    report = run_through_service(
        client, files, good_photos(4), image_dir=embedded_settings.image_dir
    )
    assert report["server_errors"] == [], report["server_errors"][:3]
    # A bound that catches a hang, not a performance figure (the files are 48x40 pixels).
    assert report["over_limit"] == [], (REQUEST_LIMIT_S, report["over_limit"])
    assert report["good_images_missing"] == [], report
    assert report["good_images"] >= 2 * (len(files) // 8)
    assert set(report["worker_tasks"]) == {"succeeded"}, report["worker_tasks"]
    # Every file was answered, and the mutants met many different refusals.
    assert sum(n for k, n in report["statuses"].items() if k.startswith("items ")) == len(files)
    assert {"corrupt_image", "not_an_image", "unsupported_format"} <= set(report["codes"])
    # The worker is alive after it all: a good photo is found by photo.
    photo = good_photos(1)[0]
    found = client.post("/v1/search?limit=1", data={"image": (io.BytesIO(photo), "q.jpg")})
    assert found.status_code == 200 and found.get_json()["items"], found.get_json()
