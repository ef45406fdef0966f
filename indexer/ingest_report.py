"""What an ingestion job did (indexer/ingest.py): counts, failures per item, deleted ids,
duplicates and variants found, and its summary on screen; written as the JSON report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.duplicate_report import unverifiable_lines
from indexer.progress import duration

# Deleted (or, in a dry run, to be deleted) item ids listed in the summary on screen.
SHOWN_DELETED_IDS = 20


@dataclass
class IngestReport:
    source: str = ""
    total: int | None = None
    submitted: int = 0
    indexed: int = 0
    metadata_updated: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None
    dry_run: bool = False
    planned: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, Any] | None = None
    # The items --sync deleted (or, in a dry run, would delete): "id", or "tenant/id" for a
    # tenant other than the command's. All of them in the JSON report, the first few on screen.
    deleted_ids: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float | None:
        return round(self.indexed / self.seconds, 2) if self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source": self.source,
            "total": self.total,
            "submitted": self.submitted,
            "indexed": self.indexed,
            "metadata_updated": self.metadata_updated,
            "skipped_unchanged": self.skipped,
            "deleted": self.deleted,
            "deleted_ids": [] if self.dry_run else self.deleted_ids,
            "failed_count": len(self.failed),
            "seconds": round(self.seconds, 2),
            "images_per_second": self.images_per_second,
            "interrupted": self.interrupted,
            "error": self.error,
            "failed": self.failed,
            "duplicates": self.duplicates,
        }
        if self.dry_run:
            body["dry_run"] = True
            body["planned"] = self.planned
            body["planned_delete_ids"] = self.deleted_ids
        return body

    def summary(self) -> str:
        lines = []
        state = " (interrupted; run the same command again to continue)" if self.interrupted else ""
        lines.append(f"ingest of {self.source}: {duration(self.seconds)}{state}")
        if self.error:
            lines.append(f"  stopped: {self.error}")
        if self.dry_run:
            plan = ", ".join(f"{k} {v}" for k, v in self.planned.items())
            lines.append(f"  dry run, nothing changed; would: {plan}")
        else:
            rate = self.images_per_second
            lines.append(
                f"  indexed {self.indexed}"
                + (f" ({rate} img/s)" if rate else "")
                + f", metadata updated {self.metadata_updated}, unchanged {self.skipped}, "
                f"deleted {self.deleted}, failed {len(self.failed)}"
            )
        if self.deleted_ids:
            shown = self.deleted_ids[:SHOWN_DELETED_IDS]
            more = len(self.deleted_ids) - len(shown)
            verb = "would delete" if self.dry_run else "deleted"
            lines.append(
                f"  {verb}: {', '.join(shown)}"
                + (f" ... and {more} more (all in the JSON report, --report)" if more else "")
            )
        if self.duplicates:
            d = self.duplicates
            lines.append(
                f"  duplicates: {len(d['exact'])} groups of exact copies, "
                f"{len(d['near'])} groups of near-duplicates, "
                f"{len(d['variants'])} groups of colour variants "
                f"(threshold {d['threshold'] or 'of the service'})"
            )
            for group in d["exact"][:10]:
                lines.append(f"    exact:    {', '.join(group)}")
            for group in d["near"][:10]:
                lines.append(f"    near:     {group[0]} ~ {', '.join(group[1:])}")
            for group in d["variants"][:10]:
                lines.append(f"    variants: {group[0]} ~ {', '.join(group[1:])}")
            lines += ["  " + line for line in unverifiable_lines(d["unverifiable"])]
        if self.failed:
            lines.append("  failed:")
            for f in self.failed[:50]:
                lines.append(f"    {f['id']}: {f['code']}: {f['message']}")
            if len(self.failed) > 50:
                lines.append(f"    ... and {len(self.failed) - 50} more (see the JSON report)")
        return "\n".join(lines)
