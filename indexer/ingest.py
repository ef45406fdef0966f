"""An ingestion job: a folder or manifest into the index, through the API.

Why through the API and not straight onto the queue: the API validates every image before a
worker sees it (a bad file fails alone, with its reason, at upload), stores it where the
workers read it, enforces API keys and tenants, and it is the one door into the embedded
default, whose shard only its own process may open. The job talks to it in batches:

    read + hash (threads) -> POST /v1/blobs (the batch's images, one request or a few in
    parallel) -> POST /v1/batches (one task per batch) -> GET /v1/tasks?ids=... (every
    queued batch in one request) until done -> state file

Requests per batch, not per image: on a small machine the API and the indexer share the
cores with the model, and each HTTP request costs about as much CPU as decoding a small image
(docs/performance.md).

Back-pressure: at most ``max_pending`` batches are queued at the service at once, and at
most a batch of images per tenant (until it is uploaded) and a few per reader thread are
held in memory, so a million-row manifest runs in the same memory as a hundred-row one and
never floods the queue.

Resume: every step is recorded in the state file (indexer/state.py) as soon as it happens.
A re-run of the same command skips what was confirmed, follows the tasks a killed run left
queued, and re-sends the rest; point ids derived from (tenant, id) make a re-sent item
overwrite itself, never duplicate. Unchanged items (same image bytes, same metadata) are
skipped without being uploaded or embedded; a metadata-only change is sent as a payload
update, without re-embedding.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from indexer.client import APIClient, APIClientError
from indexer.duplicate_report import groups, star_groups
from indexer.fetch import download_client
from indexer.ingest_report import IngestReport
from indexer.progress import Progress
from indexer.sources import SourceItem, UrlNotAllowed
from indexer.state import FileState, ItemState, JobState, metadata_hash
from lookalike.images import sha256_hex
from lookalike.schema import DEFAULT_TENANT, InvalidId, validate_id

DUPLICATES_PER_REQUEST = 100
TASKS_PER_REQUEST = 100  # the API's limit for GET /v1/tasks?ids=
# POST /v1/blobs: at most this many bytes of images per request (the API takes 64 MiB), and
# a batch's images are spread over parallel requests only when each gets at least the minimum
# (so small images go in one request, camera photos are checked by several API threads).
BLOB_REQUEST_BYTES = 32 * 2**20
BLOB_REQUEST_MIN_BYTES = 2**20


@dataclass
class IngestOptions:
    # Items per POST /v1/batches, i.e. per worker task.
    batch_size: int = 32
    # Batches queued at the service at once (back-pressure).
    max_pending: int = 8
    # Threads reading, hashing and uploading images.
    workers: int = 4
    # Delete from the index the items of the source's tenants that the source no longer has.
    sync: bool = False
    # ... unless that would delete more than this fraction of a tenant's items.
    max_delete_fraction: float = 0.5
    dry_run: bool = False
    # Look up the duplicates of the items indexed by this run, for the report.
    duplicates: bool = True
    duplicate_threshold: float | None = None
    job: str | None = None
    poll_interval: float = 0.25
    # Once every item is sent, the job waits on its last few batches (max_pending at most)
    # and nothing else: it looks this often, so its end is seen sooner (a status request
    # costs the API ~0.5 ms of CPU).
    drain_poll_interval: float = 0.05
    download_timeout: float = 30.0
    # Fetch URLs on private, loopback and link-local hosts too (a trusted internal source);
    # refused by default so a manifest cannot make the indexer reach inside its network.
    allow_private_urls: bool = False


class SourceProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Prepared:
    """An item read and hashed, and what the job will do with it."""

    item: SourceItem
    tenant: str  # as recorded in the state ("" = the request's default tenant)
    action: str  # index | metadata | skip | follow | failed
    sha256: str | None = None
    metadata_hash: str | None = None
    task_id: str | None = None
    error: tuple[str, str] | None = None
    # The image's bytes, held from reading until its batch is uploaded.
    data: bytes | None = field(default=None, repr=False)


class IngestJob:
    def __init__(
        self,
        client: APIClient,
        state: JobState,
        options: IngestOptions | None = None,
        *,
        out: TextIO = sys.stderr,
    ) -> None:
        self.client = client
        self.state = state
        self.options = options or IngestOptions()
        self.out = out
        self.report = IngestReport(dry_run=self.options.dry_run)
        self.default_tenant = client.tenant or ""
        # Each connection, the first and every redirect's, goes to an address checked when
        # it is made (no DNS-rebinding window between a check and the connection).
        self._downloads = download_client(
            timeout=self.options.download_timeout,
            allow_private=self.options.allow_private_urls,
        )
        # task id -> the items it carries (for a re-run: the ones met so far)
        self._pending: dict[str, list[Prepared]] = {}
        self._index: dict[str, list[Prepared]] = {}
        self._metadata: dict[str, list[Prepared]] = {}
        self._fresh: list[tuple[str, str]] = []  # (tenant, id) indexed by this run
        self._tenants: set[str] = set()
        self._progress: Progress | None = None
        self._last_poll = 0.0
        self._uploads: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------ the run

    def run(self, items: Iterable[SourceItem], *, total: int | None = None) -> IngestReport:
        started = time.monotonic()
        self.report.total = total
        self._progress = Progress(self.out, total, label="ingest")
        workers = max(1, self.options.workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._uploads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload")
        window: deque[Future[Prepared]] = deque()
        try:
            for item in items:
                prepared = self._admit(item)
                if prepared is not None:
                    self._handle(prepared, pool)
                    continue
                window.append(pool.submit(self._prepare, item))
                while len(window) >= workers * 4:
                    self._handle(self._result(window.popleft()), pool)
            while window:
                self._handle(self._result(window.popleft()), pool)
            self._flush_all(pool, final=True)
            while self._pending or self._index or self._metadata:
                few = len(self._pending) <= self.options.max_pending
                self._poll(wait=True, interval=self.options.drain_poll_interval if few else None)
                self._flush_all(pool, final=True)
            if self.options.sync and not self.options.dry_run:
                self._sync()
            elif self.options.sync:
                self._sync(dry_run=True)
            if self.options.duplicates and not self.options.dry_run:
                self._find_duplicates()
        except KeyboardInterrupt:
            self.report.interrupted = True
        except APIClientError as exc:
            self.report.error = f"the service failed: {exc}"
        finally:
            pool.shutdown(wait=not self.report.interrupted, cancel_futures=True)
            self._uploads.shutdown(wait=not self.report.interrupted, cancel_futures=True)
            self._downloads.close()
            self.report.seconds = time.monotonic() - started
            self._show(force=True)
            self._progress.finish()
        return self.report

    def _result(self, future: Future[Prepared]) -> Prepared:
        while True:
            try:
                return future.result(timeout=self.options.poll_interval)
            except TimeoutError:
                self._poll()

    def _admit(self, item: SourceItem) -> Prepared | None:
        """Checks made in order, on the main thread: a row problem, a repeated id."""
        tenant = item.tenant or self.default_tenant
        named = item.problem is None or _valid(item.id)
        if named and not self.state.mark_seen(tenant, item.id):
            return Prepared(
                item,
                tenant,
                "failed",
                error=("duplicate_id", f"{item.origin}: the id was already used above"),
            )
        if item.problem is not None:
            return Prepared(item, tenant, "failed", error=item.problem)
        if tenant not in self._tenants:
            self._tenants.add(tenant)
            self._check_state(tenant)
        return None

    def _check_state(self, tenant: str) -> None:
        """The state is a cache of what the index holds. If the index holds fewer of the
        tenant's items than the state believes indexed (it was wiped, or items were deleted
        by hand), the state is stale: it is rebuilt from the index."""
        if self.state.has_items(tenant):
            page = self.client.list_items(limit=1, tenant=tenant or None)
            if int(page.get("total") or 0) >= self.state.indexed_count(tenant):
                return
            self.state.forget_tenant(tenant)
        self._seed(tenant)

    def _seed(self, tenant: str) -> None:
        """A state file that knows nothing of a tenant (a first run, a new manifest name, a
        new machine) learns what the index already holds, so unchanged items are skipped
        anyway: same id, same image hash, same metadata."""
        cursor: str | None = None
        while True:
            page = self.client.list_items(cursor=cursor, limit=500, tenant=tenant or None)
            self.state.set_indexed(
                (tenant, i["id"], i.get("image_sha256"), metadata_hash(i.get("metadata") or {}))
                for i in page["items"]
            )
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # --------------------------------------------------------------- reader threads

    def _prepare(self, item: SourceItem, force: bool = False) -> Prepared:
        tenant = item.tenant or self.default_tenant
        try:
            sha, data = self._hash(item)
            meta = metadata_hash(item.metadata)
            row = self.state.item(tenant, item.id)
            action = "index" if force else _decide(row, sha, meta)
            if action == "index" and not self.options.dry_run:
                if data is None:
                    data = self._read(item)
                    sha = sha256_hex(data)
            else:
                data = None
        except SourceProblem as exc:
            return Prepared(item, tenant, "failed", error=(exc.code, exc.message))
        task_id = row.task_id if row is not None and action == "follow" else None
        return Prepared(item, tenant, action, sha, meta, task_id, data=data)

    def _hash(self, item: SourceItem) -> tuple[str, bytes | None]:
        """The image's sha256, from the state's cache when the file is unchanged, and its
        bytes when they had to be read."""
        if item.url is not None:
            return self._fetch(item.url)
        assert item.path is not None
        key = str(item.path.resolve())
        try:
            stat = item.path.stat()
        except OSError as exc:
            raise SourceProblem("source_unreadable", f"{item.path}: {exc.strerror}") from exc
        cached = self.state.file(key)
        if cached and cached.size == stat.st_size and cached.mtime_ns == stat.st_mtime_ns:
            return cached.sha256, None
        data = self._read(item)
        sha = sha256_hex(data)
        self.state.set_file(key, FileState(stat.st_size, stat.st_mtime_ns, None, sha))
        return sha, data

    def _read(self, item: SourceItem) -> bytes:
        if item.url is not None:
            return self._download(item.url, {})[0]
        assert item.path is not None
        try:
            return item.path.read_bytes()
        except OSError as exc:
            raise SourceProblem("source_unreadable", f"{item.path}: {exc.strerror}") from exc

    def _fetch(self, url: str) -> tuple[str, bytes | None]:
        cached = self.state.file(url)
        headers = {}
        if cached is not None and cached.etag:
            kind, _, value = cached.etag.partition(":")
            headers["If-None-Match" if kind == "etag" else "If-Modified-Since"] = value
        data, response = self._download(url, headers)
        if response.status_code == 304 and cached is not None:
            return cached.sha256, None
        sha = sha256_hex(data)
        validator = response.headers.get("ETag")
        tag = f"etag:{validator}" if validator else None
        if tag is None and response.headers.get("Last-Modified"):
            tag = f"modified:{response.headers['Last-Modified']}"
        self.state.set_file(url, FileState(len(data), None, tag, sha))
        return sha, data

    def _download(self, url: str, headers: dict[str, str]) -> tuple[bytes, httpx.Response]:
        try:
            response = self._downloads.get(url, headers=headers)
        except UrlNotAllowed as exc:
            raise SourceProblem("url_not_allowed", str(exc)) from exc
        except httpx.HTTPError as exc:
            raise SourceProblem("download_failed", f"{url}: {exc}") from exc
        if response.status_code == 304 and headers:
            return b"", response
        if response.status_code != 200:
            raise SourceProblem("download_failed", f"{url}: HTTP {response.status_code}")
        return response.content, response

    # ------------------------------------------------------------------ main thread

    def _handle(self, prepared: Prepared, pool: ThreadPoolExecutor) -> None:
        action = prepared.action
        if self.options.dry_run:
            planned = {"index": "index", "metadata": "update metadata", "follow": "index"}
            key = planned.get(action, "unchanged" if action == "skip" else "fail")
            self.report.planned[key] = self.report.planned.get(key, 0) + 1
            if action == "failed":
                self._fail(prepared, record=False)
            elif action == "skip":
                self.report.skipped += 1
        elif action == "failed":
            self._fail(prepared)
        elif action == "skip":
            self.report.skipped += 1
        elif action == "follow":
            assert prepared.task_id is not None
            self._pending.setdefault(prepared.task_id, []).append(prepared)
        elif action == "metadata":
            self._metadata.setdefault(prepared.tenant, []).append(prepared)
        else:
            self._index.setdefault(prepared.tenant, []).append(prepared)
        self._flush_all(pool)
        self._poll()

    def _fail(self, prepared: Prepared, *, record: bool = True) -> None:
        assert prepared.error is not None
        code, message = prepared.error
        entry = {"id": prepared.item.id, "code": code, "message": message}
        if prepared.tenant and prepared.tenant != self.default_tenant:
            entry["tenant"] = prepared.tenant
        if prepared.item.origin:
            entry["source"] = prepared.item.origin
        self.report.failed.append(entry)
        if record and _valid(prepared.item.id):
            self.state.set_failed([(prepared.tenant, prepared.item.id, code, message)])

    def _flush_all(self, pool: ThreadPoolExecutor, *, final: bool = False) -> None:
        size = self.options.batch_size
        for tenant, batch in list(self._metadata.items()):
            while len(batch) >= size or (final and batch):
                self._send_metadata(tenant, batch[:size], pool)
                del batch[:size]
            if not batch:
                del self._metadata[tenant]
        for tenant, batch in list(self._index.items()):
            while len(batch) >= size or (final and batch):
                while len(self._pending) >= self.options.max_pending:
                    self._poll(wait=True)  # back-pressure: the service has enough queued
                self._send_index(tenant, batch[:size])
                del batch[:size]
            if not batch:
                del self._index[tenant]

    def _send_index(self, tenant: str, batch: list[Prepared]) -> None:
        batch = self._upload(tenant, batch)
        if not batch:
            return
        body = [
            {"id": p.item.id, "image_sha256": p.sha256, "metadata": p.item.metadata} for p in batch
        ]
        answer = self.client.add_batch(body, tenant=tenant or None, job=self.options.job)
        rejected = {r["id"]: r for r in answer.get("rejected", [])}
        for p in batch:
            if p.item.id in rejected:
                r = rejected[p.item.id]
                self._fail(Prepared(p.item, p.tenant, "failed", error=(r["code"], r["message"])))
        queued = [p for p in batch if p.item.id not in rejected]
        task_id = answer.get("task_id")
        if queued and task_id:
            self.report.submitted += len(queued)
            self.state.set_pending(
                [(p.tenant, p.item.id, p.sha256 or "", p.metadata_hash or "") for p in queued],
                task_id,
            )
            self._pending[task_id] = queued

    def _upload(self, tenant: str, batch: list[Prepared]) -> list[Prepared]:
        """Upload the batch's images, each distinct image once, as the batch's tenant (an
        image is usable only by the tenant that uploaded it); an item whose image the
        service refuses fails with its reason. Returns the items whose image is stored."""
        blobs = {p.sha256: p.data for p in batch if p.sha256 and p.data is not None}
        refused: dict[str, tuple[str, str]] = {}
        if blobs:
            assert self._uploads is not None
            chunks = _blob_chunks(blobs, self.options.workers)
            put = functools.partial(self._put_blobs, tenant=tenant or None)
            for answer in self._uploads.map(put, chunks):
                refused.update(answer)
        kept = []
        for p in batch:
            p.data = None
            if p.sha256 in refused:
                self._fail(Prepared(p.item, p.tenant, "failed", error=refused[p.sha256]))
            else:
                kept.append(p)
        return kept

    def _put_blobs(
        self, blobs: dict[str, bytes], tenant: str | None = None
    ) -> dict[str, tuple[str, str]]:
        """One POST /v1/blobs; the refused images with (code, message). A request refused as
        a whole (too large, say) is sent again one image at a time, so each gets its reason."""
        try:
            answer = self.client.put_blobs(blobs, tenant=tenant)
        except APIClientError as exc:
            if exc.transient:
                raise
            refused = {}
            for sha, data in blobs.items():
                try:
                    self.client.put_blob(sha, data, tenant=tenant)
                except APIClientError as one:
                    if one.transient:
                        raise
                    refused[sha] = (one.code, one.message)
            return refused
        return {r["sha256"]: (r["code"], r["message"]) for r in answer.get("rejected", [])}

    def _send_metadata(self, tenant: str, batch: list[Prepared], pool: ThreadPoolExecutor) -> None:
        body = [{"id": p.item.id, "metadata": p.item.metadata} for p in batch]
        answer = self.client.update_metadata(body, tenant=tenant or None)
        updated = set(answer.get("updated", []))
        failures = {f["id"]: f for f in answer.get("failed", [])}
        self.state.set_indexed(
            (p.tenant, p.item.id, p.sha256, p.metadata_hash) for p in batch if p.item.id in updated
        )
        self.report.metadata_updated += len(updated)
        for p in batch:
            failure = failures.get(p.item.id)
            if failure is None:
                continue
            if failure["code"] == "item_not_found":
                # Gone from the index since (deleted by hand?): index it again, image and all.
                self._handle(self._prepare(p.item, force=True), pool)
            else:
                error = (failure["code"], failure["message"])
                self._fail(Prepared(p.item, p.tenant, "failed", error=error))

    def _poll(self, *, wait: bool = False, interval: float | None = None) -> None:
        interval = self.options.poll_interval if interval is None else interval
        now = time.monotonic()
        if not wait and now - self._last_poll < interval:
            self._show()
            return
        if wait and now - self._last_poll < interval:
            time.sleep(interval - (now - self._last_poll))
        self._last_poll = time.monotonic()
        by_tenant: dict[str, list[str]] = {}
        for task_id, batch in self._pending.items():
            by_tenant.setdefault(batch[0].tenant, []).append(task_id)
        for tenant, task_ids in by_tenant.items():
            for start in range(0, len(task_ids), TASKS_PER_REQUEST):
                chunk = task_ids[start : start + TASKS_PER_REQUEST]
                answer = self.client.tasks(chunk, tenant=tenant or None)
                for task_id in answer.get("not_found", []):
                    if task_id in self._pending:
                        self._resend(task_id)
                for status in answer.get("tasks", []):
                    task_id = status["task_id"]
                    if task_id not in self._pending or status["status"] in (
                        "queued",
                        "running",
                        "retrying",
                    ):
                        continue
                    self._settle(self._pending.pop(task_id), status)
        self._show()

    def _resend(self, task_id: str) -> None:
        """The service forgot a task (an embedded service restarted): send its items again,
        images included (the restart may have lost them too)."""
        for p in self._pending.pop(task_id):
            again = self._prepare(p.item, force=True)
            if again.action == "failed":
                self._fail(again)
            else:
                self._index.setdefault(again.tenant, []).append(again)

    def _settle(self, batch: list[Prepared], status: dict[str, Any]) -> None:
        indexed = set(status.get("indexed") or [])
        failures = {f.get("id"): f for f in status.get("failed") or []}
        error = status.get("error") or {}
        done = [p for p in batch if p.item.id in indexed]
        self.state.set_indexed((p.tenant, p.item.id, p.sha256, p.metadata_hash) for p in done)
        self.report.indexed += len(done)
        self._fresh.extend((p.tenant, p.item.id) for p in done)
        for p in batch:
            if p.item.id in indexed:
                continue
            failure = failures.get(p.item.id) or {
                "code": error.get("code", "task_failed"),
                "message": error.get("message", "the worker's task failed"),
            }
            self._fail(
                Prepared(p.item, p.tenant, "failed", error=(failure["code"], failure["message"]))
            )

    def _show(self, force: bool = False) -> None:
        if self._progress is None:
            return
        r = self.report
        self._progress.update(
            done=r.indexed + r.metadata_updated + r.deleted,
            failed=len(r.failed),
            skipped=r.skipped,
            embedded=r.indexed,
            queued=sum(len(b) for b in self._pending.values()),
            force=force,
        )

    # --------------------------------------------------------------------- sync

    def _sync(self, *, dry_run: bool = False) -> None:
        if self.report.interrupted or self.report.error:
            return
        if self.state.seen_count() == 0:
            self.report.error = "sync refused: the source holds no items (it would empty the index)"
            return
        for tenant in sorted(self._tenants or {self.default_tenant}):
            gone: list[str] = []
            cursor: str | None = None
            total = 0
            while True:
                page = self.client.list_items(cursor=cursor, limit=500, tenant=tenant or None)
                total = int(page.get("total") or 0)
                ids = [i["id"] for i in page["items"]]
                gone.extend(i for i in ids if not self.state.was_seen(tenant, i))
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            if dry_run:
                self.report.planned["delete"] = self.report.planned.get("delete", 0) + len(gone)
                self.report.deleted_ids.extend(self._name(tenant, i) for i in gone)
                continue
            if total and len(gone) > self.options.max_delete_fraction * total:
                self.report.error = (
                    f"sync refused for tenant {tenant or DEFAULT_TENANT!r}: it would delete "
                    f"{len(gone)} of {total} items, more than "
                    f"{self.options.max_delete_fraction:.0%} (--max-delete raises the limit)"
                )
                continue
            for start in range(0, len(gone), 1000):
                answer = self.client.delete_items(gone[start : start + 1000], tenant=tenant or None)
                deleted = answer.get("deleted", [])
                self.report.deleted += len(deleted)
                self.report.deleted_ids.extend(self._name(tenant, i) for i in deleted)
            self.state.forget((tenant, item_id) for item_id in gone)
        # Recorded items the source dropped but the index did not hold any more.
        self.state.forget(list(self.state.unseen(self._tenants)))

    # --------------------------------------------------------------- duplicates

    def _find_duplicates(self) -> None:
        if self.report.interrupted or self.report.error:
            return
        exact_pairs: list[tuple[str, str]] = []
        near_pairs: list[tuple[str, str]] = []
        variant_pairs: list[tuple[str, str]] = []
        unverifiable: dict[str, list[str]] = {}
        for group in self.state.sha_groups():
            names = [self._name(t, i) for t, i in group]
            exact_pairs.extend((names[0], n) for n in names[1:])
        by_tenant: dict[str, list[str]] = {}
        for tenant, item_id in self._fresh:
            by_tenant.setdefault(tenant, []).append(item_id)
        threshold = self.options.duplicate_threshold
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), DUPLICATES_PER_REQUEST):
                answer = self.client.duplicates(
                    ids[start : start + DUPLICATES_PER_REQUEST],
                    tenant=tenant or None,
                    threshold=threshold,
                )
                threshold = answer.get("threshold", threshold)
                for entry in answer.get("items", []):
                    me = self._name(tenant, entry["id"])
                    exact_pairs.extend((me, self._name(tenant, e["id"])) for e in entry["exact"])
                    near_pairs.extend((me, self._name(tenant, n["id"])) for n in entry["near"])
                    variant_pairs.extend(
                        (me, self._name(tenant, v["id"])) for v in entry.get("variants", [])
                    )
                    state = entry.get("verification", "verified")
                    if state != "verified":
                        unverifiable.setdefault(state, []).append(me)
        self.report.duplicates = {
            "threshold": threshold,
            "exact": groups(exact_pairs),
            "near": star_groups(near_pairs),
            "variants": star_groups(variant_pairs),
            "unverifiable": unverifiable,
        }

    def _name(self, tenant: str, item_id: str) -> str:
        return item_id if tenant == self.default_tenant else f"{tenant}/{item_id}"


def _blob_chunks(blobs: dict[str, bytes], most: int) -> list[dict[str, bytes]]:
    """A batch's images split into POST /v1/blobs requests: under BLOB_REQUEST_BYTES each,
    and over up to ``most`` parallel requests when there are megabytes to check."""
    total = sum(len(data) for data in blobs.values())
    target = total / max(1, min(most, total // BLOB_REQUEST_MIN_BYTES))
    chunks: list[dict[str, bytes]] = [{}]
    size = 0
    for sha, data in blobs.items():
        if chunks[-1] and (size >= target or size + len(data) > BLOB_REQUEST_BYTES):
            chunks.append({})
            size = 0
        chunks[-1][sha] = data
        size += len(data)
    return chunks


def _decide(row: ItemState | None, sha: str, meta: str) -> str:
    if row is None or row.status == "failed":
        return "index"
    if row.image_sha256 != sha:
        return "index"
    if row.status == "pending":
        return "follow" if row.metadata_hash == meta and row.task_id else "index"
    return "skip" if row.metadata_hash == meta else "metadata"


def _valid(item_id: str) -> bool:
    try:
        validate_id(item_id)
    except InvalidId:
        return False
    return True


def ingest(
    client: APIClient,
    items: Iterable[SourceItem],
    *,
    state: JobState | None = None,
    options: IngestOptions | None = None,
    total: int | None = None,
    out: TextIO = sys.stderr,
    source: str = "",
) -> IngestReport:
    """Run an ingestion job. Without a state file, one lives in a temporary folder for the
    run (nothing is remembered for the next)."""
    if state is not None:
        job = IngestJob(client, state, options, out=out)
        job.report.source = source
        return job.run(items, total=total)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lookalike-ingest-") as tmp:
        temporary = JobState(Path(tmp) / "state.sqlite")
        try:
            job = IngestJob(client, temporary, options, out=out)
            job.report.source = source
            return job.run(items, total=total)
        finally:
            temporary.close()
