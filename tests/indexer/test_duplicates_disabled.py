"""The operator's switch LOOKALIKE_DUPLICATE_KEYPOINTS=false: the worker stores no keypoints
(at ingest nor at reindex), and every duplicates answer says ``disabled`` and lists exact
copies only. On the embedded service (real worker, real model, real qdrant-edge, real
photos), the indexer's CLI talking to it over HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from waitress.server import create_server

from indexer.cli import main as indexer
from lookalike.schema import point_id
from lookalike.settings import Settings
from lookalike.verify import KEYPOINTS_FIELD
from support import edited_copy, labelled_images, reindex_through_api
from worker.keypoints import keypoint_payload

TENANT = "no-keypoints"
HEADERS = {"X-Tenant": TENANT}


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("no-keypoints") / "data",
        model_cache=model_cache_dir,
        duplicate_keypoints=False,
    )


@pytest.fixture(scope="module")
def url(embedded: Any) -> Iterator[str]:
    server = create_server(embedded.app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@pytest.fixture(scope="module")
def ingested(
    url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], str, dict[str, Any]]:
    """Eight photos, an exact copy and an edited copy of the first, through `indexer ingest`:
    its item ids, its printed summary and its JSON report."""
    root = tmp_path_factory.mktemp("catalog")
    photos = labelled_images(per_category=4, categories=("animals", "clothes"))
    ids = []
    for category, path in photos:
        (root / category).mkdir(exist_ok=True)
        (root / category / path.name).write_bytes(path.read_bytes())
        ids.append(f"{category}.{path.stem}")
    first = photos[0][1]
    (root / "animals" / "zz-copy.png").write_bytes(first.read_bytes())
    (root / "animals" / "zz-edited.jpg").write_bytes(edited_copy(first))
    report = root.parent / "report.json"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOKALIKE_INDEXER_STATE_DIR", str(root.parent / "state"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = indexer(
                ["--api", url, "--tenant", TENANT, "ingest", str(root), "--report", str(report)]
            )
    assert code == 0, out.getvalue()
    return (
        [*ids, "animals.zz-copy", "animals.zz-edited"],
        out.getvalue(),
        json.loads(report.read_text()),
    )


def keypoints_stored(embedded: Any, ids: list[str]) -> list[str]:
    store = embedded.worker.app.lookalike.store
    points = store.retrieve([point_id(i, TENANT) for i in ids])
    assert len(points) == len(ids)
    return [p.payload["item_id"] for p in points if p.payload.get(KEYPOINTS_FIELD) is not None]


def test_no_keypoints_are_stored_and_the_answers_say_disabled(
    client: Any, embedded: Any, ingested: tuple[list[str], str, dict[str, Any]]
) -> None:
    ids, _, _ = ingested
    first = ids[0]
    assert keypoints_stored(embedded, ids) == []

    body = client.get(f"/v1/items/{first}/duplicates", headers=HEADERS).get_json()
    assert body["verification"] == "disabled"
    assert body["exact"] == [{"id": "animals.zz-copy"}]
    # The edited copy is not looked for, rather than guessed or called unverified.
    assert body["near"] == [] and body["variants"] == [] and body["unverified"] == 0

    many = client.post("/v1/duplicates", json={"ids": ids}, headers=HEADERS).get_json()
    assert {e["id"]: e["verification"] for e in many["items"]} == dict.fromkeys(ids, "disabled")
    by_id = {e["id"]: e for e in many["items"]}
    assert by_id["animals.zz-copy"]["exact"] == [{"id": first}]
    assert all(e["near"] == [] and e["variants"] == [] for e in many["items"])

    doc = client.get("/openapi.json").get_json()
    many = doc["paths"]["/v1/duplicates"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert many == {"$ref": "#/components/schemas/ManyDuplicates"}
    group = doc["components"]["schemas"]["ManyDuplicates"]["properties"]["items"]["items"]
    assert group == {"$ref": "#/components/schemas/DuplicateGroup"}
    verification = doc["components"]["schemas"]["DuplicateGroup"]["properties"]["verification"]
    assert "disabled" in verification["enum"]


def test_the_indexer_says_keypoints_are_off_in_one_line(
    url: str, ingested: tuple[list[str], str, dict[str, Any]], tmp_path: Path, capsys: Any
) -> None:
    ids, summary, report = ingested
    first = ids[0]
    duplicates = report["duplicates"]
    assert sorted([first, "animals.zz-copy"]) in duplicates["exact"]
    assert duplicates["near"] == [] and duplicates["variants"] == []
    assert sorted(duplicates["unverifiable"]["disabled"]) == sorted(ids)
    said = [ln for ln in summary.splitlines() if "LOOKALIKE_DUPLICATE_KEYPOINTS=false" in ln]
    assert len(said) == 1 and f"{len(ids)} items" in said[0], summary
    assert "animals.zz-edited" not in said[0]  # the items are not listed one by one

    path = tmp_path / "dups.json"
    assert indexer(["--api", url, "--tenant", TENANT, "duplicates", "--report", str(path)]) == 0
    printed = capsys.readouterr().out
    catalog = json.loads(path.read_text())
    assert catalog["exact"] == [sorted([first, "animals.zz-copy"])] and catalog["near"] == []
    assert sorted(catalog["unverifiable"]["disabled"]) == sorted(ids)
    assert "LOOKALIKE_DUPLICATE_KEYPOINTS=false" in printed


def test_a_reindex_stores_none_either(
    client: Any, embedded: Any, ingested: tuple[list[str], str, dict[str, Any]]
) -> None:
    ids, _, _ = ingested
    store = embedded.worker.app.lookalike.store
    # An item indexed while keypoints were on still holds them: not used while they are off,
    # and dropped by the reindex.
    (stored,) = store.retrieve([point_id(ids[0], TENANT)])
    data = embedded.worker.app.lookalike.blobs.get(stored.payload["image_sha256"])
    with Image.open(io.BytesIO(data)) as image:
        old = keypoint_payload(data, image.convert("RGB"), max_pixels=100_000_000)
    store.set_payload(stored.point_id, old)
    assert keypoints_stored(embedded, ids) == [ids[0]]
    before = client.get(f"/v1/items/{ids[0]}/duplicates", headers=HEADERS).get_json()
    assert before["verification"] == "disabled" and before["near"] == []

    reindex_through_api(client)
    assert keypoints_stored(embedded, ids) == []
    body = client.get(f"/v1/items/{ids[0]}/duplicates", headers=HEADERS).get_json()
    assert body["verification"] == "disabled" and body["exact"] == [{"id": "animals.zz-copy"}]


def test_the_switch_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).duplicate_keypoints is True
    env = {"LOOKALIKE_DUPLICATE_KEYPOINTS": "false"}
    assert Settings.from_env(env).duplicate_keypoints is False
