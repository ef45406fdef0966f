"""``indexer reindex --model NAME``: re-embed the whole catalog with another model while the
service keeps answering from the current one, then switch atomically (api/reindex.py).
``--head NAME`` embeds it with a trained head on the backbone's vectors too (a head trained
with ``indexer train-head``, e.g. from the catalog's own labels).

1. **start**: the service creates the new version (or this resumes the one in progress);
   from now on every ingested batch is written to both.
2. **copy**: page by page through the active version, each page one worker task, at most
   ``max_pending`` queued at once.
3. **verify**: compare both versions page by page, both ways, and repair what changed during
   the copy (new, changed, re-described or deleted items); repeat until a pass finds nothing.
4. **switch**: the alias moves to the new version in one step; the old one is kept for
   ``indexer rollback`` until ``indexer versions --commit``.

The job records where it is (phase, cursor) in a small JSON file after every page: killed at
any point, the same command continues from the first page not yet confirmed. Re-embedding a
page twice is harmless (same point ids).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from indexer.client import APIClient, APIClientError
from indexer.progress import Progress, duration
from lookalike.store.versions import requested_label


@dataclass
class ReindexOptions:
    # Items per task. Small enough that query embeddings queued behind a task wait little
    # when one worker serves both (the embedded default).
    page_size: int = 64
    max_pending: int = 4
    switch: bool = True
    verify_passes: int = 3
    # Switch even if some items could not be re-embedded (they would leave the catalog).
    allow_missing: bool = False
    poll_interval: float = 0.5


@dataclass
class ReindexReport:
    model: str = ""
    target: str = ""
    total: int = 0
    reindexed: int = 0
    repaired: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    switched: bool = False
    interrupted: bool = False
    error: str | None = None
    seconds: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target": self.target,
            "total": self.total,
            "reindexed": self.reindexed,
            "repaired": self.repaired,
            "failed": self.failed,
            "switched": self.switched,
            "interrupted": self.interrupted,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.reindexed / self.seconds, 2) if self.seconds else None,
            "status": self.status,
        }

    def summary(self) -> str:
        lines = [f"reindex to {self.model} ({self.target}): {duration(self.seconds)}"]
        if self.interrupted:
            lines.append("  interrupted: run the same command again to continue")
        if self.error:
            lines.append(f"  stopped: {self.error}")
        rate = self.as_dict()["images_per_second"]
        lines.append(
            f"  re-embedded {self.reindexed} of {self.total} items"
            + (f" ({rate} img/s)" if rate else "")
            + f", repaired {self.repaired} changed during the copy, failed {len(self.failed)}"
        )
        for f in self.failed[:50]:
            lines.append(f"    {f.get('id')}: {f.get('code')}: {f.get('message')}")
        active = (self.status.get("active") or {}).get("name")
        if self.switched:
            lines.append(f"  switched: queries are now served from {active}")
            lines.append("  `indexer rollback` switches back; `indexer versions --commit` keeps it")
        elif not self.interrupted and not self.error:
            lines.append(f"  not switched: queries are still served from {active}")
        return "\n".join(lines)


class ReindexJob:
    def __init__(
        self,
        client: APIClient,
        state_path: Path,
        options: ReindexOptions | None = None,
        *,
        out: TextIO = sys.stderr,
    ) -> None:
        self.client = client
        self.state_path = state_path
        self.options = options or ReindexOptions()
        self.out = out
        self.report = ReindexReport()
        self.collection = ""
        # (cursor the page started at, task id) in the order queued
        self._pending: deque[tuple[str | None, str]] = deque()
        self._progress: Progress | None = None

    def run(self, model: str, head: str = "") -> ReindexReport:
        """Reindex into a version embedded by ``model`` (and the trained ``head``)."""
        started = time.monotonic()
        self.report.model = requested_label(model, head)
        try:
            self._run(model, head)
        except KeyboardInterrupt:
            self.report.interrupted = True
        except APIClientError as exc:
            self.report.error = f"the service refused: {exc}"
        finally:
            self.report.seconds = time.monotonic() - started
            if self._progress is not None:
                self._show(force=True)
                self._progress.finish()
        return self.report

    def _run(self, model: str, head: str) -> None:
        self.collection = self.client.reindex()["collection"]
        wanted = {"model": model, **({"head": head} if head else {})}
        status = self.client.reindex("", collection=self.collection, **wanted)
        target = status["next"]["name"]
        self.report.target = target
        self.report.total = status["active"]["count"] if status["active"] else 0
        saved = self._load()
        if saved.get("target") != target:
            saved = {"target": target, "model": self.report.model, "phase": "copy", "cursor": None}
            self._save(saved)
        self._progress = Progress(
            self.out, self.report.total, label=f"reindex to {self.report.model}"
        )
        if saved["phase"] == "copy":
            self._copy(saved)
            saved = {**saved, "phase": "verify", "cursor": None}
            self._save(saved)
        failures_before = len(self.report.failed)
        for _ in range(self.options.verify_passes):
            failures_before = len(self.report.failed)
            if self._verify() == 0:
                break
        # Items that failed in the last pass could not be re-embedded at all.
        missing = self.report.failed[failures_before:]
        if not self.options.switch:
            self.report.status = self.client.reindex()
            return
        if missing and not self.options.allow_missing:
            self.report.error = (
                f"{len(missing)} items could not be re-embedded; not switching "
                "(--allow-missing switches anyway, without them)"
            )
            self.report.status = self.client.reindex()
            return
        self.report.status = self.client.reindex("switch", collection=self.collection)
        self.report.switched = True
        self.state_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------------- phases

    def _copy(self, saved: dict[str, Any]) -> None:
        cursor: str | None = saved.get("cursor")
        first = True
        while first or cursor is not None:
            first = False
            while len(self._pending) >= self.options.max_pending:
                self._poll(wait=True)
                self._checkpoint(saved, cursor)
            page = self.client.reindex(
                "batches", collection=self.collection, cursor=cursor, limit=self.options.page_size
            )
            if page.get("task_id"):
                self._pending.append((cursor, page["task_id"]))
            cursor = page.get("next_cursor")
            self._poll()
            self._checkpoint(saved, cursor)
        while self._pending:
            self._poll(wait=True)

    def _checkpoint(self, saved: dict[str, Any], cursor: str | None) -> None:
        """Save the cursor of the first page not yet confirmed: a resumed run starts there."""
        resume = self._pending[0][0] if self._pending else cursor
        if self._pending or cursor is not None:
            self._save({**saved, "cursor": resume})

    def _verify(self) -> int:
        """One pass over both sides; the number of differences found (and repaired)."""
        changes = 0
        for side in ("source", "target"):
            cursor: str | None = None
            first = True
            while first or cursor is not None:
                first = False
                while len(self._pending) >= self.options.max_pending:
                    self._poll(wait=True)
                page = self.client.reindex(
                    "verify",
                    collection=self.collection,
                    side=side,
                    cursor=cursor,
                    limit=self.options.page_size,
                )
                found = page["requeued"] + page["updated"] + page["deleted"]
                changes += found
                self.report.repaired += page["updated"] + page["deleted"]
                if page.get("task_id"):
                    self._pending.append((None, page["task_id"]))
                cursor = page.get("next_cursor")
                self._poll()
        while self._pending:
            self._poll(wait=True)
        return changes

    def _poll(self, *, wait: bool = False) -> None:
        if wait:
            time.sleep(self.options.poll_interval)
        still: deque[tuple[str | None, str]] = deque()
        for cursor, task_id in self._pending:
            try:
                status = self.client.task(task_id)
            except APIClientError as exc:
                if exc.status != 404:
                    raise
                # Forgotten by a restarted service: the verify pass re-queues what it held.
                continue
            if status["status"] in ("queued", "running", "retrying"):
                still.append((cursor, task_id))
                continue
            self.report.reindexed += len(status.get("indexed") or [])
            self.report.failed.extend(status.get("failed") or [])
            if status.get("error"):
                self.report.failed.append({"id": None, "task_id": task_id, **status["error"]})
        self._pending = still
        self._show()

    def _show(self, force: bool = False) -> None:
        if self._progress is not None:
            self._progress.update(
                done=self.report.reindexed,
                failed=len(self.report.failed),
                queued=len(self._pending) * self.options.page_size,
                force=force,
            )

    # ----------------------------------------------------------------------- state

    def _load(self) -> dict[str, Any]:
        try:
            value = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _save(self, value: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".reindex-")
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle)
        os.replace(tmp, self.state_path)
