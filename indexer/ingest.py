"""Ingest a folder of images through the API, with progress and a final report."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from indexer.client import APIClient, APIClientError
from indexer.sources import SourceItem


@dataclass
class IngestReport:
    submitted: int = 0
    indexed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "indexed": self.indexed,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.indexed / self.seconds, 2) if self.seconds else None,
        }


def ingest(
    client: APIClient,
    items: Iterable[SourceItem],
    *,
    workers: int = 4,
    poll_interval: float = 0.5,
    out: TextIO = sys.stderr,
) -> IngestReport:
    report = IngestReport()
    started = time.monotonic()
    pending: dict[str, str] = {}  # task id -> item id

    def submit(item: SourceItem) -> tuple[SourceItem, dict[str, Any] | APIClientError]:
        try:
            return item, client.add_item(item.id, item.path.read_bytes(), item.metadata)
        except APIClientError as exc:
            return item, exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item, outcome in pool.map(submit, items):
            report.submitted += 1
            if isinstance(outcome, APIClientError):
                report.failed.append(
                    {"id": item.id, "code": outcome.code, "message": outcome.message}
                )
            else:
                pending[outcome["task_id"]] = item.id
            _progress(out, report, len(pending), started)

    while pending:
        for task_id in list(pending):
            status = client.task(task_id)
            if status["status"] in ("queued", "running", "retrying"):
                continue
            item_id = pending.pop(task_id)
            if status["status"] == "succeeded":
                report.indexed += len(status.get("indexed", []))
            failures = status.get("failed") or []
            if status.get("error"):
                failures = [{"id": item_id, **status["error"]}]
            report.failed.extend(failures)
        _progress(out, report, len(pending), started)
        if pending:
            time.sleep(poll_interval)
    report.seconds = time.monotonic() - started
    out.write("\n")
    return report


def _progress(out: TextIO, report: IngestReport, pending: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    out.write(
        f"\rsubmitted {report.submitted}  indexed {report.indexed}  failed {len(report.failed)}"
        f"  in queue {pending}  {report.indexed / elapsed:.1f} img/s   "
    )
    out.flush()
