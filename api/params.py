"""Reading the options of the query endpoints, from a query string or from a JSON body.

The same names everywhere: ``limit``, ``offset``, ``score_threshold``, ``group_by``,
``group_size``, ``diversity``, and a filter for each field the catalog schema declares with
the ``filter`` role (lookalike/schema.py; the default: ``category``, ``brand``, ``price``,
``in_stock``):

* a keyword or keyword list field, an integer field: ``<name>`` (one value or several);
* a number or datetime field: ``<name>_min`` and ``<name>_max`` (bounds included);
* a bool field: ``<name>`` (true or false).

A query string repeats a list parameter or separates its values with commas; a JSON body
nests the filters in a ``filter`` object. Every filter runs inside the vector search (the
fields have payload indexes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.datastructures import MultiDict

from api.errors import APIError
from lookalike.images import Box, check_box
from lookalike.schema import (
    TAGS_FIELD,
    CatalogField,
    CatalogSchema,
    InvalidId,
    InvalidMetadata,
    validate_id,
)
from lookalike.store import Range, TextMatch

MAX_LIMIT = 100
MAX_OFFSET = 1000
MAX_GROUP_SIZE = 20
MAX_EXAMPLES = 20
MAX_BATCH = 50
MAX_FILTER_VALUES = 50
MAX_VALUE_LENGTH = 256
MAX_SEARCH_TEXT = 200


def invalid(field_name: str, message: str) -> APIError:
    return APIError(400, "invalid_parameter", message, field_name)


# --------------------------------------------------------------------------- query strings


def filter_parameters(declared: CatalogField) -> list[str]:
    """The query parameters (and JSON filter keys) that filter on a declared field."""
    names = [declared.name] if declared.matched else []
    if declared.ranged:
        names += [f"{declared.name}_min", f"{declared.name}_max"]
    return names


def filters_from_args(args: MultiDict[str, str], schema: CatalogSchema) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for declared in schema.with_role("filter"):
        name = declared.name
        if declared.type == "bool":
            raw = args.get(name)
            if raw is not None:
                filters[declared.path] = _from_text(declared, raw, name)
            continue
        if declared.matched:
            values = [v.strip() for raw in args.getlist(name) for v in raw.split(",") if v.strip()]
            if values:
                if declared.type == "integer":
                    filters[declared.path] = _many(
                        [_from_text(declared, v, name) for v in values], name
                    )
                else:
                    filters[declared.path] = _keywords(values, name)
        if declared.ranged:
            _add_range(filters, declared, args.get, name)
    return filters


def _add_range(
    filters: dict[str, Any], declared: CatalogField, get: Callable[[str], Any], where: str
) -> None:
    """``<name>_min`` / ``<name>_max`` of a ranged field, read with ``get`` (a query string's
    or a JSON body's), as a range filter; errors name ``<where>_min`` / ``<where>_max``."""
    low = _bound(declared, get(f"{declared.name}_min"), f"{where}_min")
    high = _bound(declared, get(f"{declared.name}_max"), f"{where}_max")
    if low is not None or high is not None:
        filters[declared.path] = _range(declared, low, high, where)


def _from_text(declared: CatalogField, raw: str, name: str) -> Any:
    try:
        return declared.from_text(raw)
    except InvalidMetadata as exc:
        raise invalid(name, exc.message.replace(declared.name, name, 1)) from None


def _bound(declared: CatalogField, raw: Any, name: str) -> float | str | None:
    """A range bound from a query string (text) or a JSON body (a number, or a datetime's
    string)."""
    if raw is None:
        return None
    if declared.type == "datetime":
        if not isinstance(raw, str):
            raise invalid(name, f"{name} must be an ISO 8601 date-time")
        return str(_from_text(declared, raw, name))
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise invalid(name, f"{name} must be a number") from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise invalid(name, f"{name} must be a number")
    return _bounded(float(raw), name, None, None)


def _range(declared: CatalogField, low: Any, high: Any, name: str) -> Range:
    if low is not None and high is not None and low > high:
        raise invalid(f"{name}_min", f"{name}_min must not exceed {name}_max")
    return Range(gte=low, lte=high)


def _many(values: list[Any], name: str) -> Any:
    if len(values) > MAX_FILTER_VALUES:
        raise invalid(name, f"at most {MAX_FILTER_VALUES} values")
    unique = list(dict.fromkeys(values))
    return unique[0] if len(unique) == 1 else unique


def box_from_form(raw: str | None, field_name: str = "box") -> Box | None:
    """A region of the uploaded photo, ``x,y,width,height`` as fractions of its width and
    height (``0.5,0,0.5,1``: its right half); None when not given."""
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        if len(parts) != 4:
            raise ValueError("the box is x,y,width,height: four numbers separated by commas")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError("the box's x, y, width and height must be numbers") from None
        return check_box((numbers[0], numbers[1], numbers[2], numbers[3]))
    except ValueError as exc:
        raise invalid(field_name, str(exc)) from None


def ids_from_form(values: list[str], field_name: str) -> list[str]:
    ids = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    if len(ids) > MAX_EXAMPLES:
        raise invalid(field_name, f"at most {MAX_EXAMPLES} {field_name} examples")
    return [item_id(v, field_name) for v in ids]


def text_search(text: Any, schema: CatalogSchema, name: str = "q") -> dict[str, Any]:
    """``q``: items with a tag equal to ``text`` (the classifier's labels and their WordNet
    parents, worker/model/tags.py: "shoe" finds sandals; a plural finds the singular too),
    or whose id holds its words, or whose name or title has words starting with them
    (CatalogSchema.text_search_paths: a name or title the catalog schema declares is
    filtered as its type instead). A condition for ``where``."""
    if not isinstance(text, str):
        raise invalid(name, f"{name} must be a string")
    words = " ".join(text.lower().split())
    if not 1 <= len(words) <= MAX_SEARCH_TEXT:
        raise invalid(name, f"{name} must hold 1 to {MAX_SEARCH_TEXT} characters")
    first, *others = schema.text_search_paths()
    tags = (TAGS_FIELD, tuple(dict.fromkeys([words, *_singulars(words)])))
    return {first: TextMatch(text.strip(), tuple(others), keywords=tags)}


def _singulars(words: str) -> list[str]:
    """What a plural search word may be the plural of ("shoes", "dresses", "puppies")."""
    if words.endswith("ies"):
        return [words[:-3] + "y"]
    if words.endswith("es"):
        return [words[:-2], words[:-1]]
    if words.endswith("s") and not words.endswith("ss"):
        return [words[:-1]]
    return []


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


def filter_keys(schema: CatalogSchema) -> tuple[str, ...]:
    return tuple(n for f in schema.with_role("filter") for n in filter_parameters(f))


def filters_from_json(raw: Any, schema: CatalogSchema, prefix: str) -> dict[str, Any]:
    body = json_object(raw, prefix)
    reject_unknown(body, filter_keys(schema), f"{prefix}.")
    filters: dict[str, Any] = {}
    for declared in schema.with_role("filter"):
        name = declared.name
        where = f"{prefix}.{name}"
        value = body.get(name)
        if value is not None and declared.type == "bool":
            if not isinstance(value, bool):
                raise invalid(where, f"{name} must be true or false")
            filters[declared.path] = value
        elif value is not None and declared.type == "integer":
            values = value if isinstance(value, list) else [value]
            if not values or not all(type(v) is int for v in values):
                raise invalid(where, f"{name} must be an integer or a list of integers")
            filters[declared.path] = _many(values, where)
        elif value is not None:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise invalid(where, f"{name} must be a string or a list of strings")
            if values:
                filters[declared.path] = _keywords(values, where)
        if declared.ranged:
            _add_range(filters, declared, body.get, where)
    return filters


def item_id(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise APIError(400, "invalid_id", f"{field_name} must hold item ids (strings)", field_name)
    try:
        return validate_id(value, field_name)
    except InvalidId as exc:
        raise APIError(400, "invalid_id", str(exc), field_name) from exc


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
