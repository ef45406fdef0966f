"""The embedded service pinned to the earlier default, LOOKALIKE_INPUT_SIZE=224 and
LOOKALIKE_POOLING=avg (what a catalog indexed before Lite0 at 320 px with GeM became the
default keeps its workers on): real photos are indexed with that model, each item stores the
version such a catalog's items hold, and similar-by-id and search by photo answer."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.settings import Settings
from support import labelled_images, post_item, wait_for_task


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("variant") / "data",
        model_cache=model_cache_dir,
        input_size=224,
        pooling="avg",
    )


@pytest.fixture(scope="module")
def indexed(client) -> Iterator[list[tuple[str, Path]]]:
    images = labelled_images(per_category=3, categories=("animals", "food"))
    tasks = [
        post_item(client, f"v-{i}", p.read_bytes(), {"category": c}).get_json()["task_id"]
        for i, (c, p) in enumerate(images)
    ]
    for task_id in tasks:
        assert wait_for_task(client, task_id)["status"] == "succeeded"
    yield images


def test_items_carry_the_earlier_defaults_version(client, indexed, model_cache_dir) -> None:
    item = client.get("/v1/items/v-0").get_json()
    assert item["model"] == "efficientnet-lite0"
    # No size, no pooling in it: the label the earlier default wrote.
    shipped = json.loads((model_cache_dir / "efficientnet-lite0.json").read_text())
    assert item["model_version"] == f"{shipped['version']}:resize:multiscale"
    assert shipped["version"].count(":") == 1


def test_similar_and_search_by_photo_answer(client, indexed) -> None:
    similar = client.get("/v1/items/v-0/similar?limit=3").get_json()
    ids = [hit["id"] for hit in similar["items"]]
    assert len(ids) == 3 and "v-0" not in ids
    found = client.post(
        "/v1/search?limit=2",
        data={"image": (io.BytesIO(indexed[0][1].read_bytes()), "q.png")},
        content_type="multipart/form-data",
    ).get_json()
    assert found["items"][0]["id"] == "v-0"
