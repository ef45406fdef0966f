"""The store's value types: stored items, hits, query kinds, conditions, versions and errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np


@dataclass(frozen=True)
class StoredItem:
    """A point as stored: id, payload and, when asked for, its vector.

    Vectors read back are unit length: cosine collections store them normalized.
    """

    point_id: str
    payload: dict[str, Any]
    # Arrays have no single truth value, so equality compares ids and payloads only.
    vector: np.ndarray | None = field(default=None, compare=False)  # float32, 1-d


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity to the query vector."""

    point_id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Range:
    """A range condition for :data:`Where`; at least one bound is required. Numbers, or
    RFC 3339 strings for a datetime field (all bounds of one kind)."""

    gte: float | str | None = None
    lte: float | str | None = None
    gt: float | str | None = None
    lt: float | str | None = None

    @property
    def datetimes(self) -> bool:
        return any(isinstance(b, str) for b in (self.gte, self.lte, self.gt, self.lt))


Where: TypeAlias = Mapping[str, Any]
"""A filter: payload field path (``"tenant"``, ``"metadata.price"``) to a condition.

* ``str``, ``int`` or ``bool``: exact match; a ``float`` matches exactly that number
  (Qdrant only matches keywords, integers and booleans, so it becomes a closed range);
* a list of ``str`` or of ``int``: matches any of them (an empty list matches nothing);
* :class:`Range`: numeric range.

All conditions must hold.
"""


# A parsed condition of a Where: field path and an exact value, a list to match any of,
# or a Range.
@dataclass(frozen=True)
class TextMatch:
    """A full-text condition for :data:`Where`: the words of ``text`` in the condition's
    field or in any of ``also`` (one matching field is enough). A field with a prefix text
    index matches the start of a word ("run" finds "Runner"); others whole words."""

    text: str
    also: tuple[str, ...] = ()
    # Or a keyword field holding any of these whole values: (path, values), for tags.
    keywords: tuple[str, tuple[str, ...]] | None = None


ConditionValue: TypeAlias = str | int | bool | list[str] | list[int] | Range | TextMatch
Condition: TypeAlias = tuple[str, ConditionValue]

RECOMMEND_STRATEGIES = ("best_score", "sum_scores")


@dataclass(frozen=True)
class Recommend:
    """A query by examples: more like ``positive``, less like ``negative`` (Qdrant's recommend).

    ``"best_score"`` scores a point by its best similarity to a positive, and ranks every
    point that lies closer to a negative than to all positives below the others;
    ``"sum_scores"`` adds the similarities to the positives and subtracts those to the
    negatives. Scores are rankings, not cosine similarities.
    """

    positive: Sequence[np.ndarray]
    negative: Sequence[np.ndarray] = ()
    strategy: str = "best_score"


@dataclass(frozen=True)
class Discover:
    """Qdrant's discovery query: near ``target``, inside the region that the context pairs
    (an example to be closer to, one to be farther from) mark out. A point's score counts
    first the pairs it satisfies, then its similarity to the target."""

    target: np.ndarray
    context: Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Diverse:
    """Nearest neighbours of ``vector`` re-ranked by maximal marginal relevance (MMR).

    ``diversity`` 0 keeps the plain ranking; towards 1 each next hit is picked to be unlike
    those already picked. MMR chooses among the ``candidates`` nearest points (at least
    ``limit + offset``); hits keep their cosine score, in MMR's order.
    """

    vector: np.ndarray
    diversity: float = 0.5
    candidates: int = 100


SimilarityQuery: TypeAlias = np.ndarray | Recommend | Discover | Diverse
"""What a query ranks by: a plain vector (nearest neighbours), or one of the query types."""


@dataclass(frozen=True)
class Search:
    """One query of :meth:`VectorStore.query_batch`; the arguments of :meth:`VectorStore.query`."""

    query: SimilarityQuery
    limit: int
    where: Where | None = None
    exclude_ids: Sequence[str] = ()
    offset: int = 0
    score_threshold: float | None = None


@dataclass(frozen=True)
class Group:
    """The hits sharing one value ``key`` of the grouping field, best first."""

    key: str | int
    hits: list[Hit]


@dataclass(frozen=True)
class Facet:
    """One value of a payload field and how many points hold it."""

    value: str | int | bool
    count: int


@dataclass(frozen=True)
class Request:
    """A validated :class:`Search`: canonical ids, float32 vectors, parsed conditions."""

    query: SimilarityQuery
    limit: int
    conditions: list[Condition]
    exclude_ids: list[str]
    offset: int
    score_threshold: float | None
    # Hits carry the internal payload fields too (the duplicates search reads the keypoints).
    with_internal: bool = False


class StoreError(Exception):
    """A permanent failure: bad request, dimension mismatch, missing collection or point."""


class StoreUnavailable(StoreError):
    """A transient failure: server unreachable or overloaded, embedded shard locked. Retry."""


@dataclass(frozen=True)
class Version:
    """One physical collection of a catalog: ``<catalog>__<label>__<number>``.

    A catalog created before versions existed is its own single version, with label ``""``
    and number 0.
    """

    name: str
    label: str
    number: int


ALIAS_ROLES = ("active", "previous", "next")


@dataclass(frozen=True)
class Aliases:
    """The versions a catalog's aliases name: ``active`` serves every call of the store,
    ``previous`` is kept for a rollback, ``next`` is being built by a reindex."""

    active: Version | None
    previous: Version | None = None
    next: Version | None = None


class Keep:
    """The default of :meth:`VectorStore.set_aliases`: leave that alias as it is."""


KEEP = Keep()
