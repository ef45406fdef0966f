"""`indexer train-head --from-catalog`, end to end on the embedded service: a head trained on
the vectors the service stores, labelled by the catalog's own `category` (no image embedded
again), written into the model cache the service's worker reads, then served by `indexer
reindex --head` and rolled back with `indexer rollback`."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from indexer.cli import main as indexer_main
from indexer.client import APIClient
from indexer.quality.catalog_head import fetch_vectors
from support import labelled_images, served_embedded

# Real photos of 4 categories, and one with 3 items: too few to hold out, kept in training.
CATEGORIES = ("animals", "food", "plants", "vehicles")
PER_CATEGORY = 14
SMALL = "town"
# Two more photos of each category, posted without a category: what pseudo-labels are for.
UNLABELLED = 2


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("catalog-head")
    photos = labelled_images(PER_CATEGORY, CATEGORIES) + labelled_images(3, (SMALL,))
    folder = root / "photos"
    for category, path in photos:
        (folder / category).mkdir(parents=True, exist_ok=True)
        (folder / category / path.name).write_bytes(path.read_bytes())
    with served_embedded(root, model_dir) as (url, _):
        ingest = ["ingest", str(folder), "--no-duplicates", "--state", str(root / "ingest.json")]
        assert indexer_main(["--api", url, *ingest]) == 0
        # Items with no category: counted as skipped, and given to the head as unlabelled.
        for n, (_, path) in enumerate(_unlabelled_photos()):
            _wait(url, _post(url, f"unlabelled-{n}", path.read_bytes(), None))
        yield url


def _unlabelled_photos() -> list[tuple[str, Path]]:
    every = labelled_images(PER_CATEGORY + UNLABELLED, CATEGORIES)
    return [photo for photo in every if photo not in labelled_images(PER_CATEGORY, CATEGORIES)]


def _post(url: str, item_id: str, data: bytes, metadata: dict | None) -> str:
    form = {"id": item_id, **({"metadata": json.dumps(metadata)} if metadata else {})}
    resp = httpx.post(
        f"{url}/v1/items", data=form, files={"image": ("x.png", io.BytesIO(data))}, timeout=60
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["task_id"])


def _wait(url: str, task_id: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/tasks/{task_id}", timeout=30).json()
        if status["status"] not in ("queued", "running", "retrying"):
            assert status["status"] == "succeeded", status
            return
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish")


def _train(url: str, model_dir: Path, out: Path, name: str, *extra: str) -> int:
    command = ["train-head", "--from-catalog", "--label", "category", "--name", name]
    options = ["--model-cache", str(model_dir), "--out", str(out), "--epochs", "30"]
    return indexer_main(["--api", url, *command, *options, *extra])


def _search_model(url: str, photo: bytes) -> str:
    resp = httpx.post(f"{url}/v1/search", files={"image": ("q.png", photo)}, timeout=60)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["query"]["model"])


def test_the_vectors_route_takes_a_keyword_field_only(service: str) -> None:
    page = httpx.get(f"{service}/v1/vectors", params={"field": "category", "limit": 10}).json()
    assert len(page["items"]) + page["skipped"] == 10 and page["next_cursor"]
    first = page["items"][0]
    assert first["value"] in (*CATEGORIES, SMALL) and first["tenant"] == "default"
    assert len(first["vector"]) == 1472 and first["model"] == "efficientnet-lite0"
    np.testing.assert_allclose(np.linalg.norm(first["vector"]), 1.0, atol=1e-4)
    for field in ("price", "nothing"):
        bad = httpx.get(f"{service}/v1/vectors", params={"field": field})
        assert bad.status_code == 400, field
        assert bad.json()["error"]["field"] == "field"
        assert "keyword field of the catalog: category, brand" in bad.json()["error"]["message"]


def test_unlabelled_items_are_pseudo_labelled_unless_no_unlabelled(
    service: str, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The route returns the items without a category only when asked, their value null; the
    # training reads them by default, and trains on the confident half of them with the
    # class the discriminant guesses; the report says how many.
    unlabelled = len(_unlabelled_photos())
    params = {"field": "category", "limit": 100}
    plain = httpx.get(f"{service}/v1/vectors", params=params).json()
    every = httpx.get(f"{service}/v1/vectors", params={**params, "unlabelled": "true"}).json()
    assert [row for row in plain["items"] if row["value"] is None] == []
    bare = [row["id"] for row in every["items"] if row["value"] is None]
    assert sorted(bare) == [f"unlabelled-{n}" for n in range(unlabelled)]
    assert every["skipped"] == 0 and plain["skipped"] == unlabelled
    assert len(every["items"]) == len(plain["items"]) + unlabelled

    assert _train(service, model_dir, tmp_path / "semi", "semi") == 0
    report = json.loads((tmp_path / "semi" / "report.json").read_text())
    assert report["catalog"]["unlabelled_read"] == unlabelled
    assert report["catalog"]["skipped_without_value"] == unlabelled
    used = report["split"]["pseudo_labelled"]
    # Half of each guessed class's, rounded: more items than classes leave at least one.
    assert report["split"]["unlabelled"] == unlabelled and 0 < used < unlabelled
    training = json.loads((model_dir / "heads" / "semi.json").read_text())["training"]
    assert training["unlabelled_vectors"] == unlabelled and training["pseudo_labelled"] == used
    assert training["options"]["pseudo_labels"] == 0.5
    assert f"{used} of the {unlabelled} items without one trained on" in capsys.readouterr().out
    markdown = (tmp_path / "semi" / "report.md").read_text()
    assert f"Also given {unlabelled} items without a label: {used} of them" in markdown

    # More of them than --unlabelled-max: a seeded random sample of that many, page after page.
    vectors = {row["id"]: row["vector"] for row in every["items"] if row["value"] is None}
    samples = []
    for _ in range(2):
        client = APIClient(service)
        data = fetch_vectors(client, "category", page_size=10, unlabelled=True, unlabelled_max=3)
        client.close()
        assert data.unlabelled is not None and data.unlabelled.shape == (3, 1472)
        assert data.skipped == unlabelled and len(data.ids) == len(plain["items"])
        picked = {
            next(i for i, v in vectors.items() if np.allclose(v, row, atol=1e-6))
            for row in data.unlabelled
        }
        samples.append(picked)
    assert len(samples[0]) == 3 and samples[0] == samples[1]

    # --no-unlabelled: the items without a category are skipped and counted, no more.
    assert _train(service, model_dir, tmp_path / "plain", "plain", "--no-unlabelled") == 0
    report = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert report["catalog"]["unlabelled_read"] is None
    assert report["catalog"]["skipped_without_value"] == unlabelled
    assert "unlabelled" not in report["split"]
    training = json.loads((model_dir / "heads" / "plain.json").read_text())["training"]
    assert "unlabelled_vectors" not in training and "pseudo_labelled" not in training
    assert "items without one trained on" not in capsys.readouterr().out


def test_a_head_from_the_catalog_is_served_by_reindex_and_rolled_back(
    service: str, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = labelled_images(1, ("animals",))[0][1].read_bytes()
    assert _search_model(service, photo) == "efficientnet-lite0"

    assert _train(service, model_dir, tmp_path / "shop", "shop") == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "shop" / "report.json").read_text())
    items = len(labelled_images(PER_CATEGORY, CATEGORIES)) + 3
    catalog = report["catalog"]
    unlabelled = len(_unlabelled_photos())
    assert catalog["items"] == items and catalog["skipped_without_value"] == unlabelled
    assert catalog["field"] == "category" and catalog["model"] == "efficientnet-lite0"
    split = report["split"]
    assert split["train_images"] + split["test_images"] == items
    assert split["classes"] == len(CATEGORIES) + 1
    held_out = report["held_out"]
    assert report["gain_p_at_5"] == pytest.approx(
        held_out["head"]["P@5"] - held_out["backbone"]["P@5"], abs=1e-3
    )
    assert f"saved head {report['head']['version']} in {model_dir / 'heads'}" in printed
    # Saved where the service's worker reads its models; the small class is trained on.
    manifest = json.loads((model_dir / "heads" / "shop.json").read_text())
    assert manifest["base"]["version"] == catalog["model_version"]
    assert SMALL in manifest["classes"] and manifest["training"]["source"] == "catalog"

    # An unknown head is refused by the service before any version is made.
    state = tmp_path / "reindex.json"
    unknown = ["--api", service, "reindex", "--head", "nothing", "--state", str(state)]
    assert indexer_main(unknown) == 2
    assert "model_unavailable" in capsys.readouterr().out
    assert httpx.get(f"{service}/v1/reindex").json()["next"] is None

    # Served: a new version embedded with the backbone and the head, switched to.
    assert indexer_main(["--api", service, "reindex", "--head", "shop", "--state", str(state)]) == 0
    status = httpx.get(f"{service}/v1/reindex").json()
    assert status["active"]["model"] == "efficientnet-lite0-head-shop"
    assert status["active"]["head"] == "shop" and status["active"]["count"] == items + unlabelled
    assert (
        status["previous"]["model"] == "efficientnet-lite0" and status["previous"]["head"] is None
    )
    first = httpx.get(f"{service}/v1/items", params={"limit": 1}).json()["items"][0]["id"]
    item = httpx.get(f"{service}/v1/items/{first}").json()
    assert item["model"] == "efficientnet-lite0-head-shop"
    assert item["model_version"] == report["head"]["embedder_version"]
    assert _search_model(service, photo) == "efficientnet-lite0-head-shop"
    # A new item is embedded with the head too (into both versions).
    _wait(service, _post(service, "late", photo, {"category": "animals"}))
    assert httpx.get(f"{service}/v1/items/late").json()["model"] == "efficientnet-lite0-head-shop"
    similar = httpx.get(f"{service}/v1/items/late/similar", params={"limit": 5}).json()
    assert len(similar["items"]) == 5

    # The served vectors come from a head: training another head on them is refused.
    assert _train(service, model_dir, tmp_path / "again", "again") == 2
    assert "served by a head already" in capsys.readouterr().err

    # Rolled back: the backbone serves again, the late item included.
    assert indexer_main(["--api", service, "rollback"]) == 0
    status = httpx.get(f"{service}/v1/reindex").json()
    assert status["active"]["model"] == "efficientnet-lite0"
    assert httpx.get(f"{service}/v1/items/late").json()["model"] == "efficientnet-lite0"
    assert _search_model(service, photo) == "efficientnet-lite0"
    # The head a kept version is embedded with cannot be trained over.
    assert _train(service, model_dir, tmp_path / "over", "shop") == 2
    assert "embeds the catalog's version" in capsys.readouterr().err
