"""Content-addressed storage of catalog images on a filesystem shared by API and workers.

The API writes an upload here before it queues the item, so a task carries only the image's
sha256 and a redelivered task finds the same bytes.

The same bytes are stored once, whoever uploads them, but a tenant may only use an image it
uploaded itself: each upload also records the uploading tenant as an owner of the blob
(an empty file under ``owners/``), and the API lets a tenant name an image by its sha256
only when it owns it. Knowing another tenant's image hash gives neither its bytes nor
whether it exists (issue #22).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, sha256: str, data: bytes, *, tenant: str | None = None) -> Path:
        """Store the bytes (once); with ``tenant``, record that tenant as an owner."""
        target = self.path(sha256)
        if tenant is not None:
            self.grant(tenant, sha256)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def get(self, sha256: str) -> bytes:
        """Raises FileNotFoundError if the blob is missing."""
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def _owner_marker(self, tenant: str, sha256: str) -> Path:
        # The tenant's name hashed: any valid tenant id (up to 256 characters) makes a short,
        # safe folder name.
        folder = hashlib.sha256(tenant.encode()).hexdigest()[:32]
        return self.root / "owners" / folder / sha256[:2] / self.path(sha256).name

    def grant(self, tenant: str, sha256: str) -> None:
        """Record ``tenant`` as an owner of the blob (it uploaded these bytes)."""
        marker = self._owner_marker(tenant, sha256)
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def owns(self, tenant: str, sha256: str) -> bool:
        """Whether ``tenant`` uploaded this blob and it is still stored."""
        return self._owner_marker(tenant, sha256).exists() and self.exists(sha256)
