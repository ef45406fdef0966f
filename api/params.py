"""Reading the options of the query endpoints, from a query string or from a JSON body.

The same names everywhere: ``limit``, ``offset``, ``score_threshold``, ``group_by``,
``group_size``, ``diversity``, and the filters ``category``, ``brand`` (one value or several),
``price_min``, ``price_max`` and ``in_stock``. A query string repeats a list parameter or
separates its values with commas; a JSON body nests the filters in a ``filter`` object.
Every filter runs inside the vector search (the fields have payload indexes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from api.errors import APIError
from lookalike.schema import InvalidId, validate_id
from lookalike.store import Range

MAX_LIMIT = 100
MAX_OFFSET = 1000
MAX_GROUP_SIZE = 20
MAX_EXAMPLES = 20
MAX_BATCH = 50
MAX_FILTER_VALUES = 50
MAX_VALUE_LENGTH = 256

# group_by names the API accepts, and the payload field each groups on.
GROUP_FIELDS = {"category": "metadata.category", "brand": "metadata.brand"}
# Keyword filters: parameter name -> payload field.
KEYWORD_FILTERS = {"category": "metadata.category", "brand": "metadata.brand"}
FILTER_KEYS = ("category", "brand", "price_min", "price_max", "in_stock")
OPTION_KEYS = ("limit", "offset", "score_threshold", "group_by", "group_size", "diversity")

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class QueryOptions:
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None
    # payload field path -> condition, for lookalike.store's `where` (the tenant is added later)
    filters: dict[str, Any] = field(default_factory=dict)
    group_by: str | None = None
    group_size: int = 1
    diversity: float | None = None


def invalid(field_name: str, message: str) -> APIError:
    return APIError(400, "invalid_parameter", message, field_name)


# --------------------------------------------------------------------------- query strings


def options_from_args(args: MultiDict[str, str], *, groups: bool = True) -> QueryOptions:
    limit = _int(args.get("limit"), "limit", 10, 1, MAX_LIMIT)
    offset = _int(args.get("offset"), "offset", 0, 0, MAX_OFFSET)
    threshold = _float(args.get("score_threshold"), "score_threshold")
    diversity = _float(args.get("diversity"), "diversity", 0.0, 1.0)
    group_by = args.get("group_by")
    group_size = _int(args.get("group_size"), "group_size", 1, 1, MAX_GROUP_SIZE)
    if group_by is not None and not groups:
        raise invalid("group_by", "this query cannot be grouped")
    return _checked(
        limit, offset, threshold, filters_from_args(args), group_by, group_size, diversity
    )


def filters_from_args(args: MultiDict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name, path in KEYWORD_FILTERS.items():
        values = [v.strip() for raw in args.getlist(name) for v in raw.split(",") if v.strip()]
        if values:
            filters[path] = _keywords(values, name)
    low = _float(args.get("price_min"), "price_min")
    high = _float(args.get("price_max"), "price_max")
    if low is not None or high is not None:
        filters["metadata.price"] = Range(gte=low, lte=high)
    raw = args.get("in_stock")
    if raw is not None:
        value = raw.strip().lower()
        if value not in _TRUE | _FALSE:
            raise invalid("in_stock", "in_stock must be true or false")
        filters["metadata.in_stock"] = value in _TRUE
    return filters


def ids_from_form(values: list[str], field_name: str) -> list[str]:
    ids = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    if len(ids) > MAX_EXAMPLES:
        raise invalid(field_name, f"at most {MAX_EXAMPLES} {field_name} examples")
    return [item_id(v, field_name) for v in ids]


def _int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise invalid(name, f"{name} must be between {lo} and {hi}")
    return value


def _float(
    raw: str | None, name: str, lo: float | None = None, hi: float | None = None
) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, f"{name} must be a number") from None
    return _bounded(value, name, lo, hi)


# --------------------------------------------------------------------------- JSON bodies


def json_object(body: Any, field_name: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(field_name, f"{field_name} must be a JSON object")
    return body


def reject_unknown(body: Mapping[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
    """Refuse fields the endpoint does not know, and nulls: a field is given or left out."""
    for key, value in body.items():
        if key not in allowed:
            raise invalid(f"{prefix}{key}", f"unknown field {prefix}{key}")
        if value is None:
            raise invalid(f"{prefix}{key}", f"{prefix}{key} must not be null (leave it out)")


def options_from_json(
    body: Mapping[str, Any], *, prefix: str = "", groups: bool = True, diversity: bool = True
) -> QueryOptions:
    limit = _json_int(body, "limit", 10, 1, MAX_LIMIT, prefix)
    offset = _json_int(body, "offset", 0, 0, MAX_OFFSET, prefix)
    threshold = _json_float(body, "score_threshold", prefix)
    group_by = body.get("group_by")
    if group_by is not None and not groups:
        raise invalid(f"{prefix}group_by", "this query cannot be grouped")
    if group_by is not None and not isinstance(group_by, str):
        raise invalid(f"{prefix}group_by", "group_by must be a string")
    group_size = _json_int(body, "group_size", 1, 1, MAX_GROUP_SIZE, prefix)
    spread = _json_float(body, "diversity", prefix, 0.0, 1.0)
    if spread is not None and not diversity:
        raise invalid(f"{prefix}diversity", "diversity applies to searches by item or photo")
    raw_filter = body.get("filter")
    filters = {} if raw_filter is None else filters_from_json(raw_filter, f"{prefix}filter")
    return _checked(limit, offset, threshold, filters, group_by, group_size, spread, prefix)


def filters_from_json(raw: Any, prefix: str) -> dict[str, Any]:
    body = json_object(raw, prefix)
    reject_unknown(body, FILTER_KEYS, f"{prefix}.")
    filters: dict[str, Any] = {}
    for name, path in KEYWORD_FILTERS.items():
        value = body.get(name)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid(f"{prefix}.{name}", f"{name} must be a string or a list of strings")
        if values:
            filters[path] = _keywords(values, f"{prefix}.{name}")
    low = _json_float(body, "price_min", f"{prefix}.")
    high = _json_float(body, "price_max", f"{prefix}.")
    if low is not None or high is not None:
        filters["metadata.price"] = Range(gte=low, lte=high)
    in_stock = body.get("in_stock")
    if in_stock is not None:
        if not isinstance(in_stock, bool):
            raise invalid(f"{prefix}.in_stock", "in_stock must be true or false")
        filters["metadata.in_stock"] = in_stock
    return filters


def json_ids(body: Mapping[str, Any], name: str, *, required: bool, prefix: str = "") -> list[str]:
    value = body.get(name)
    field_name = f"{prefix}{name}"
    if value is None:
        if required:
            raise APIError(400, "missing_field", f"{field_name} is required", field_name)
        return []
    if not isinstance(value, list):
        raise invalid(field_name, f"{field_name} must be a list of item ids")
    if required and not value:
        raise invalid(field_name, f"{field_name} needs at least one item id")
    if len(value) > MAX_EXAMPLES:
        raise invalid(field_name, f"at most {MAX_EXAMPLES} item ids in {field_name}")
    return [item_id(v, field_name) for v in value]


def json_id(body: Mapping[str, Any], name: str, prefix: str = "") -> str:
    field_name = f"{prefix}{name}"
    if name not in body:
        raise APIError(400, "missing_field", f"{field_name} is required", field_name)
    return item_id(body[name], field_name)


def item_id(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise APIError(400, "invalid_id", f"{field_name} must hold item ids (strings)", field_name)
    try:
        return validate_id(value, field_name)
    except InvalidId as exc:
        raise APIError(400, "invalid_id", str(exc), field_name) from exc


def _json_int(
    body: Mapping[str, Any], name: str, default: int, lo: int, hi: int, prefix: str
) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{prefix}{name}", f"{name} must be an integer")
    if not lo <= value <= hi:
        raise invalid(f"{prefix}{name}", f"{name} must be between {lo} and {hi}")
    return value


def _json_float(
    body: Mapping[str, Any],
    name: str,
    prefix: str,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{prefix}{name}", f"{name} must be a number")
    return _bounded(float(value), f"{prefix}{name}", lo, hi)


# --------------------------------------------------------------------------- shared


def _bounded(value: float, name: str, lo: float | None, hi: float | None) -> float:
    if not math.isfinite(value):
        raise invalid(name, f"{name} must be a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise invalid(name, f"{name} must be between {lo} and {hi}")
    return value


def _keywords(values: list[str], name: str) -> str | list[str]:
    if len(values) > MAX_FILTER_VALUES:
        raise invalid(name, f"at most {MAX_FILTER_VALUES} values")
    if any(not v or len(v) > MAX_VALUE_LENGTH for v in values):
        raise invalid(name, f"values must be 1 to {MAX_VALUE_LENGTH} characters")
    return values[0] if len(values) == 1 else list(dict.fromkeys(values))


def _checked(
    limit: int,
    offset: int,
    threshold: float | None,
    filters: dict[str, Any],
    group_by: str | None,
    group_size: int,
    diversity: float | None,
    prefix: str = "",
) -> QueryOptions:
    if group_by is not None:
        if group_by not in GROUP_FIELDS:
            raise invalid(f"{prefix}group_by", f"group_by must be one of {', '.join(GROUP_FIELDS)}")
        if offset:
            raise invalid(f"{prefix}offset", "grouped results have no offset")
        if diversity is not None:
            raise invalid(f"{prefix}diversity", "choose group_by or diversity, not both")
    return QueryOptions(limit, offset, threshold, filters, group_by, group_size, diversity)
