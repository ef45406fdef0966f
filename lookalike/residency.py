"""Read a shard's memory-mapped files once after it opens, so its first queries run warm.

qdrant-edge keeps ``Memory.Cached`` structures (the vectors, the payloads) in memory-mapped
files, read into the page cache and mapped into the process when a shard loads. On the
development VM that was not enough: a freshly opened 1M-item shard answered its first ~2,000
searches 3-5x slower than later ones (p50 5.5 → 1.4 ms), with no page fault in the process
and the same graph work per query (perf: only the vector dot products, the one function that
reads the 5.6 GiB of vectors, took 3.3x the samples). Reading the vector file once at 1.1
GiB/s (a second read ran at 10.5 GiB/s) removed the slow phase: the first block of searches
after it ran at 1.0 ms (docs/performance.md). The memory behind the pages, not the pages'
mapping, was cold: a virtual machine's host can back guest memory lazily or reclaim it.

``warm(root)`` reads every file under ``root`` that this process has mapped, with plain
reads (no GIL held, nothing kept). The store runs it when a shard loads (qdrant-edge's own
load of that shard read the same files from disk: at 1M items 13-17 s, then 6.7 s more for
this) and after its index is rebuilt (new segment files).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 16 << 20


def mapped_files(root: Path) -> list[Path]:
    """The files under ``root`` that this process has memory-mapped (Linux; else none)."""
    prefix = str(Path(root).resolve()) + "/"
    found: dict[str, None] = {}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.rstrip("\n").split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(prefix):
                    found[parts[5]] = None
    except OSError:  # no /proc: not Linux
        return []
    return [Path(p) for p in found]


def warm(root: Path) -> int:
    """Read once every file under ``root`` that this process has mapped; the bytes read."""
    started = time.perf_counter()
    buffer = bytearray(CHUNK)
    done = 0
    for path in mapped_files(root):
        try:
            with path.open("rb", buffering=0) as f:
                while n := f.readinto(buffer):
                    done += n
        except OSError:  # replaced or removed meanwhile (an optimize swaps segments)
            continue
    if done:
        took = time.perf_counter() - started
        log.info("read %d MiB of %s into memory in %.1f s", done >> 20, root, took)
    return done
