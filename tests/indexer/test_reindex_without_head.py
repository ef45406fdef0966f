"""`indexer reindex --head none` on the embedded service run with `LOOKALIKE_HEAD`: the catalog
goes back to the backbone's own vectors, although a version labelled with the backbone alone
would be filled with the configured head; a restart keeps it so, and `indexer rollback`
brings the head back."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest

from indexer.cli import main as indexer_main
from support import labelled_images, served_embedded

CATEGORIES = ("animals", "food", "plants", "vehicles")
BACKBONE = "efficientnet-lite0"
HEADED = f"{BACKBONE}-head-shop"


def _search_model(url: str, photo: bytes) -> str:
    resp = httpx.post(f"{url}/v1/search", files={"image": ("q.png", photo)}, timeout=60)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["query"]["model"])


def _add(url: str, item_id: str, photo: bytes) -> str:
    resp = httpx.post(
        f"{url}/v1/items",
        data={"id": item_id},
        files={"image": ("x.png", io.BytesIO(photo))},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/tasks/{resp.json()['task_id']}", timeout=30).json()
        if status["status"] not in ("queued", "running", "retrying"):
            assert status["status"] == "succeeded", status
            return str(httpx.get(f"{url}/v1/items/{item_id}", timeout=30).json()["model"])
        time.sleep(0.2)
    raise AssertionError(f"item {item_id} was not indexed")


def _vector_size(url: str) -> int:
    page = httpx.get(f"{url}/v1/vectors", params={"field": "category", "limit": 5}).json()
    return len(page["items"][0]["vector"])


def test_reindex_to_the_backbone_alone_while_a_head_is_configured(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = labelled_images(8, CATEGORIES)
    folder = tmp_path / "photos"
    for category, path in photos:
        (folder / category).mkdir(parents=True, exist_ok=True)
        (folder / category / path.name).write_bytes(path.read_bytes())
    # "none" names no head: it cannot be trained.
    train = ["train-head", str(folder), "--model-cache", str(model_dir), "--kind", "lda"]
    assert indexer_main([*train, "--name", "none", "--out", str(tmp_path / "none")]) == 2
    assert "it means no head" in capsys.readouterr().err
    assert indexer_main([*train, "--name", "shop", "--out", str(tmp_path / "shop")]) == 0
    photo = labelled_images(9, ("animals",))[-1][1].read_bytes()
    state = str(tmp_path / "reindex.json")

    with served_embedded(tmp_path, model_dir, LOOKALIKE_HEAD="shop") as (url, _):
        ingest = ["ingest", str(folder), "--no-duplicates", "--state", str(tmp_path / "i.json")]
        assert indexer_main(["--api", url, *ingest]) == 0
        # A new catalog's first version is labelled with the backbone: the head fills it.
        status = httpx.get(f"{url}/v1/reindex").json()
        assert (status["active"]["model"], status["active"]["head"]) == (HEADED, "shop")
        assert _search_model(url, photo) == HEADED
        headed_size = _vector_size(url)

        reindex = ["--api", url, "reindex", "--model", BACKBONE, "--head", "none"]
        assert indexer_main([*reindex, "--state", state]) == 0
        status = httpx.get(f"{url}/v1/reindex").json()
        assert status["active"]["name"] == f"catalog__{BACKBONE}-head-none__2"
        assert (status["active"]["model"], status["active"]["head"]) == (BACKBONE, None)
        assert status["active"]["count"] == len(photos)
        assert (status["previous"]["model"], status["previous"]["head"]) == (HEADED, "shop")
        # Stored, searched and newly ingested vectors are the backbone's own.
        assert _vector_size(url) == 1472 != headed_size
        assert _search_model(url, photo) == BACKBONE
        assert _add(url, "late", photo) == BACKBONE

    # A restart with the same LOOKALIKE_HEAD serves the backbone still.
    with served_embedded(tmp_path, model_dir, LOOKALIKE_HEAD="shop") as (url, _):
        assert _search_model(url, photo) == BACKBONE
        assert httpx.get(f"{url}/v1/items/late").json()["model"] == BACKBONE
        assert _vector_size(url) == 1472
        # Rolled back: the head serves again, the late item embedded with it too.
        assert indexer_main(["--api", url, "rollback"]) == 0
        assert _search_model(url, photo) == HEADED
        assert httpx.get(f"{url}/v1/items/late").json()["model"] == HEADED
        assert _vector_size(url) == headed_size
