"""The catalog collection's schema: the one place for vector names, payload fields and ids."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.settings import Settings

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
    # GET /v1/items?sort=newest orders by it (an order needs a range index).
    "ingested_at": "datetime",
    # GET /v1/items?q= finds items by the start of a word of their name or title
    # (full-text, prefix tokens, lower-cased).
    "metadata.name": "text_prefix",
    "metadata.title": "text_prefix",
}
# The fields GET /v1/items?q= searches: the item id by its whole words, then these.
TEXT_SEARCH_FIELDS = ("item_id", "metadata.name", "metadata.title")


class InvalidId(ValueError):
    """An item id or tenant that cannot be stored."""


def validate_id(value: str, field: str = "id") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidId(f"{field} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidId(f"{field} must be at most {MAX_ID_LENGTH} characters")
    if not _ID_RE.fullmatch(value):
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
# Size of the "multiscale" features (LOOKALIKE_FEATURES): the pooled head concatenated with
# the pooled output of stage 6 (worker/model/efficientnet_lite.py MULTISCALE_STAGE).
MULTISCALE_DIMS: dict[str, int] = {
    "efficientnet-lite0": 1280 + 192,
    "efficientnet-lite1": 1280 + 192,
    "efficientnet-lite2": 1280 + 208,
}


def head_part(model: object, dim: int) -> slice | None:
    """Where the pooled head's features sit in a stored vector that holds more than them.

    A backbone's multiscale vector is its pooled head, then its pooled stage 6, each scaled
    to unit length before the whole is (worker/model/embedder.py): the first
    ``MODEL_DIMS[model]`` numbers are the head, at the same length in every such vector.
    ``model`` is the point's payload ``model`` (the embedder's name); None for a vector that
    is one whole (pooled features, a trained head, a user's own model, an unknown model).
    """
    if isinstance(model, str) and model in MODEL_DIMS and dim == MULTISCALE_DIMS[model]:
        return slice(0, MODEL_DIMS[model])
    return None


def head_manifest_path(model_dir: Path, head: str) -> Path:
    """Where a trained head's manifest lives in the model cache (it names its size)."""
    return Path(model_dir) / "heads" / f"{head}.json"


def custom_model_name(path: Path | str) -> str:
    """The model name of a user's own model file: ``custom-<file name stem>``."""
    stem = re.sub(r"[^a-z0-9]+", "-", Path(path).name.split(".")[0].lower()).strip("-")
    return f"custom-{stem or 'model'}"


def custom_manifest_path(model_dir: Path, path: Path | str) -> Path:
    """Where the converted user model's manifest lives in the model cache."""
    return Path(model_dir) / f"{custom_model_name(path)}.json"


def vector_size(model: str | Settings) -> int:
    """The collection's vector size for a backbone name, or for the whole configuration.

    With settings: a head's size, a user model's size (both read from their manifest in the
    model cache, so the API needs no TensorFlow), or the backbone's for its features.
    """
    if isinstance(model, str):
        return MODEL_DIMS[model]
    settings = model
    if settings.head:
        return _manifest_dim(
            head_manifest_path(settings.model_dir, settings.head),
            "dim",
            f"head {settings.head!r} (train it with `indexer train-head`)",
        )
    if settings.model == "custom":
        assert settings.custom_model_path is not None
        return _manifest_dim(
            custom_manifest_path(settings.model_dir, settings.custom_model_path),
            "feature_dim",
            "the custom model (convert it with `python -m worker.model build --custom PATH`)",
        )
    dims = MULTISCALE_DIMS if settings.model_features == "multiscale" else MODEL_DIMS
    return dims[settings.model]


class ModelNotBuilt(LookupError):
    """A configuration's vector size is unknown: its model or head is not in the cache."""


def _manifest_dim(path: Path, key: str, what: str) -> int:
    try:
        return int(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotBuilt(f"vector size of {what} unknown: cannot read {path}: {exc}") from None
