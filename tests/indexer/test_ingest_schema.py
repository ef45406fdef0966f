"""`indexer ingest` against a real service (launcher.cli serve, real worker and model) whose
catalog declares its own fields: the CSV manifest's cells are typed by the schema the API
serves (GET /v1/schema), a row that cannot be is reported before anything is uploaded, and
the typed items are filterable through the API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import REPO, labelled_images, served_embedded

SCHEMA = {
    "fields": {
        "category": "keyword",
        "color": "keyword_list",
        "released": "datetime",
        "rating": "float",
    }
}


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("schema-service")
    with served_embedded(
        root, model_cache_dir, LOOKALIKE_CATALOG_SCHEMA=json.dumps(SCHEMA)
    ) as served:
        yield served


def test_a_manifest_is_typed_by_the_served_schema(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, env = service
    photos = labelled_images(2, ("animals", "food"))
    rows = ["id,path,category,color,released,rating"]
    colors = ["red|blue", "green", "red", "blue"]
    for n, (category, path) in enumerate(photos):
        rows.append(f"sku-{n},{path},{category},{colors[n]},202{n}-05-01,{n + 0.5}")
    rows.append(f"bad-1,{photos[0][1]},animals,red,soon,4")
    rows.append(f"bad-2,{photos[1][1]},animals,red,2024-01-01,great")
    manifest = tmp_path / "catalog.csv"
    manifest.write_text("\n".join(rows) + "\n")
    report_path = tmp_path / "report.json"

    command = [sys.executable, "-m", "indexer.cli", "--api", url, "ingest", str(manifest)]
    done = subprocess.run(
        [*command, "--allow-any-path", "--report", str(report_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 1, done.stderr  # 1: some rows failed
    report = json.loads(report_path.read_text())
    assert report["indexed"] == 4
    failed = {f["id"]: f for f in report["failed"]}
    assert {k: v["code"] for k, v in failed.items()} == {
        "bad-1": "invalid_metadata",
        "bad-2": "invalid_metadata",
    }
    assert "released must be an ISO 8601" in failed["bad-1"]["message"]
    assert "rating must be a number" in failed["bad-2"]["message"]

    def ids(**params: str) -> set[str]:
        resp = httpx.get(f"{url}/v1/items", params={"limit": "100", **params}, timeout=30)
        assert resp.status_code == 200, resp.text
        return {i["id"] for i in resp.json()["items"]}

    assert ids() == {"sku-0", "sku-1", "sku-2", "sku-3"}  # nothing of the bad rows
    assert ids(color="red") == {"sku-0", "sku-2"}
    assert ids(released_min="2022-01-01") == {"sku-2", "sku-3"}
    assert ids(rating_max="1.5") == {"sku-0", "sku-1"}
    item = httpx.get(f"{url}/v1/items/sku-0", timeout=30).json()
    assert item["metadata"]["color"] == ["red", "blue"]
    assert item["metadata"]["released"] == "2020-05-01T00:00:00Z"
