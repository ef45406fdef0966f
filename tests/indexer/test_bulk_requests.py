"""The requests that let an ingestion job work per batch instead of per image: many images
in one POST /v1/blobs, many task statuses in one GET /v1/tasks. On the embedded service:
real worker, real model, real qdrant-edge, real photos."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from support import labelled_images, wait_for_task

TENANT = {"X-Tenant": "bulk"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def post_blobs(client: Any, parts: dict[str, bytes]) -> Any:
    files = {name: (io.BytesIO(data), f"{name[:8]}.png") for name, data in parts.items()}
    # As the tenant that then indexes them: an image is usable only by its uploader's tenant.
    return client.post("/v1/blobs", data=files, content_type="multipart/form-data", headers=TENANT)


def test_many_images_in_one_request_and_a_bad_one_fails_alone(client: Any) -> None:
    photos = [path.read_bytes() for _, path in labelled_images(per_category=2)[:6]]
    truncated = photos[0][: len(photos[0]) // 2]
    parts = {sha(p): p for p in photos}
    parts[sha(truncated)] = truncated
    parts["0" * 64] = photos[1]  # named by another image's hash
    parts["not-a-hash"] = photos[2]

    resp = post_blobs(client, parts)

    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["stored"] == [sha(p) for p in photos]
    codes = {r["sha256"]: r["code"] for r in body["rejected"]}
    assert codes == {
        sha(truncated): "corrupt_image",
        "0" * 64: "checksum_mismatch",
        "not-a-hash": "invalid_parameter",
    }
    # Stored means indexable: the batch that names them is queued and indexed.
    items = [{"id": f"bulk-{i}", "image_sha256": sha(p)} for i, p in enumerate(photos)]
    items.append({"id": "bulk-truncated", "image_sha256": sha(truncated)})
    queued = client.post("/v1/batches", json={"items": items}, headers=TENANT)
    assert queued.status_code == 202, queued.get_json()
    assert [r["id"] for r in queued.get_json()["rejected"]] == ["bulk-truncated"]
    task_id = queued.get_json()["task_id"]
    done = wait_for_task(client, task_id, headers=TENANT)
    assert sorted(done["indexed"]) == sorted(f"bulk-{i}" for i in range(len(photos)))

    # Many statuses in one request; ids this tenant does not know are listed apart.
    statuses = client.get(f"/v1/tasks?ids={task_id},no-such-task", headers=TENANT)
    assert statuses.status_code == 200, statuses.get_json()
    answer = statuses.get_json()
    assert answer["not_found"] == ["no-such-task"]
    assert [t["task_id"] for t in answer["tasks"]] == [task_id]
    assert answer["tasks"][0]["status"] == "succeeded"
    assert sorted(answer["tasks"][0]["indexed"]) == sorted(done["indexed"])
    other = client.get(f"/v1/tasks?ids={task_id}", headers={"X-Tenant": "someone-else"})
    assert other.get_json() == {"tasks": [], "not_found": [task_id]}


def test_malformed_bulk_requests_are_refused_whole(client: Any) -> None:
    as_json = client.post("/v1/blobs", json={"images": []})
    assert as_json.status_code == 415
    assert as_json.get_json()["error"]["code"] == "unsupported_media_type"
    empty = client.post("/v1/blobs", data={"note": "no files"}, content_type="multipart/form-data")
    assert empty.status_code == 400
    assert empty.get_json()["error"]["code"] == "missing_field"
    tiny = b"\x89PNG"
    too_many = post_blobs(client, {f"{i:064x}": tiny for i in range(300)})
    assert too_many.status_code in (400, 413)
    assert too_many.get_json()["error"]["code"] in ("invalid_parameter", "payload_too_large")

    assert client.get("/v1/tasks").get_json()["error"]["code"] == "missing_field"
    many_ids = ",".join(f"t{i}" for i in range(101))
    assert client.get(f"/v1/tasks?ids={many_ids}").get_json()["error"]["code"] == (
        "invalid_parameter"
    )
