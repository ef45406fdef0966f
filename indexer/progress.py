"""A one-line live progress bar: done / failed / skipped, images per second, ETA.

On a terminal the line is redrawn in place a few times a second; into a file or a pipe (CI
logs) it is printed as a plain line every few seconds instead.
"""

from __future__ import annotations

import time
from typing import TextIO


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(
        self, out: TextIO, total: int | None, *, label: str = "", unit: str = "img/s"
    ) -> None:
        self.out = out
        self.total = total
        self.label = label
        # What the rate counts: images embedded for an ingest, items checked for a scan.
        self.unit = unit
        self._printed: tuple[int, ...] | None = None
        self.started = time.monotonic()
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._interval = 0.2 if self._tty else 5.0
        self._last = 0.0
        self._width = 0

    def update(
        self,
        *,
        done: int,
        failed: int,
        skipped: int = 0,
        embedded: int | None = None,
        queued: int = 0,
        force: bool = False,
    ) -> None:
        """``done`` counts every item finished (indexed, updated, deleted); ``embedded`` the
        images embedded, for the rate (default: ``done``)."""
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        processed = done + failed + skipped
        rate = (done if embedded is None else embedded) / elapsed
        parts = []
        if self.total:
            fraction = min(processed / self.total, 1.0)
            filled = int(fraction * 24)
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {processed}/{self.total}")
        else:
            parts.append(f"{processed}")
        parts.append(f"done {done}  failed {failed}  skipped {skipped}")
        if queued:
            parts.append(f"queued {queued}")
        parts.append(f"{rate:.1f} {self.unit}")
        if self.total and processed:
            remaining = (self.total - processed) * elapsed / processed
            parts.append(f"ETA {duration(remaining)}")
        parts.append(f"elapsed {duration(elapsed)}")
        line = (f"{self.label}: " if self.label else "") + "  ".join(parts)
        counts = (done, failed, skipped, queued)
        if counts == self._printed:
            return  # a final forced update with nothing new: not the same line twice
        self._printed = counts
        if self._tty:
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self._tty:
            self.out.write("\n")
            self.out.flush()
