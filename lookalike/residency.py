"""Read a shard's memory-mapped files once after it opens, so its first queries run warm.

qdrant-edge keeps ``Memory.Cached`` structures (the vectors, the payloads) in memory-mapped
files. On a virtual machine that was not enough: a freshly opened large shard answered its
first few thousand searches several times slower than later ones, because the memory behind
the pages was cold (the host backs and reclaims guest memory lazily), not their mapping.
Reading the files once removes that slow phase (measured at 1M items in docs/performance.md).

``warm(root)`` reads every file under ``root`` that this process has mapped, with plain
reads (no GIL held, nothing kept). The store runs it when a shard loads and after its index
is rebuilt (new segment files).
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
