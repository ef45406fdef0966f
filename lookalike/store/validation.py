"""Checks and canonical forms of what callers pass to the store: ids, vectors, limits,
queries and ``Where`` filters (:data:`lookalike.store.types.Where`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.store.types import (
    RECOMMEND_STRATEGIES,
    Condition,
    ConditionValue,
    Discover,
    Diverse,
    Range,
    Recommend,
    Request,
    Search,
    SimilarityQuery,
    StoreError,
    TextMatch,
    Where,
)


def canonical_id(point_id: str) -> str:
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError as exc:
        raise StoreError(f"point id {point_id!r} is not a UUID") from exc


def canonical_ids(point_ids: Sequence[str]) -> list[str]:
    if isinstance(point_ids, str):
        raise StoreError("point ids must be a sequence of ids, not one string")
    return list(dict.fromkeys(canonical_id(pid) for pid in point_ids))


def as_vector(vector: Any) -> np.ndarray:
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"vector is not numeric: {exc}") from exc
    if array.ndim != 1 or array.size == 0:
        raise StoreError(f"vector must be a non-empty 1-d array, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise StoreError("vector contains NaN or infinity")
    if not array.any():
        raise StoreError("a zero vector has no cosine similarity")
    return array


def check_limit(limit: int, name: str = "limit") -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StoreError(f"{name} must be a positive integer, not {limit!r}")


def parse_search(search: Search) -> Request:
    check_limit(search.limit)
    offset = search.offset
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise StoreError(f"offset must be a non-negative integer, not {offset!r}")
    threshold = search.score_threshold
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise StoreError(f"score_threshold must be a number, not {threshold!r}")
        if not np.isfinite(threshold):
            raise StoreError("score_threshold must be a finite number")
        threshold = float(threshold)
    return Request(
        query=_parse_query(search.query, search.limit + offset),
        limit=search.limit,
        conditions=parse_where(search.where),
        exclude_ids=canonical_ids(search.exclude_ids),
        offset=offset,
        score_threshold=threshold,
    )


def _parse_query(query: Any, needed: int) -> SimilarityQuery:
    if isinstance(query, Recommend):
        if query.strategy not in RECOMMEND_STRATEGIES:
            raise StoreError(
                f"recommend strategy must be one of {', '.join(RECOMMEND_STRATEGIES)}, "
                f"not {query.strategy!r}"
            )
        positive = [as_vector(v) for v in _vector_list(query.positive, "positive")]
        negative = [as_vector(v) for v in _vector_list(query.negative, "negative")]
        if not positive:
            raise StoreError("a recommend query needs at least one positive example")
        return Recommend(positive, negative, query.strategy)
    if isinstance(query, Discover):
        pairs = []
        for pair in _vector_list(query.context, "context"):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise StoreError("each context pair must be (positive, negative)")
            pairs.append((as_vector(pair[0]), as_vector(pair[1])))
        if not pairs:
            raise StoreError("a discovery query needs at least one context pair")
        return Discover(as_vector(query.target), pairs)
    if isinstance(query, Diverse):
        diversity = query.diversity
        if isinstance(diversity, bool) or not isinstance(diversity, int | float):
            raise StoreError(f"diversity must be a number, not {diversity!r}")
        if not 0.0 <= diversity <= 1.0:
            raise StoreError(f"diversity must be between 0 and 1, not {diversity}")
        check_limit(query.candidates, "candidates")
        return Diverse(as_vector(query.vector), float(diversity), max(query.candidates, needed))
    return as_vector(query)


def _vector_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        raise StoreError(f"{name} must be a sequence of examples, not one vector")
    try:
        return list(values)
    except TypeError as exc:
        raise StoreError(f"{name} must be a sequence of examples") from exc


def group_keys(payload: dict[str, Any], path: str) -> list[str | int]:
    """The groups a point joins: its string or integer values at ``path`` (no bools, as
    Qdrant); none if any value has another type."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    values = value if isinstance(value, list) else [value]
    if not values or any(type(v) not in (str, int) for v in values):
        return []
    return list(dict.fromkeys(values))


def parse_where(where: Where | None) -> list[Condition]:
    if not where:
        return []
    conditions: list[Condition] = []
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise StoreError(f"filter field must be a non-empty string, not {key!r}")
        conditions.append((key, _parse_condition(key, value)))
    return conditions


def _parse_condition(key: str, value: Any) -> ConditionValue:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            raise StoreError(f"filter on {key!r}: {number} is not a finite number")
        return Range(gte=number, lte=number)
    if isinstance(value, str):
        return value
    if isinstance(value, TextMatch):
        if not value.text.strip():
            raise StoreError(f"filter on {key!r}: the text to match is empty")
        return value
    if isinstance(value, Range):
        bounds = (value.gte, value.lte, value.gt, value.lt)
        if all(bound is None for bound in bounds):
            raise StoreError(f"filter on {key!r}: a Range needs at least one bound")
        given = [b for b in bounds if b is not None]
        if not (
            all(isinstance(b, str) for b in given)
            or all(isinstance(b, int | float) and not isinstance(b, bool) for b in given)
        ):
            raise StoreError(f"filter on {key!r}: Range bounds must be all numbers or all strings")
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return [str(item) for item in items]
        if all(
            isinstance(item, int | np.integer) and not isinstance(item, bool | np.bool_)
            for item in items
        ):
            return [int(item) for item in items]
        raise StoreError(f"filter on {key!r}: a list must hold only strings or only integers")
    raise StoreError(f"filter on {key!r}: unsupported value {value!r}")
