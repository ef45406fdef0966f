"""`indexer` against a real service: `lookalike serve` (embedded default: API, Celery worker,
qdrant-edge) in its own process, the indexer CLI in another, real photos.

Each test acts for its own tenant, so they share one service; the reindex test, which
re-embeds every tenant's items, runs last."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import REPO, TUXPAINT_STAMPS, edited_copy, labelled_images, served_embedded


@dataclass
class Service:
    url: str
    root: Path
    env: dict[str, str]

    def get(self, path: str, tenant: str | None = None, **params: Any) -> httpx.Response:
        headers = {"X-Tenant": tenant} if tenant else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=60)

    def total(self, tenant: str) -> int:
        resp = self.get("/v1/items", tenant, limit=1)
        assert resp.status_code == 200, resp.text
        return int(resp.json()["total"])

    def ids(self, tenant: str) -> list[str]:
        ids: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = self.get("/v1/items", tenant, **params).json()
            ids.extend(i["id"] for i in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return ids

    def indexer(self, *args: str | Path, tenant: str | None = None) -> list[str]:
        command = [sys.executable, "-m", "indexer.cli", "--api", self.url]
        if tenant:
            command += ["--tenant", tenant]
        return command + [str(a) for a in args]

    def run(self, *args: str | Path, tenant: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.indexer(*args, tenant=tenant),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("service")
    with served_embedded(root, model_cache_dir) as (url, env):
        yield Service(url, root, env)


def copy_photos(root: Path, photos: list[tuple[str, Path]]) -> list[str]:
    """Lay photos out as a catalog team would (one folder per category); their item ids."""
    ids = []
    for category, path in photos:
        (root / category).mkdir(parents=True, exist_ok=True)
        (root / category / path.name).write_bytes(path.read_bytes())
        ids.append(f"{category}.{path.stem}")
    return ids


# ----------------------------------------------------------------------- a real ingest

CATALOG = "catalog-a"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """About 190 labelled photos, two files that are not images, an exact and an edited copy."""
    root = tmp_path_factory.mktemp("catalog")
    photos = labelled_images(per_category=50)
    ids = copy_photos(root, photos)
    first = photos[0][1]
    (root / "animals" / "zz-copy.png").write_bytes(first.read_bytes())
    (root / "animals" / "zz-edited.jpg").write_bytes(edited_copy(first))
    (root / "food" / "broken.png").write_bytes(b"this is not an image")
    jpeg = edited_copy(photos[-1][1])
    (root / "food" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return root, [*ids, "animals.zz-copy", "animals.zz-edited"]


def test_a_real_ingest_indexes_every_photo_and_reports_the_bad_ones(
    service: Service, catalog: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, ids = catalog
    report_path = tmp_path / "report.json"

    done = service.run("ingest", root, "--report", report_path, tenant=CATALOG)

    assert done.returncode == 1, done.stderr  # 1: some items failed
    report = json.loads(report_path.read_text())
    assert report["indexed"] == len(ids) and report["failed_count"] == 2
    assert {(f["id"], f["code"]) for f in report["failed"]} == {
        ("food.broken", "not_an_image"),
        ("food.truncated", "corrupt_image"),
    }
    assert all(f["message"] for f in report["failed"])
    assert report["images_per_second"] > 0
    print(f"\nreal ingest: {report['indexed']} photos, {report['images_per_second']} img/s")
    assert "failed 2" in done.stdout and "food.broken: not_an_image" in done.stdout
    assert "img/s" in done.stderr and "ETA" in done.stderr  # the progress bar
    assert sorted(service.ids(CATALOG)) == sorted(ids)
    food = [i for i in ids if i.startswith("food.")]
    assert service.get("/v1/items", CATALOG, category="food").json()["total"] == len(food)

    first = ids[0]
    duplicates = report["duplicates"]
    assert sorted([first, "animals.zz-copy"]) in duplicates["exact"]
    assert any({first, "animals.zz-edited"} <= set(group) for group in duplicates["near"])

    listed = service.run("duplicates", "--report", tmp_path / "dups.json", tenant=CATALOG)
    assert listed.returncode == 0, listed.stderr
    catalog_wide = json.loads((tmp_path / "dups.json").read_text())
    assert catalog_wide["items"] == len(ids)
    assert sorted([first, "animals.zz-copy"]) in catalog_wide["exact"]
    assert any("animals.zz-edited" in group for group in catalog_wide["near"])
    # The scan's progress counts items, once per state (not its last line twice).
    progress = [ln for ln in listed.stderr.splitlines() if ln.startswith("duplicates:")]
    assert progress and all("items/s" in ln and "img/s" not in ln for ln in progress)
    assert len(progress) == len(set(ln.split("elapsed")[0] for ln in progress)), progress

    # The server, at its default INFO level, did not log each task's result (lists of item
    # ids, issue #22): Celery's "succeeded in" line is at DEBUG.
    server_log = (service.root / "server.log").read_text()
    assert "succeeded in" not in server_log


# ------------------------------------------------------------------- kill and resume


def indexed_in_state(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=30) as db:
            query = "SELECT count(*) FROM items WHERE status = 'indexed'"
            return int(db.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the job is still creating it


def test_a_killed_ingest_resumes_without_loss_or_duplicates(
    service: Service, tmp_path: Path
) -> None:
    tenant = "resume"
    ids = copy_photos(tmp_path / "catalog", labelled_images(per_category=20))
    state = tmp_path / "state.sqlite"
    # Small batches, one at a time: slow enough to be killed in the middle.
    first = subprocess.Popen(
        service.indexer(
            "ingest",
            tmp_path / "catalog",
            "--state",
            state,
            "--batch-size",
            "4",
            "--max-pending",
            "1",
            "--workers",
            "2",
            tenant=tenant,
        ),
        cwd=REPO,
        env=service.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while indexed_in_state(state) < 12:
        assert first.poll() is None, "the ingest finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    confirmed = indexed_in_state(state)
    assert 12 <= confirmed < len(ids)

    report_path = tmp_path / "report.json"
    second = service.run(
        "ingest", tmp_path / "catalog", "--state", state, "--report", report_path, tenant=tenant
    )

    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads(report_path.read_text())
    # What the killed run had confirmed is not sent again; everything else is.
    assert report["skipped_unchanged"] >= confirmed
    assert report["skipped_unchanged"] + report["indexed"] == len(ids)
    assert report["failed"] == []
    # Nothing lost, nothing twice.
    stored = service.ids(tenant)
    assert len(stored) == service.total(tenant) == len(ids)
    assert sorted(stored) == sorted(ids)

    # Items deleted behind the job's back: its state no longer matches the index, so it is
    # rebuilt from the index, and exactly the missing items are sent again.
    gone = ids[:3]
    httpx.post(
        f"{service.url}/v1/batches/delete", json={"ids": gone}, headers={"X-Tenant": tenant}
    ).raise_for_status()
    third = service.run(
        "ingest", tmp_path / "catalog", "--state", state, "--report", report_path, tenant=tenant
    )
    assert third.returncode == 0, third.stdout + third.stderr
    report = json.loads(report_path.read_text())
    assert (report["indexed"], report["skipped_unchanged"]) == (3, len(ids) - 3)
    assert service.total(tenant) == len(ids)


def test_a_manifest_with_a_tenant_column_uploads_each_image_as_its_rows_tenant(
    service: Service, tmp_path: Path
) -> None:
    """An image is usable only by the tenant that uploaded it (docs/api.md): the indexer
    uploads each batch's images as the batch's tenant, so rows of two tenants naming the
    same photo are both indexed."""
    photos = [path for _, path in labelled_images(per_category=1, categories=("food", "town"))]
    rows = [
        {"id": "shared", "path": str(photos[0]), "tenant": "rows-a"},
        {"id": "shared", "path": str(photos[0]), "tenant": "rows-b"},
        {"id": "own", "path": str(photos[1]), "tenant": "rows-b"},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = service.run(
        "ingest", manifest, "--base-dir", TUXPAINT_STAMPS, "--state", tmp_path / "state"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(service.ids("rows-a")) == ["shared"]
    assert sorted(service.ids("rows-b")) == ["own", "shared"]
    image = service.get("/v1/items/shared/image", "rows-a")
    assert image.status_code == 200 and image.content == photos[0].read_bytes()


# ---------------------------------------------------------------------------- sync


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "category", "price", "brand"])
        writer.writeheader()
        writer.writerows(rows)


def test_sync_deletes_what_left_and_re_embeds_only_changed_images(
    service: Service, tmp_path: Path
) -> None:
    tenant = "sync"
    # The manifest names the photos where Debian installed them, outside its own folder.
    photos_dir = ("--base-dir", str(TUXPAINT_STAMPS))
    photos = labelled_images(per_category=6)
    rows = [
        {
            "id": f"sku-{i}",
            "path": str(path),
            "category": category,
            "price": 10 + i,
            "brand": "acme",
        }
        for i, (category, path) in enumerate(photos[:30])
    ]
    manifest = tmp_path / "catalog.csv"
    state = tmp_path / "state.sqlite"
    write_manifest(manifest, rows)
    first = service.run("ingest", manifest, *photos_dir, "--state", state, "--sync", tenant=tenant)
    assert first.returncode == 0, first.stdout + first.stderr
    assert service.total(tenant) == 30
    before = {i: service.get(f"/v1/items/sku-{i}", tenant).json() for i in range(5)}

    changed = [dict(r) for r in rows[:25]]  # sku-25..29 leave the catalog
    for row in changed[:3]:
        row["price"] = 99.5  # metadata only
    changed[3]["path"] = str(photos[30][1])  # a new photo for an existing item
    changed[4]["path"] = str(photos[31][1])
    changed += [
        {
            "id": "sku-new-1",
            "path": str(photos[32][1]),
            "category": "new",
            "price": 1,
            "brand": "b",
        },
        {
            "id": "sku-new-2",
            "path": str(photos[33][1]),
            "category": "new",
            "price": 2,
            "brand": "b",
        },
    ]
    write_manifest(manifest, changed)
    gone = [f"sku-{i}" for i in range(25, 30)]
    # A dry run says which items a sync would delete: on screen and in the JSON report.
    plan_path = tmp_path / "plan.json"
    plan = service.run(
        "ingest", manifest, *photos_dir, "--state", state, "--sync", "--dry-run",
        "--report", plan_path, tenant=tenant,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert sorted(json.loads(plan_path.read_text())["planned_delete_ids"]) == gone
    assert "would delete: " in plan.stdout and all(i in plan.stdout for i in gone)
    assert service.total(tenant) == 30
    report_path = tmp_path / "report.json"
    second = service.run(
        "ingest",
        manifest,
        *photos_dir,
        "--state",
        state,
        "--sync",
        "--report",
        report_path,
        tenant=tenant,
    )

    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads(report_path.read_text())
    assert (report["deleted"], report["metadata_updated"], report["indexed"]) == (5, 3, 4)
    assert sorted(report["deleted_ids"]) == gone
    assert "  deleted: " in second.stdout and all(i in second.stdout for i in gone)
    assert report["skipped_unchanged"] == 20
    assert service.total(tenant) == 27
    assert service.get("/v1/items/sku-27", tenant).status_code == 404
    for i in range(3):
        now = service.get(f"/v1/items/sku-{i}", tenant).json()
        assert now["metadata"]["price"] == 99.5
        assert now["ingested_at"] == before[i]["ingested_at"]  # not re-embedded
    for i in (3, 4):
        now = service.get(f"/v1/items/sku-{i}", tenant).json()
        assert now["image_sha256"] != before[i]["image_sha256"]

    # A new state file (another machine, a lost cache) learns the index: nothing re-sent.
    fresh = service.run(
        "ingest",
        manifest,
        *photos_dir,
        "--state",
        tmp_path / "new.sqlite",
        "--report",
        report_path,
        tenant=tenant,
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    again = json.loads(report_path.read_text())
    assert (again["indexed"], again["skipped_unchanged"]) == (0, 27)

    # A manifest that lost most of its rows does not empty the catalog.
    write_manifest(manifest, changed[:3])
    guarded = service.run(
        "ingest", manifest, *photos_dir, "--state", state, "--sync", tenant=tenant
    )
    assert guarded.returncode == 2
    assert "sync refused" in guarded.stdout
    assert service.total(tenant) == 27


# ------------------------------------------------------------------ model upgrade


class Hammer:
    """Queries the service without pause from a thread, recording every answer."""

    def __init__(self, service: Service, item_id: str, photo: bytes) -> None:
        self.service = service
        self.item_id = item_id
        self.photo = photo
        self.answers: list[tuple[str, int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        headers = {"X-Tenant": CATALOG}
        with httpx.Client(base_url=self.service.url, headers=headers, timeout=60) as http:
            while not self._stop.is_set():
                try:
                    similar = http.get(f"/v1/items/{self.item_id}/similar", params={"limit": 3})
                    self.answers.append(("similar", similar.status_code, None))
                    search = http.post(
                        "/v1/search", params={"limit": 3}, files={"image": ("q.png", self.photo)}
                    )
                    model = search.json().get("query", {}).get("model")
                    self.answers.append(("search", search.status_code, model))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                time.sleep(0.05)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def reindex_cursor(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("cursor")
    except (OSError, ValueError):
        return None


def test_a_model_upgrade_switches_while_queries_keep_answering_and_rolls_back(
    service: Service, catalog: tuple[Path, list[str]], model_cache_dir: Path, tmp_path: Path
) -> None:
    from worker.model import build_model_cache

    # Converting the new model takes ~40 s the first time on a machine (the worker tests
    # need it too); done here, it does not hold up the service's queries.
    build_model_cache("efficientnet-lite1", model_cache_dir)
    before = service.get("/v1/reindex").json()
    total = before["active"]["count"]
    assert before["active"]["model"] == "efficientnet-lite0" and total > 300
    root, ids = catalog
    photo = (root / ids[0].replace(".", "/", 1)).with_suffix(".png").read_bytes()
    state = tmp_path / "reindex.json"
    args = ["reindex", "--model", "efficientnet-lite1", "--state", state]

    with Hammer(service, ids[0], photo) as hammer:
        # Killed once in the middle of the copy; the same command resumes it.
        first = subprocess.Popen(
            service.indexer(*args, "--page-size", "16", "--max-pending", "1"),
            cwd=REPO,
            env=service.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while reindex_cursor(state) is None:
            assert first.poll() is None, "the reindex finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert service.get("/v1/reindex").json()["next"] is not None

        finished = service.run(*args, "--report", tmp_path / "report.json")
        assert finished.returncode == 0, finished.stdout + finished.stderr
        time.sleep(1.0)  # a few more queries on the new version

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["switched"] and report["failed"] == []
    after = service.get("/v1/reindex").json()
    assert after["active"]["model"] == "efficientnet-lite1"
    assert after["previous"]["model"] == "efficientnet-lite0"
    assert after["active"]["count"] == after["previous"]["count"] == total
    assert service.get(f"/v1/items/{ids[0]}", CATALOG).json()["model"] == "efficientnet-lite1"

    # Queries never stopped: every one answered, by the old model and then by the new.
    assert hammer.errors == []
    print(f"\nqueries during the reindex: {hammer.answers}")
    assert len(hammer.answers) >= 10
    assert {status for _, status, _ in hammer.answers} == {200}
    models = [model for kind, _, model in hammer.answers if kind == "search"]
    assert models[0] == "efficientnet-lite0" and models[-1] == "efficientnet-lite1"

    # Changes made after the switch survive a rollback: they were made to both versions.
    late = tmp_path / "late"
    kept, gone = copy_photos(late, labelled_images(per_category=2, categories=("plants",)))
    assert service.run("ingest", late, "--no-duplicates", tenant="late").returncode == 0
    deleted = httpx.delete(f"{service.url}/v1/items/{gone}", headers={"X-Tenant": "late"})
    assert deleted.status_code == 204
    back = service.run("rollback")
    assert back.returncode == 0, back.stderr
    status = service.get("/v1/reindex").json()
    assert status["active"]["model"] == "efficientnet-lite0"
    assert service.ids("late") == [kept]
    assert service.get(f"/v1/items/{kept}", "late").json()["model"] == "efficientnet-lite0"
    search = httpx.post(
        f"{service.url}/v1/search", files={"image": ("q.png", photo)}, timeout=60
    ).json()
    assert search["query"]["model"] == "efficientnet-lite0"


# ------------------------------------------------------------------------- URLs


def test_a_manifest_of_urls_is_downloaded_then_only_revalidated(
    service: Service, tmp_path: Path
) -> None:
    import functools
    import http.server

    tenant = "urls"
    images = tmp_path / "cdn"
    images.mkdir()
    photos = labelled_images(per_category=1)
    for _, path in photos:
        (images / path.name).write_bytes(path.read_bytes())
    statuses: list[int] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            statuses.append(int(code))

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(images))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = tmp_path / "catalog.jsonl"
    rows = [
        {"id": f"u-{i}", "url": f"{base}/{path.name}", "metadata": {"category": category}}
        for i, (category, path) in enumerate(photos)
    ]
    rows.append({"id": "u-gone", "url": f"{base}/no-such-file.png"})
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    state = tmp_path / "state.sqlite"
    report_path = tmp_path / "report.json"
    try:
        plan = service.run(
            "ingest", manifest, "--allow-private-urls", "--state", state, "--dry-run", tenant=tenant
        )
        assert plan.returncode == 1 and "would: index 6" in plan.stdout, plan.stdout
        assert service.total(tenant) == 0  # a dry run changes nothing

        first = service.run(
            "ingest",
            manifest,
            "--allow-private-urls",
            "--state",
            state,
            "--report",
            report_path,
            tenant=tenant,
        )
        report = json.loads(report_path.read_text())
        assert first.returncode == 1
        assert report["indexed"] == len(photos)
        assert [(f["id"], f["code"]) for f in report["failed"]] == [("u-gone", "download_failed")]
        statuses.clear()

        second = service.run(
            "ingest",
            manifest,
            "--allow-private-urls",
            "--state",
            state,
            "--report",
            report_path,
            tenant=tenant,
        )
        report = json.loads(report_path.read_text())
        assert second.returncode == 1
        assert (report["indexed"], report["skipped_unchanged"]) == (0, len(photos))
        # Unchanged files answered "304 Not Modified": nothing was downloaded again.
        assert sorted(statuses) == [304] * len(photos) + [404]
    finally:
        server.shutdown()
        server.server_close()
    assert service.total(tenant) == len(photos)
