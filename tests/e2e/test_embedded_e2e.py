"""End to end through real HTTP on the embedded default: the indexer ingests a folder of
labelled real photos, then edited copies find their originals and neighbours share labels."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.client import APIClient
from indexer.ingest import ingest
from indexer.sources import folder_items
from lookalike.settings import Settings
from support import CATEGORIES, edited_copy, labelled_images, served_over_http

PER_CATEGORY = 10


@pytest.fixture(scope="module")
def base_url(embedded) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with served_over_http(embedded.app) as url:
        yield url


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as a catalog team would: one sub-folder per category."""
    root = tmp_path_factory.mktemp("catalog")
    for category, path in labelled_images(PER_CATEGORY):
        (root / category).mkdir(exist_ok=True)
        (root / category / path.name).write_bytes(path.read_bytes())
    return root


@pytest.fixture(scope="module")
def ingested(base_url: str, catalog: Path) -> dict[str, str]:
    client = APIClient(base_url)
    items = list(folder_items(catalog))
    report = ingest(client, items, out=io.StringIO())
    client.close()
    assert report.failed == []
    assert report.indexed == len(items) == PER_CATEGORY * len(CATEGORIES)
    return {item.id: item.metadata["category"] for item in items}


def test_edited_copies_find_their_originals_first(
    base_url: str, catalog: Path, ingested: dict[str, str], embedded_settings: Settings
) -> None:
    originals = [next(iter(sorted((catalog / c).iterdir()))) for c in CATEGORIES]
    for path in originals:
        resp = httpx.post(
            f"{base_url}/v1/search?limit=5",
            files={"image": ("edited.jpg", edited_copy(path), "image/jpeg")},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        top = resp.json()["items"][0]
        assert top["metadata"]["path"] == f"{path.parent.name}/{path.name}"


def test_same_category_items_dominate_the_top_5(base_url: str, ingested: dict[str, str]) -> None:
    precisions = []
    for item_id, category in ingested.items():
        resp = httpx.get(f"{base_url}/v1/items/{item_id}/similar?limit=5", timeout=30)
        assert resp.status_code == 200, resp.text
        hits = resp.json()["items"]
        assert len(hits) == 5 and item_id not in {h["id"] for h in hits}
        precisions.append(sum(h["metadata"]["category"] == category for h in hits) / 5)
    mean_p_at_5 = sum(precisions) / len(precisions)
    # Chance level is about 1/6 here; "dominate" means most of the top 5. Measured: 0.59.
    assert mean_p_at_5 > 0.5, f"mean P@5 {mean_p_at_5:.2f}"
