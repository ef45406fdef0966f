"""Helpers shared by the tests (importable as `support`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from lookalike.settings import Settings
from lookalike.store import EdgeStore, VectorStore

if TYPE_CHECKING:
    from lookalike.verify import Keypoints

REPO = Path(__file__).resolve().parents[1]
# The gallery's browser tests: Debian's Chromium, and where their screenshots go.
CHROMIUM = os.environ.get("LOOKALIKE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "build" / "screenshots"
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
# Categories of Debian's tuxpaint-stamps-default with enough real photos for retrieval tests.
CATEGORIES = ("animals", "food", "plants", "vehicles", "seasonal", "town")
# The benchmarks' volume images: tests of a benchmark command skip without them.
NEEDS_FASHION_MNIST = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="needs Debian's dataset-fashion-mnist",
)


# The stores the store tests run on: the embedded shard (float32, the default, and float16)
# and qdrant-client's local mode standing in for a server.
STORE_BACKENDS = ["edge", "edge-float16", "client-memory"]


def store_settings(backend: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        qdrant_url=":memory:" if backend == "client-memory" else "",
        vector_datatype="float16" if backend == "edge-float16" else "float32",
    )


def holds_float16(store: VectorStore) -> bool:
    # qdrant-client's local mode ignores the datatype (a server applies it).
    return isinstance(store, EdgeStore) and store.vector_datatype == "float16"


def labelled_images(
    per_category: int, categories: tuple[str, ...] = CATEGORIES
) -> list[tuple[str, Path]]:
    """(category, path) of real photos from tuxpaint-stamps-default, in a stable order."""
    if not TUXPAINT_STAMPS.is_dir():
        pytest.fail("Debian package tuxpaint-stamps-default is missing: run scripts/test.sh")
    chosen: list[tuple[str, Path]] = []
    for category in categories:
        paths = sorted(
            p for p in (TUXPAINT_STAMPS / category).rglob("*.png") if p.stat().st_size > 20_000
        )
        chosen.extend((category, p) for p in paths[:per_category])
    return chosen


def edited_copy(path: Path) -> bytes:
    """The same photo as a shop might re-upload it: cropped, rescaled, recompressed as JPEG."""
    import io

    from PIL import Image

    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    w, h = rgb.size
    cropped = rgb.crop((int(w * 0.05), int(h * 0.05), int(w * 0.95), int(h * 0.95)))
    resized = cropped.resize((int(cropped.width * 0.7), int(cropped.height * 0.7)))
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=50)
    return out.getvalue()


def format_2(points: Keypoints) -> str:
    """The keypoints payload (lookalike/verify.py) a point indexed before the thumbnails
    holds: format 2, which the service no longer reads (the item needs a reindex)."""
    import base64
    import struct

    import numpy as np

    grid = points.grid
    assert grid is not None
    body = b"".join(
        [
            struct.pack("<BH", 2, len(points)),
            struct.pack("<HHBB", *points.frame, grid.shape[1], grid.shape[0]),
            points.xy.astype(np.float16).tobytes(),
            np.round(points.ab).astype(np.int8).tobytes(),
            points.descriptors.tobytes(),
            np.round(grid).astype(np.int8).tobytes(),
        ]
    )
    return base64.b64encode(body).decode("ascii")


def wait_for_task(client, task_id: str, timeout: float = 120.0, headers=None) -> dict:  # type: ignore[no-untyped-def]
    """Poll GET /v1/tasks/{id} through a Flask test client until the task is finished
    (``headers``: the tenant's, for a task submitted with X-Tenant)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = client.get(f"/v1/tasks/{task_id}", headers=headers or {})
        assert resp.status_code == 200, resp.get_json()
        body: dict = resp.get_json()
        if body["status"] not in ("queued", "running", "retrying"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish in {timeout} s")


def post_item(client, item_id: str, data: bytes, metadata: dict | None = None, **headers: str):  # type: ignore[no-untyped-def]
    import io
    import json

    form = {"id": item_id, "image": (io.BytesIO(data), f"{item_id}.img")}
    if metadata is not None:
        form["metadata"] = json.dumps(metadata)
    return client.post("/v1/items", data=form, headers=headers, content_type="multipart/form-data")


def composite(
    left: Path, right: Path, size: tuple[int, int] = (1600, 800)
) -> tuple[bytes, list[tuple[float, float, float, float]]]:
    """A "shop the look" photo: a JPEG (1.3 MP by default) of two catalog images side by
    side on white, one in each half, and the normalised box (x, y, width, height) around
    each."""
    import io

    from PIL import Image, ImageOps

    canvas = Image.new("RGB", size, (255, 255, 255))
    boxes = []
    for n, path in enumerate((left, right)):
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        obj = Image.alpha_composite(white, rgba).convert("RGB")
        # Scaled to fill its half (stamps are small): objects as large as in a real photo.
        obj = ImageOps.contain(obj, (size[0] // 2 - 100, size[1] - 100))
        x = n * size[0] // 2 + (size[0] // 2 - obj.width) // 2
        y = (size[1] - obj.height) // 2
        canvas.paste(obj, (x, y))
        boxes.append((x / size[0], y / size[1], obj.width / size[0], obj.height / size[1]))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue(), boxes


def index_stamps(client, per_category: int, tenant: str) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Index ``per_category`` tuxpaint photos of animals, food, plants and vehicles in
    ``tenant`` through the API (ids ``animals-0``, ...) and wait for them; id -> path."""
    import io

    headers = {"X-Tenant": tenant}
    items: dict[str, Path] = {}
    tasks = []
    categories = ("animals", "food", "plants", "vehicles")
    for n, (category, path) in enumerate(labelled_images(per_category, categories)):
        item_id = f"{category}-{n % per_category}"
        form = {"id": item_id, "image": (io.BytesIO(path.read_bytes()), path.name)}
        resp = client.post("/v1/items", data=form, headers=headers)
        assert resp.status_code == 202, resp.get_json()
        tasks.append(resp.get_json()["task_id"])
        items[item_id] = path
    for task_id in tasks:
        assert wait_for_task(client, task_id, headers=headers)["status"] == "succeeded"
    return items


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_embedded(
    root: Path, model_cache_dir: Path, **settings: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """`lookalike serve` on the embedded defaults in its own process, data under ``root``,
    with these extra LOOKALIKE_* ``settings``: its URL and the environment it (and an indexer
    run against it) uses. Stopped with SIGTERM, as a supervisor would."""
    port = free_port()
    env = dict(
        os.environ,
        LOOKALIKE_DATA_DIR=str(root / "data"),
        LOOKALIKE_MODEL_CACHE=str(model_cache_dir),
        LOOKALIKE_REDIS_URL="",
        LOOKALIKE_QDRANT_URL="",
        LOOKALIKE_API_KEYS_READ="",
        LOOKALIKE_API_KEYS_WRITE="",
        LOOKALIKE_INDEXER_STATE_DIR=str(root / "indexer-state"),
        **settings,
    )
    env.pop("LOOKALIKE_API_KEY", None)
    with (root / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the service exited: {(root / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the service did not get ready in 180 s")
        time.sleep(0.3)
    try:
        yield url, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def served_over_http(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``app`` behind waitress on a free local port, as `lookalike serve` runs it: its URL."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()


def index_items(client, items: Iterable[tuple[str, Path, dict]], job: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Upload (id, image file, metadata) items through POST /v1/items (as one job, when
    named) and wait until every one is indexed."""
    import io
    import json

    tasks = []
    for item_id, path, metadata in items:
        form = {
            "id": item_id,
            "metadata": json.dumps(metadata),
            "image": (io.BytesIO(path.read_bytes()), path.name),
            **({"job": job} if job else {}),
        }
        resp = client.post("/v1/items", data=form, content_type="multipart/form-data")
        assert resp.status_code == 202, resp.get_json()
        tasks.append(resp.get_json()["task_id"])
    for task_id in tasks:
        assert wait_for_task(client, task_id)["status"] == "succeeded"


def reindex_through_api(client, model: str = "efficientnet-lite0") -> None:  # type: ignore[no-untyped-def]
    """What `indexer reindex` does, through the API: start a new version, send every page's
    batch and wait for it, then switch to it."""
    catalog = {"collection": "catalog"}
    started = client.post("/v1/reindex", json={**catalog, "model": model})
    assert started.status_code == 201, started.get_json()
    cursor = None
    while True:
        page = client.post("/v1/reindex/batches", json={**catalog, "cursor": cursor}).get_json()
        if page["task_id"]:
            assert wait_for_task(client, page["task_id"])["status"] == "succeeded"
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert client.post("/v1/reindex/switch", json=catalog).status_code == 200
