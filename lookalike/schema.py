"""The catalog collection's schema: the one place for vector names, payload fields and ids."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lookalike.models import BACKBONES

# Fixed namespace so the same (tenant, item id) maps to the same point id everywhere, forever.
POINT_NAMESPACE = uuid.UUID("6b1f0d2e-2b51-4f0c-9a53-6c1e7f1a2d40")

VECTOR_NAME = "image"
DEFAULT_TENANT = "default"

# An item's ORB keypoints and grey thumbnail (lookalike/verify.py), what its near-duplicate
# test reads: about 13-17 KiB a point.
KEYPOINTS_FIELD = "keypoints"
# Payload fields earlier versions wrote that nothing reads any more (the colour signature
# of the old near-duplicate score, 0.7 KiB): a reindex leaves them behind.
RETIRED_FIELDS = ("color_signature",)
# Payload fields for the service's own use, too big to travel with every hit: searches,
# queries and scrolls leave them out (lookalike/store/); points read by id, and the
# duplicates search, carry them.
INTERNAL_FIELDS = (KEYPOINTS_FIELD, *RETIRED_FIELDS)

MAX_ID_LENGTH = 256
# Safe in a URL path segment without escaping, so /v1/items/{id}/similar is unambiguous.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@+=-]*"
_ID_RE = re.compile(f"^{ID_PATTERN}$")

# The classifier's tags (worker/model/tags.py): TAGS_FIELD the searchable words (labels and
# their WordNet parents), LABELS_FIELD the top labels with their scores.
TAGS_FIELD = "tags"
LABELS_FIELD = "labels"

# Payload fields of every point that get an index (the catalog's own fields are added from
# its declared schema: CatalogSchema.payload_indexes).
BASE_INDEXES: dict[str, str] = {
    "item_id": "keyword",
    "tenant": "keyword",
    "image_sha256": "keyword",
    # GET /v1/items?sort=newest orders by it (an order needs a range index).
    "ingested_at": "datetime",
    # q= matches a tag whole; GET /v1/tags counts them (a facet needs a keyword index).
    TAGS_FIELD: "keyword",
}
# GET /v1/items?q= finds items by the whole words of their id, and by the start of a word of
# these metadata fields (a full-text index with prefix tokens, lower-cased) -- unless the
# catalog schema declares the field: a declared field has its declared type's index, is
# filtered as that type, and q leaves it alone (CatalogSchema.text_search_paths).
TEXT_SEARCH_NAMES = ("name", "title")
TEXT_INDEX = "text_prefix"


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


# Vector size of each backbone's pooled and multiscale features (lookalike/models.py).
MODEL_DIMS: dict[str, int] = {name: b.feature_dim("pooled") for name, b in BACKBONES.items()}
MULTISCALE_DIMS: dict[str, int] = {
    name: b.feature_dim("multiscale") for name, b in BACKBONES.items()
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


class ModelNotBuilt(LookupError):
    """A configuration's vector size is unknown: its model or head is not in the cache."""


def manifest_dim(path: Path, key: str, what: str) -> int:
    """A vector size recorded in a model or head manifest in the model cache."""
    try:
        return int(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotBuilt(f"vector size of {what} unknown: cannot read {path}: {exc}") from None


# --------------------------------------------------------------------------- catalog schema

# What an item's metadata field may be. "keyword_list": a list of keywords (one value is
# accepted too), matched when any of them matches.
FIELD_TYPES = ("keyword", "keyword_list", "integer", "float", "bool", "datetime")
# What a declared field is for: a filter of the queries and of GET /v1/items, a facet of
# GET /v1/facets, a group_by of the queries.
FIELD_ROLES = ("filter", "facet", "group")
# The Qdrant payload index each type gets.
_INDEX_TYPES = {
    "keyword": "keyword",
    "keyword_list": "keyword",
    "integer": "integer",
    "float": "float",
    "bool": "bool",
    "datetime": "datetime",
}
# Roles a type can serve: counting and grouping need discrete values.
_TYPE_ROLES = {
    "keyword": frozenset(FIELD_ROLES),
    "keyword_list": frozenset(FIELD_ROLES),
    "integer": frozenset(FIELD_ROLES),
    "float": frozenset({"filter"}),
    "bool": frozenset({"filter", "facet"}),
    "datetime": frozenset({"filter"}),
}
FIELD_NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
_FIELD_NAME_RE = re.compile(f"^{FIELD_NAME_PATTERN}$")
# Names a field may not take (nor may its range parameters): the options of the routes that
# filter, and the reserved columns of an indexer manifest.
RESERVED_NAMES = frozenset(
    {
        "limit",
        "offset",
        "cursor",
        "score_threshold",
        "group_by",
        "group_size",
        "diversity",
        "field",
        "filter",
        "tenant",
        "q",
        "sort",
        "order",
        "positive",
        "negative",
        "strategy",
        "id",
        "path",
        "url",
        "image",
        "metadata",
    }
)
MAX_KEYWORD_LENGTH = 256
MAX_KEYWORDS = 100


class SchemaError(ValueError):
    """A catalog schema that cannot be declared (LOOKALIKE_CATALOG_SCHEMA)."""


class InvalidMetadata(ValueError):
    """A value of a declared field that does not have the declared type."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CatalogField:
    """One declared metadata field: ``metadata.<name>`` in every item's payload."""

    name: str
    type: str
    roles: frozenset[str]

    @property
    def path(self) -> str:
        return f"metadata.{self.name}"

    @property
    def index_type(self) -> str:
        return _INDEX_TYPES[self.type]

    @property
    def ranged(self) -> bool:
        """Filtered by ``<name>_min`` / ``<name>_max`` (numbers and datetimes)."""
        return self.type in ("integer", "float", "datetime")

    @property
    def matched(self) -> bool:
        """Filtered by ``<name>=value`` (repeatable for all but bools)."""
        return self.type in ("keyword", "keyword_list", "integer", "bool")

    def check(self, value: Any) -> Any:
        """``value`` as stored, or :class:`InvalidMetadata` naming the field."""
        if value is None:
            return None  # not set: matches no filter, as a field left out
        kind = self.type
        if kind == "keyword":
            if not isinstance(value, str):
                raise self._wrong(value, "a string")
            return _keyword(value, self.name)
        if kind == "keyword_list":
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._wrong(value, "a string or a list of strings")
            if len(values) > MAX_KEYWORDS:
                raise InvalidMetadata(self.name, f"{self.name}: at most {MAX_KEYWORDS} values")
            return [_keyword(v, self.name) for v in values]
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._wrong(value, "an integer")
            if not -(2**63) <= value < 2**63:
                raise InvalidMetadata(self.name, f"{self.name} is out of the 64-bit range")
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._wrong(value, "a number")
            if not math.isfinite(value):
                raise InvalidMetadata(self.name, f"{self.name} must be a finite number")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._wrong(value, "true or false")
            return value
        if not isinstance(value, str):
            raise self._wrong(value, "an ISO 8601 / RFC 3339 date-time string")
        return parse_datetime(value, self.name)

    def from_text(self, text: str) -> Any:
        """A CSV cell or a query-string value as the declared type (InvalidMetadata if not)."""
        value = text.strip()
        kind = self.type
        if kind == "keyword_list":
            # A CSV cell lists its keywords separated by "|" (commas are common in values).
            return self.check([v.strip() for v in value.split("|") if v.strip()])
        if kind == "integer":
            try:
                return self.check(int(value))
            except ValueError:
                raise self._wrong(text, "an integer") from None
        if kind == "float":
            try:
                return self.check(float(value))
            except ValueError:
                raise self._wrong(text, "a number") from None
        if kind == "bool":
            parsed = parse_bool(value)
            if parsed is None:
                raise self._wrong(text, "true or false (or 1/0, yes/no, on/off)")
            return parsed
        return self.check(value)

    def _wrong(self, value: Any, wanted: str) -> InvalidMetadata:
        shown = json.dumps(value) if not isinstance(value, str) else repr(value)
        return InvalidMetadata(
            self.name, f"{self.name} must be {wanted} (it is declared {self.type}), not {shown}"
        )


# The words the whole service reads as booleans: settings, CSV cells, query strings.
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def parse_bool(text: str) -> bool | None:
    """True or False for a boolean word (any case, surrounding spaces ignored); None else."""
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _keyword(value: str, name: str) -> str:
    if not value or len(value) > MAX_KEYWORD_LENGTH:
        raise InvalidMetadata(name, f"{name} values must be 1 to {MAX_KEYWORD_LENGTH} characters")
    return value


def parse_datetime(value: str, name: str) -> str:
    """An ISO 8601 date or date-time as Qdrant's datetime index reads it: RFC 3339 in UTC
    (a value without a zone is taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidMetadata(
            name, f"{name} must be an ISO 8601 date-time (e.g. 2024-05-01T12:00:00Z), not {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


@dataclass(frozen=True)
class CatalogSchema:
    """The metadata fields an operator declares for the catalog's items (the fields not
    declared are stored and returned, but not filterable)."""

    fields: tuple[CatalogField, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    def field(self, name: str) -> CatalogField | None:
        return self._by_name.get(name)  # type: ignore[attr-defined]

    def with_role(self, role: str) -> list[CatalogField]:
        return [f for f in self.fields if role in f.roles]

    def text_search_paths(self) -> tuple[str, ...]:
        """The payload fields GET /v1/items?q= searches: the item id, then each of
        TEXT_SEARCH_NAMES the schema does not declare."""
        names = [n for n in TEXT_SEARCH_NAMES if self.field(n) is None]
        return ("item_id", *(f"metadata.{n}" for n in names))

    def payload_indexes(self) -> dict[str, str]:
        """Payload field path -> index type, for every point of the catalog."""
        text = {path: TEXT_INDEX for path in self.text_search_paths()[1:]}
        return {**BASE_INDEXES, **text, **{f.path: f.index_type for f in self.fields}}

    def check_metadata(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The metadata as stored: each declared field checked (and a datetime normalized),
        the others as they are. :class:`InvalidMetadata` names the first wrong field."""
        checked = dict(metadata)
        for name, value in metadata.items():
            declared = self.field(name)
            if declared is not None:
                checked[name] = declared.check(value)
        return checked

    def as_json(self) -> dict[str, Any]:
        return {
            "fields": {
                f.name: {"type": f.type, "roles": [r for r in FIELD_ROLES if r in f.roles]}
                for f in self.fields
            }
        }


def _field(name: str, type_: str, roles: Iterable[str] | None = None) -> CatalogField:
    if not isinstance(name, str) or not _FIELD_NAME_RE.match(name):
        raise SchemaError(
            f"field name {name!r} must start with a lower-case letter and hold only "
            "lower-case letters, digits and '_' (at most 64)"
        )
    if name in RESERVED_NAMES:
        raise SchemaError(f"field name {name!r} is a query option's name; choose another")
    if type_ not in FIELD_TYPES:
        raise SchemaError(f"field {name!r}: type {type_!r} is not one of {', '.join(FIELD_TYPES)}")
    allowed = _TYPE_ROLES[type_]
    if roles is None:
        wanted = frozenset(allowed)
    else:
        if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
            raise SchemaError(f"field {name!r}: roles must be a list of {', '.join(FIELD_ROLES)}")
        wanted = frozenset(roles)
        unknown = sorted(wanted - set(FIELD_ROLES))
        if unknown:
            raise SchemaError(f"field {name!r}: unknown role {unknown[0]!r}")
        misfit = sorted(wanted - allowed)
        if misfit:
            raise SchemaError(f"field {name!r}: a {type_} field cannot be a {misfit[0]}")
    return CatalogField(name, type_, wanted)


def catalog_schema(fields: Mapping[str, Any]) -> CatalogSchema:
    """A schema from ``{name: type}`` or ``{name: {"type": ..., "roles": [...]}}``; without
    roles a field serves every role its type can (a keyword: filter, facet and group)."""
    declared: list[CatalogField] = []
    for name, spec in fields.items():
        if isinstance(spec, str):
            declared.append(_field(name, spec))
        elif isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"type", "roles"})
            if unknown:
                raise SchemaError(f"field {name!r}: unknown key {unknown[0]!r} (type, roles)")
            declared.append(_field(name, spec.get("type", ""), spec.get("roles")))
        else:
            raise SchemaError(f"field {name!r} must be a type name or an object")
    names = {f.name for f in declared}
    for f in declared:
        for suffix in ("_min", "_max"):
            if f.ranged and f"{f.name}{suffix}" in names | RESERVED_NAMES:
                raise SchemaError(f"field {f.name}{suffix!r} collides with {f.name!r}'s range")
    return CatalogSchema(tuple(declared))


# What a catalog that declares nothing has: the four fields the API always knew.
DEFAULT_CATALOG_SCHEMA = catalog_schema(
    {
        "category": {"type": "keyword", "roles": ["filter", "facet", "group"]},
        "brand": {"type": "keyword", "roles": ["filter", "facet", "group"]},
        "price": {"type": "float", "roles": ["filter"]},
        "in_stock": {"type": "bool", "roles": ["filter"]},
    }
)


def load_catalog_schema(raw: str) -> CatalogSchema:
    """LOOKALIKE_CATALOG_SCHEMA: empty (the default four fields), JSON (an object starting
    with ``{``), or the path of a JSON file holding it. The JSON is ``{"fields": {...}}``
    (see :func:`catalog_schema`)."""
    text = raw.strip()
    if not text:
        return DEFAULT_CATALOG_SCHEMA
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaError(f"cannot read the catalog schema file {raw!r}: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"the catalog schema is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("fields"), dict):
        raise SchemaError('the catalog schema must be a JSON object {"fields": {...}}')
    unknown = sorted(set(document) - {"fields"})
    if unknown:
        raise SchemaError(f"the catalog schema has an unknown key {unknown[0]!r}")
    return catalog_schema(document["fields"])
