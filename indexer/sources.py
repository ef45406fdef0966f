"""Where catalog items come from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]+")


@dataclass(frozen=True)
class SourceItem:
    id: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def folder_items(root: Path, *, labels_from_folders: bool = True) -> Iterator[SourceItem]:
    """Every image below `root`, sorted; the first sub-folder names the category."""
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        item_id = _UNSAFE.sub("-", ".".join(rel.with_suffix("").parts)).strip("-.") or "item"
        metadata: dict[str, Any] = {"path": rel.as_posix()}
        if labels_from_folders and len(rel.parts) > 1:
            metadata["category"] = rel.parts[0]
        yield SourceItem(item_id, path, metadata)
