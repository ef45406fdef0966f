"""Thumbnails of the catalog's images, made once and kept beside the originals.

A thumbnail is named after its image's SHA-256 and its size, so it is made the first time
it is asked for and served from disk ever after; a re-uploaded image gets new thumbnails.
WebP keeps the transparency of product cut-outs and is about a tenth of a PNG's size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

SIZES = (128, 256, 512)
DEFAULT_SIZE = 256
MIMETYPE = "image/webp"


class Thumbnails:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, size: int) -> Path:
        return self.root / sha256[:2] / f"{sha256}-{size}.webp"

    def get(self, sha256: str, source: Path, size: int) -> Path:
        """The thumbnail of ``source`` (whose hash is ``sha256``) fitting ``size``², made if
        missing. Concurrent first requests may both make it; the last rename wins, and both
        files are the same."""
        if size not in SIZES:
            raise ValueError(f"thumbnail size must be one of {SIZES}")
        target = self.path(sha256, size)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as original:
            # Uploads were checked against the pixel limit when they came in.
            image = ImageOps.exif_transpose(original)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                image.save(out, "WEBP", quality=82, method=4)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
