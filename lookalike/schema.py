"""The catalog collection's schema: the one place for vector names, payload fields and ids."""

from __future__ import annotations

import re
import uuid

# Fixed namespace so the same (tenant, item id) maps to the same point id everywhere, forever.
POINT_NAMESPACE = uuid.UUID("6b1f0d2e-2b51-4f0c-9a53-6c1e7f1a2d40")

VECTOR_NAME = "image"
DEFAULT_TENANT = "default"

MAX_ID_LENGTH = 256
# Safe in a URL path segment without escaping, so /v1/items/{id}/similar is unambiguous.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@+=-]*"
_ID_RE = re.compile(f"^{ID_PATTERN}$")

# Payload fields that get an index, so filters run inside the ANN search.
# "keyword" | "float" | "bool" | "datetime"
PAYLOAD_INDEXES: dict[str, str] = {
    "item_id": "keyword",
    "tenant": "keyword",
    "image_sha256": "keyword",
    "metadata.category": "keyword",
    "metadata.brand": "keyword",
    "metadata.price": "float",
    "metadata.in_stock": "bool",
}


class InvalidId(ValueError):
    """An item id or tenant that cannot be stored."""


def validate_id(value: str, field: str = "id") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidId(f"{field} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidId(f"{field} must be at most {MAX_ID_LENGTH} characters")
    if not _ID_RE.match(value):
        raise InvalidId(
            f"{field} must start with a letter or digit and contain only letters, digits "
            "and . _ : @ + = -"
        )
    return value


def point_id(item_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Deterministic point id: a redelivered task overwrites its point instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}:{item_id}"))


# Output size of each supported backbone's pooled features (the collection's vector size).
MODEL_DIMS: dict[str, int] = {
    "efficientnet-lite0": 1280,
    "efficientnet-lite1": 1280,
    "efficientnet-lite2": 1280,
}


def vector_size(model: str) -> int:
    return MODEL_DIMS[model]
