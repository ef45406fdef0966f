"""The one place that speaks to Qdrant.

Two backends behind :class:`VectorStore`:

* :class:`EdgeStore`, the embedded default: qdrant-edge's in-process engine, one shard
  directory per collection. Only one process at a time can open a shard.
* :class:`ClientStore`: a Qdrant server through qdrant-client (or qdrant-client's local
  ``":memory:"`` mode, the server's stand-in in tests).

Both score by cosine similarity (higher is better), apply filters inside the ANN search,
and raise :class:`StoreError` for permanent failures and :class:`StoreUnavailable` for
transient ones, so callers know what to retry. Point ids are UUID strings
(:func:`lookalike.schema.point_id`).

Versions and aliases (model upgrades without downtime): a store opened by :func:`open_store`
names its catalog by an alias (``catalog``) that points at a *version*, a physical collection
``catalog__<label>__<n>`` (the label is the embedding model). A reindex builds a new version
while the alias still serves the old one, then :meth:`VectorStore.set_aliases` switches
``active`` atomically and keeps the old one as ``previous`` for a rollback. A Qdrant server
has real aliases (switched in one ``update_collection_aliases`` call); qdrant-edge has none,
so :class:`EdgeStore` keeps them in a small JSON pointer file next to the shards, replaced
atomically with ``os.replace``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from qdrant_edge import (
    ContextPair,
    CountRequest,
    DiscoverQuery,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    HasIdCondition,
    HnswIndexConfig,
    MatchAny,
    MatchText,
    MatchValue,
    Memory,
    PayloadSchemaType,
    PayloadSelector,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeDateTime,
    RangeFloat,
    RecommendQuery,
    ScrollRequest,
    TextIndexParams,
    TokenizerType,
    UpdateOperation,
    VectorStorageDatatype,
)
from qdrant_edge import Direction as EdgeDirection
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import Mmr as EdgeMmr
from qdrant_edge import OrderBy as EdgeOrderBy

from lookalike import residency
from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    INTERNAL_FIELDS,
    TEXT_INDEX,
    VECTOR_NAME,
    CatalogSchema,
)
from lookalike.settings import VECTOR_DATATYPES

if TYPE_CHECKING:
    # qdrant-client takes about a second to import; the embedded default never needs it.
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    from lookalike.settings import Settings


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


_Value: TypeAlias = str | int | bool | list[str] | list[int] | Range | TextMatch
_Condition: TypeAlias = tuple[str, _Value]

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
class _Request:
    """A validated :class:`Search`: canonical ids, float32 vectors, parsed conditions."""

    query: SimilarityQuery
    limit: int
    conditions: list[_Condition]
    exclude_ids: list[str]
    offset: int
    score_threshold: float | None


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


class _Keep:
    """The default of :meth:`VectorStore.set_aliases`: leave that alias as it is."""


KEEP = _Keep()


class VectorStore(ABC):
    """One collection of image vectors with their payloads.

    The public methods validate their arguments once, here, and hand the backends clean
    values: canonical UUID strings, finite non-zero float32 vectors, parsed filters.
    """

    collection: str

    def ensure_collection(self, dim: int) -> None:
        """Create the collection if needed: ``dim``-sized cosine vectors, payload indexes.

        Idempotent. Raises :class:`StoreError` if it exists with another vector size.
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise StoreError(f"vector size must be a positive integer, not {dim!r}")
        self._ensure_collection(dim)

    def upsert(self, items: Sequence[StoredItem]) -> None:
        """Write one batch of points; a point id already stored is overwritten, not duplicated."""
        points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        for item in items:
            if item.vector is None:
                raise StoreError(f"point {item.point_id} has no vector")
            # The last write of an id wins, as it would in two successive batches.
            points[_canonical_id(item.point_id)] = (_as_vector(item.vector), dict(item.payload))
        if points:
            self._upsert(points)

    def retrieve(self, point_ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredItem]:
        """The stored points among ``point_ids``, in request order; missing ids are absent."""
        ids = _canonical_ids(point_ids)
        if not ids:
            return []
        found = {item.point_id: item for item in self._retrieve(ids, with_vectors)}
        return [found[pid] for pid in ids if pid in found]

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points; ids that are not stored are ignored."""
        ids = _canonical_ids(point_ids)
        if ids:
            self._delete(ids)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Merge ``payload`` into a point's payload; the vector is untouched.

        Top-level keys are merged: a key given here replaces the stored value whole, nested
        dicts included. Raises :class:`StoreError` if the point does not exist.
        """
        self._set_payload(_canonical_id(point_id), dict(payload))

    def search(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        where: Where | None = None,
        exclude_ids: Sequence[str] = (),
        offset: int = 0,
        score_threshold: float | None = None,
        with_internal: bool = False,
    ) -> list[Hit]:
        """The ``limit`` points most similar to ``vector``, best first, after ``offset``.

        ``where`` is applied inside the ANN search, so a selective filter still returns
        ``limit`` hits when that many match. ``score_threshold`` drops hits below that
        cosine similarity. Hits carry their payload without the internal fields
        (lookalike.schema.INTERNAL_FIELDS: the keypoints, ~10 KiB a point), as every search,
        query and scroll does, unless ``with_internal`` (the duplicates search).
        """
        _check_limit(limit)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise StoreError(f"offset must be a non-negative integer, not {offset!r}")
        return self._search(
            _as_vector(vector),
            limit,
            _parse_where(where),
            _canonical_ids(exclude_ids),
            offset,
            score_threshold,
            with_internal,
        )

    def query(
        self,
        query: SimilarityQuery,
        *,
        limit: int,
        where: Where | None = None,
        exclude_ids: Sequence[str] = (),
        offset: int = 0,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """The ``limit`` best points for ``query``, best first, after ``offset``.

        A plain vector ranks by cosine similarity, as :meth:`search` does; :class:`Recommend`,
        :class:`Discover` and :class:`Diverse` run Qdrant's recommend, discovery and MMR
        queries. ``where`` applies inside the search, ``score_threshold`` to the scores.
        """
        search = Search(query, limit, where, exclude_ids, offset, score_threshold)
        return self._query_batch([_parse_search(search)])[0]

    def query_batch(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """Run several queries in one call (one planned batch); one list of hits per query."""
        requests = [_parse_search(search) for search in searches]
        return self._query_batch(requests) if requests else []

    def query_groups(
        self,
        query: SimilarityQuery,
        *,
        group_by: str,
        group_size: int,
        limit: int,
        where: Where | None = None,
        exclude_ids: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> list[Group]:
        """At most ``limit`` groups of at most ``group_size`` hits sharing a ``group_by`` value.

        Groups come in the order of their best hit, hits best first: the result of walking
        the whole ranking and keeping a hit when its group is among the first ``limit``
        groups met and not yet full. Points without a string or integer ``group_by`` value
        are left out; a point whose value is a list joins the group of each element (on
        qdrant-edge, not once one of its groups is full).
        """
        if not isinstance(group_by, str) or not group_by:
            raise StoreError(f"group_by must be a payload field path, not {group_by!r}")
        _check_limit(group_size, "group_size")
        request = _parse_search(Search(query, limit, where, exclude_ids, 0, score_threshold))
        if isinstance(request.query, Diverse):
            raise StoreError("a diversity (MMR) query cannot be grouped")
        return self._query_groups(request, group_by, group_size)

    def facet(self, key: str, *, where: Where | None = None, limit: int = 100) -> list[Facet]:
        """The most frequent values of the payload field ``key`` among the points matching
        ``where``, with their exact counts, most frequent first (the field needs an index)."""
        if not isinstance(key, str) or not key:
            raise StoreError(f"facet key must be a payload field path, not {key!r}")
        _check_limit(limit)
        facets = self._facet(key, _parse_where(where), limit)
        return sorted(facets, key=lambda f: (-f.count, str(f.value)))

    def scroll(
        self, *, limit: int, offset: str | None = None, where: Where | None = None
    ) -> tuple[list[StoredItem], str | None]:
        """One page of points (without vectors) in id order, and the offset of the next page.

        Start with ``offset=None``; the next offset is ``None`` after the last page.
        """
        _check_limit(limit)
        start = None if offset is None else _canonical_id(offset)
        return self._scroll(limit, start, _parse_where(where))

    def scroll_newest(
        self, *, limit: int, cursor: str | None = None, where: Where | None = None
    ) -> tuple[list[StoredItem], str | None]:
        """One page of points, the most recently ingested first (``ingested_at``, which has a
        range index for this), and the cursor of the next page (``None`` after the last).

        Items ingested in one batch share their time, so a cursor is that time plus the ids
        of the page's items that have it: the next page starts at the time, without them.
        """
        _check_limit(limit)
        at, seen = _decode_newest_cursor(cursor)
        items = self._scroll_ordered(limit + 1, NEWEST_KEY, at, seen, _parse_where(where))
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        last = str(items[-1].payload.get(NEWEST_KEY))
        same = [i.point_id for i in items if str(i.payload.get(NEWEST_KEY)) == last]
        return items, _encode_newest_cursor(last, (seen if last == at else []) + same)

    def count(self, where: Where | None = None) -> int:
        """The exact number of points matching ``where`` (all points without it)."""
        return self._count(_parse_where(where))

    # ------------------------------------------------------------ versions and aliases

    def aliases(self) -> Aliases:
        """The versions named by the catalog's aliases (``active`` is None before the first
        :meth:`ensure_collection`)."""
        targets = self._alias_targets()
        found = {v.name: v for v in self.versions()}
        # A name that is no version of this catalog (a hand-made alias) is reported as such.
        named = {
            role: found.get(name) or _parse_version(self.collection, name) or Version(name, "", -1)
            for role, name in targets.items()
        }
        return Aliases(**named)

    def versions(self) -> list[Version]:
        """Every version of the catalog that exists, oldest first."""
        parsed = (_parse_version(self.collection, name) for name in self._version_names())
        return sorted((v for v in parsed if v is not None), key=lambda v: (v.number, v.name))

    def create_version(self, label: str, dim: int) -> Version:
        """Create an empty version ``<catalog>__<label>__<n+1>``; no alias names it yet."""
        if not _LABEL_RE.match(label):
            raise StoreError(f"version label {label!r} may hold only letters, digits and '-'")
        number = max((v.number for v in self.versions()), default=0) + 1
        version = Version(version_name(self.collection, label, number), label, number)
        self.version(version.name).ensure_collection(dim)
        return version

    def version(self, name: str) -> VectorStore:
        """A store bound to one version (what a reindex writes into), sharing this store's
        connection or shards; closing it does nothing, closing this store closes both."""
        if _parse_version(self.collection, name) is None:
            raise StoreError(f"{name!r} is not a version of the catalog {self.collection!r}")
        return self._version_view(name)

    def set_aliases(
        self,
        *,
        active: str | _Keep = KEEP,
        previous: str | _Keep | None = KEEP,
        next: str | _Keep | None = KEEP,
    ) -> Aliases:
        """Point aliases at versions (None removes one), all at once: a reader sees either the
        old or the new set, never a mix."""
        current = self._alias_targets()
        existing = {v.name for v in self.versions()}
        changes: dict[str, str | None] = {}
        for role, value in (("active", active), ("previous", previous), ("next", next)):
            if isinstance(value, _Keep) or current.get(role) == value:
                continue
            if value is not None and value not in existing:
                raise StoreError(f"cannot point {role!r} at {value!r}: no such version")
            changes[role] = value
        if changes:
            self._set_alias_targets(changes)
        return self.aliases()

    def drop_version(self, name: str) -> None:
        """Delete a version and its points; an aliased version cannot be dropped."""
        if _parse_version(self.collection, name) is None:
            raise StoreError(f"{name!r} is not a version of the catalog {self.collection!r}")
        if name in self._alias_targets().values():
            raise StoreError(f"version {name!r} is named by an alias; switch the alias first")
        self._drop_version(name)

    @abstractmethod
    def _alias_targets(self) -> dict[str, str]:
        """Role (``active``/``previous``/``next``) to version name, for the aliases that exist."""

    @abstractmethod
    def _version_names(self) -> list[str]: ...

    @abstractmethod
    def _version_view(self, name: str) -> VectorStore: ...

    @abstractmethod
    def _set_alias_targets(self, changes: dict[str, str | None]) -> None: ...

    @abstractmethod
    def _drop_version(self, name: str) -> None: ...

    def optimize(self) -> bool:
        """Build the vector index (HNSW) over what was written; blocks until done.

        A Qdrant server does this by itself. The embedded qdrant-edge shard does not: until it
        is optimized it is one plain segment searched exhaustively (about 60 ms a query at
        100k items, 1 ms with the index; docs/performance.md). True if anything changed.
        """
        return False

    @abstractmethod
    def close(self) -> None:
        """Release the backend; idempotent. The store cannot be used afterwards."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def _ensure_collection(self, dim: int) -> None: ...

    @abstractmethod
    def _upsert(self, points: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> None: ...

    @abstractmethod
    def _retrieve(self, ids: list[str], with_vectors: bool) -> list[StoredItem]: ...

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _set_payload(self, point_id: str, payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def _search(
        self,
        vector: np.ndarray,
        limit: int,
        conditions: list[_Condition],
        exclude_ids: list[str],
        offset: int,
        score_threshold: float | None,
        with_internal: bool,
    ) -> list[Hit]: ...

    @abstractmethod
    def _scroll(
        self, limit: int, offset: str | None, conditions: list[_Condition]
    ) -> tuple[list[StoredItem], str | None]: ...

    @abstractmethod
    def _scroll_ordered(
        self,
        limit: int,
        key: str,
        start: str | None,
        exclude: list[str],
        conditions: list[_Condition],
    ) -> list[StoredItem]:
        """Up to ``limit`` points by ``key`` descending, from ``start`` (inclusive) down."""

    @abstractmethod
    def _count(self, conditions: list[_Condition]) -> int: ...

    @abstractmethod
    def _query_batch(self, requests: list[_Request]) -> list[list[Hit]]: ...

    @abstractmethod
    def _query_groups(self, request: _Request, group_by: str, group_size: int) -> list[Group]: ...

    @abstractmethod
    def _facet(self, key: str, conditions: list[_Condition], limit: int) -> list[Facet]: ...


def mirror_versions(store: VectorStore) -> list[VectorStore]:
    """The versions that receive the catalog's writes besides the active one: the one a
    reindex is building (``next``) and the one kept for a rollback (``previous``). Deletes
    and metadata changes go to them too, so neither a switch nor a rollback brings back a
    stale item (new images are written there by the worker, with each version's model)."""
    aliases = store.aliases()
    active = aliases.active.name if aliases.active is not None else None
    return [
        store.version(v.name)
        for v in (aliases.next, aliases.previous)
        if v is not None and v.name != active
    ]


def open_store(settings: Settings) -> VectorStore:
    """The store ``settings`` asks for; nothing is opened or created until first use."""
    # A new catalog starts as version 1, labelled with the model that fills it.
    label = settings.model
    if not settings.qdrant_url:
        return EdgeStore(
            settings.qdrant_path,
            settings.collection,
            initial_label=label,
            index_after_idle_s=settings.index_after_idle_s,
            datatype=settings.vector_datatype,
            schema=settings.catalog,
        )
    from qdrant_client import QdrantClient

    if settings.qdrant_url == ":memory:":
        return ClientStore(
            QdrantClient(":memory:"),
            settings.collection,
            initial_label=label,
            datatype=settings.vector_datatype,
            schema=settings.catalog,
        )
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    return ClientStore(
        client,
        settings.collection,
        initial_label=label,
        datatype=settings.vector_datatype,
        schema=settings.catalog,
        shard_number=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication_factor,
    )


# --------------------------------------------------------------------------- validation


def _canonical_id(point_id: str) -> str:
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError as exc:
        raise StoreError(f"point id {point_id!r} is not a UUID") from exc


def _canonical_ids(point_ids: Sequence[str]) -> list[str]:
    if isinstance(point_ids, str):
        raise StoreError("point ids must be a sequence of ids, not one string")
    return list(dict.fromkeys(_canonical_id(pid) for pid in point_ids))


def _as_vector(vector: Any) -> np.ndarray:
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


def _check_limit(limit: int, name: str = "limit") -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StoreError(f"{name} must be a positive integer, not {limit!r}")


def _parse_search(search: Search) -> _Request:
    _check_limit(search.limit)
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
    return _Request(
        query=_parse_query(search.query, search.limit + offset),
        limit=search.limit,
        conditions=_parse_where(search.where),
        exclude_ids=_canonical_ids(search.exclude_ids),
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
        positive = [_as_vector(v) for v in _vector_list(query.positive, "positive")]
        negative = [_as_vector(v) for v in _vector_list(query.negative, "negative")]
        if not positive:
            raise StoreError("a recommend query needs at least one positive example")
        return Recommend(positive, negative, query.strategy)
    if isinstance(query, Discover):
        pairs = []
        for pair in _vector_list(query.context, "context"):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise StoreError("each context pair must be (positive, negative)")
            pairs.append((_as_vector(pair[0]), _as_vector(pair[1])))
        if not pairs:
            raise StoreError("a discovery query needs at least one context pair")
        return Discover(_as_vector(query.target), pairs)
    if isinstance(query, Diverse):
        diversity = query.diversity
        if isinstance(diversity, bool) or not isinstance(diversity, int | float):
            raise StoreError(f"diversity must be a number, not {diversity!r}")
        if not 0.0 <= diversity <= 1.0:
            raise StoreError(f"diversity must be between 0 and 1, not {diversity}")
        _check_limit(query.candidates, "candidates")
        return Diverse(_as_vector(query.vector), float(diversity), max(query.candidates, needed))
    return _as_vector(query)


def _vector_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        raise StoreError(f"{name} must be a sequence of examples, not one vector")
    try:
        return list(values)
    except TypeError as exc:
        raise StoreError(f"{name} must be a sequence of examples") from exc


def _group_keys(payload: dict[str, Any], path: str) -> list[str | int]:
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


def _parse_where(where: Where | None) -> list[_Condition]:
    if not where:
        return []
    conditions: list[_Condition] = []
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise StoreError(f"filter field must be a non-empty string, not {key!r}")
        conditions.append((key, _parse_condition(key, value)))
    return conditions


def _parse_condition(key: str, value: Any) -> _Value:
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


_COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_VERSION_SEPARATOR = "__"


def version_name(collection: str, label: str, number: int) -> str:
    """The physical collection of a catalog's version."""
    return f"{collection}{_VERSION_SEPARATOR}{label}{_VERSION_SEPARATOR}{number}"


def alias_name(collection: str, role: str) -> str:
    """The alias of a role: the catalog's own name for ``active``, else ``<catalog>__<role>``."""
    if role not in ALIAS_ROLES:
        raise StoreError(f"unknown alias role {role!r}")
    return collection if role == "active" else f"{collection}{_VERSION_SEPARATOR}{role}"


def _parse_version(collection: str, name: str) -> Version | None:
    if name == collection:
        return Version(name, "", 0)
    prefix = collection + _VERSION_SEPARATOR
    if not name.startswith(prefix):
        return None
    label, sep, number = name[len(prefix) :].rpartition(_VERSION_SEPARATOR)
    if not sep or not _LABEL_RE.match(label) or not number.isdigit():
        return None
    return Version(name, label, int(number))


# --------------------------------------------------------------------------- qdrant-edge

_EDGE_INDEX_TYPES = {
    "keyword": PayloadSchemaType.Keyword,
    "integer": PayloadSchemaType.Integer,
    "float": PayloadSchemaType.Float,
    "bool": PayloadSchemaType.Bool,
    "datetime": PayloadSchemaType.Datetime,
    TEXT_INDEX: PayloadSchemaType.Text,
}
_EDGE_INDEX_NAMES = {kind: name for name, kind in _EDGE_INDEX_TYPES.items()}


def _check_index_types(
    collection: str, existing: Mapping[str, str], wanted: Mapping[str, str]
) -> None:
    """Refuse a declared field whose payload index in the collection has another type: its
    stored values have the old type, and a filter would silently miss them."""
    for path, kind in wanted.items():
        have = existing.get(path)
        if have is not None and have != kind:
            name = path.removeprefix("metadata.")
            wants = (
                "not declared, so GET /v1/items?q= text-indexes it"
                if kind == TEXT_INDEX
                else f"declared {kind}"
            )
            raise StoreError(
                f"the catalog field {name!r} is {wants} but collection {collection!r} "
                f"indexes it as {have}: a field's type cannot change in place (declare the "
                "values under a new field name, or restore the old type in "
                "LOOKALIKE_CATALOG_SCHEMA)"
            )


# How the embedded shard builds its HNSW index (docs/performance.md): ef_construct 64 instead
# of Qdrant's 100 builds 100k x 1280 in about half the time with recall@10 still ~1.0 on
# catalog-like vectors. Segments under full_scan_threshold KB are searched exhaustively.
# Memory tiers (Qdrant's `memory`): the graph and the id map on the heap, vectors and
# payloads memory-mapped and warmed into RAM when the shard opens. Without the warming
# ("cold", qdrant-edge's default for payloads), the first queries after a start page the
# payloads in: at 100k items a query took 2 ms until a few thousand queries had touched
# them, 0.8 ms after; on a shard created with these tiers, 0.4 ms from the first query.
EDGE_HNSW = HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=10_000, memory=Memory.Pinned)

# Segments of a query are searched one after the other in the caller's thread. qdrant-edge's
# default fans a query out over a pool of 8 threads (whatever the cores): at 100k items, 2
# segments, 2 cores, that took 0.6 ms of wall and 1.0 ms of CPU per query against 0.44 ms of
# both in one thread. The API's threads already run queries side by side.
EDGE_SEARCH_THREADS = 1

# How a new collection stores its vectors (LOOKALIKE_VECTOR_DATATYPE). float16 halves the
# vectors' memory; scores move by a few 1e-4 and recall@10 drops a little (at 100k items,
# 0.999 -> 0.985 in docs/performance.md's run). A collection keeps the type it was created
# with: a changed setting applies to new catalogs and new versions (a reindex).
_EDGE_DATATYPES = {
    "float32": VectorStorageDatatype.Float32,
    "float16": VectorStorageDatatype.Float16,
}

_log = logging.getLogger(__name__)


class _ShardPool:
    """The shards a catalog's store and its version views have open, by directory: a
    process can open a shard only once, so they share them.

    With ``index_after_idle_s`` > 0, a background thread optimizes the shards written to
    (builds their HNSW index) once no write came for that long: qdrant-edge never does it by
    itself, and an unindexed shard is searched exhaustively."""

    def __init__(self, index_after_idle_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.shards: dict[Path, EdgeShard] = {}
        self.index_after_idle_s = index_after_idle_s
        self._dirty: set[Path] = set()
        self._last_write = 0.0
        self._stop = threading.Event()
        self._indexer: threading.Thread | None = None
        # Held while a shard is optimized, so close() does not close it underneath.
        self.optimizing = threading.Lock()

    def written(self, path: Path) -> None:
        if self.index_after_idle_s <= 0:
            return
        with self.lock:
            self._dirty.add(path)
            self._last_write = time.monotonic()
            if self._stop.is_set() or (self._indexer and self._indexer.is_alive()):
                return
            self._indexer = threading.Thread(
                target=self._index_when_idle, name="edge-indexer", daemon=True
            )
            self._indexer.start()

    def _index_when_idle(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                wait = self._last_write + self.index_after_idle_s - time.monotonic()
                dirty = list(self._dirty) if wait <= 0 else []
                if wait <= 0:
                    self._dirty.clear()
                    if not dirty:
                        self._indexer = None
                        return
            if wait > 0:
                self._stop.wait(wait)
                continue
            for path in dirty:
                with self.optimizing:
                    shard = self.get(path)
                    if shard is None or self._stop.is_set():
                        continue
                    started = time.monotonic()
                    try:
                        changed = shard.optimize()
                    except Exception:
                        _log.exception("building the vector index of %s failed", path)
                        continue
                    if changed:
                        _log.info(
                            "vector index of %s built in %.1f s",
                            path.name,
                            time.monotonic() - started,
                        )
                        residency.warm(path)  # the new segment's files

    def stop_indexing(self) -> None:
        self._stop.set()
        indexer = self._indexer
        if indexer is not None and indexer is not threading.current_thread():
            indexer.join()

    def get(self, path: Path) -> EdgeShard | None:
        with self.lock:
            return self.shards.get(path)

    def open(self, path: Path, load: Callable[[], EdgeShard]) -> EdgeShard:
        with self.lock:
            shard = self.shards.get(path)
            if shard is not None:
                return shard
            shard = self.shards[path] = load()
        # Outside the lock: at 1M items this reads 6 GiB (lookalike/residency.py).
        residency.warm(path)
        return shard

    def take(self, path: Path | None = None) -> list[EdgeShard]:
        """Remove one shard (or all) from the pool, for the caller to close."""
        with self.lock:
            if path is None:
                shards, self.shards = list(self.shards.values()), {}
                return shards
            shard = self.shards.pop(path, None)
            return [] if shard is None else [shard]


# The payload a hit or a scrolled point carries: all but the internal fields.
_EDGE_BRIEF = PayloadSelector.Exclude(list(INTERNAL_FIELDS))


class EdgeStore(VectorStore):
    """The embedded default: a qdrant-edge shard in ``path / collection``.

    With ``initial_label`` (what :func:`open_store` gives), a new catalog is created as the
    version ``path / <collection>__<label>__1`` and ``path / <collection>.aliases.json``
    names its versions; ``self.path`` is the active version's shard.

    Thread-safe: one instance is shared by the API's request threads and the in-process
    worker. An ``EdgeShard`` is internally synchronized (pyo3 requires the type to be
    ``Sync``; 4 writers, 4 readers and periodic flushes on one shard ran without error or
    lost points, and a close() under load only made in-flight calls fail cleanly), so data
    calls run concurrently; only opening and closing take ``_lock``.

    The shard's write-ahead log holds a file lock: a second process (or a second store on
    the same directory) gets :class:`StoreUnavailable` until the first closes.
    """

    def __init__(
        self,
        path: Path | str,
        collection: str,
        *,
        initial_label: str | None = None,
        index_after_idle_s: float = 0.0,
        datatype: str = "float32",
        schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA,
        _pool: _ShardPool | None = None,
    ) -> None:
        if not _COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self.root = Path(path)
        self._initial_label = initial_label
        self.vector_datatype = _checked_datatype(datatype)
        self.schema = schema
        # A version view shares its catalog store's pool and is bound to one directory.
        self._is_view = _pool is not None
        self._pool = _pool or _ShardPool(index_after_idle_s)
        self._views: dict[str, EdgeStore] = {}
        self._pointer = self.root / f"{collection}.aliases.json"
        self._targets: dict[str, str] = {} if self._is_view else self._read_pointer()
        self.path = self.root / self._targets.get("active", collection)
        self._lock = threading.Lock()
        self._shard: EdgeShard | None = None
        self._dim: int | None = None
        self._closed = False

    def close(self) -> None:
        if self._is_view:
            return  # its shards belong to the catalog's store
        with self._lock:
            self._shard, self._closed = None, True
        self._pool.stop_indexing()
        failure: StoreError | None = None
        for shard in self._pool.take():
            try:
                self._close_shard(shard)
            except StoreError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _close_shard(self, shard: EdgeShard) -> None:
        try:
            with self._errors():
                shard.flush()
        finally:
            with self._errors():
                shard.close()

    def _ensure_collection(self, dim: int) -> None:
        with self._lock:
            self._check_open()
            if self._dim is not None:
                if self._dim != dim:
                    raise self._dim_mismatch(self._dim, dim)
                return
            with self._errors():
                shard = self._shard or self._pool.get(self.path)
                if shard is None:
                    config = _edge_config(dim, self.vector_datatype)
                    if self._initial_label and not self._targets and not self._exists():
                        # A new catalog: its first version, named by the pointer file.
                        first = version_name(self.collection, self._initial_label, 1)
                        self._write_pointer({"active": first})
                        self.path = self.root / first
                    if self._exists():
                        # With a config, load() checks it against the stored segments.
                        shard = self._pool.open(self.path, lambda: self._load(config, dim))
                    else:
                        shard = self._pool.open(
                            self.path, lambda: EdgeShard.create(str(self.path), config)
                        )
                else:
                    self._check_dim(shard, dim)
                self._shard = shard
                self._ensure_indexes(shard)
            self._dim = dim

    def _upsert(self, points: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> None:
        batch = [
            Point(pid, {VECTOR_NAME: vector.tolist()}, payload)
            for pid, (vector, payload) in points.items()
        ]
        # No flush here: update() appends to the write-ahead log before it returns, and a
        # reopened shard replays it (a process SIGKILLed right after its upserts lost
        # nothing). flush() only writes the segments, which shortens that replay, at
        # about 5 ms a call, more than the upsert of a 32-image batch itself. close() flushes.
        with self._errors():
            self._open().update(UpdateOperation.upsert_points(batch))
        self._pool.written(self.path)

    def optimize(self) -> bool:
        shard = self._open()
        with self._pool.optimizing, self._errors():
            changed = bool(shard.optimize())
        if changed:
            residency.warm(self.path)  # the new segment's files
        return changed

    def _retrieve(self, ids: list[str], with_vectors: bool) -> list[StoredItem]:
        with self._errors():
            records = self._open().retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [
            StoredItem(
                point_id=str(record.id),
                payload=dict(record.payload or {}),
                vector=_read_vector(record.vector) if with_vectors else None,
            )
            for record in records
        ]

    def _delete(self, ids: list[str]) -> None:
        with self._errors():
            self._open().update(UpdateOperation.delete_points(list(ids)))

    def _set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        with self._errors():
            self._open().update(UpdateOperation.set_payload([point_id], payload))

    def _search(
        self,
        vector: np.ndarray,
        limit: int,
        conditions: list[_Condition],
        exclude_ids: list[str],
        offset: int,
        score_threshold: float | None,
        with_internal: bool,
    ) -> list[Hit]:
        request = QueryRequest(
            limit=limit,
            offset=offset,
            query=Query.Nearest(vector.tolist(), using=VECTOR_NAME),
            filter=_edge_filter(conditions, exclude_ids),
            with_payload=True if with_internal else _EDGE_BRIEF,
            with_vector=False,
            score_threshold=score_threshold,
        )
        with self._errors():
            points = self._open().query(request)
        return [
            Hit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in points
        ]

    def _scroll(
        self, limit: int, offset: str | None, conditions: list[_Condition]
    ) -> tuple[list[StoredItem], str | None]:
        request = ScrollRequest(
            offset=offset,
            limit=limit,
            filter=_edge_filter(conditions, []),
            with_payload=_EDGE_BRIEF,
            with_vector=False,
        )
        with self._errors():
            records, next_offset = self._open().scroll(request)
        items = [StoredItem(str(r.id), dict(r.payload or {})) for r in records]
        return items, None if next_offset is None else str(next_offset)

    def _scroll_ordered(
        self,
        limit: int,
        key: str,
        start: str | None,
        exclude: list[str],
        conditions: list[_Condition],
    ) -> list[StoredItem]:
        request = ScrollRequest(
            limit=limit,
            filter=_edge_filter(conditions, exclude),
            with_payload=_EDGE_BRIEF,
            with_vector=False,
            order_by=EdgeOrderBy(key, EdgeDirection.Desc, start_from=start),
        )
        with self._errors():
            records, _ = self._open().scroll(request)
        return [StoredItem(str(r.id), dict(r.payload or {})) for r in records]

    def _count(self, conditions: list[_Condition]) -> int:
        request = CountRequest(exact=True, filter=_edge_filter(conditions, []))
        with self._errors():
            return self._open().count(request)

    def _query_batch(self, requests: list[_Request]) -> list[list[Hit]]:
        edge_requests = [
            QueryRequest(
                limit=r.limit,
                offset=r.offset,
                query=_edge_query(r.query),
                filter=_edge_filter(r.conditions, r.exclude_ids),
                with_payload=_EDGE_BRIEF,
                with_vector=False,
                score_threshold=r.score_threshold,
            )
            for r in requests
        ]
        with self._errors():
            shard = self._open()
            if len(edge_requests) == 1:
                results = [shard.query(edge_requests[0])]
            else:
                results = shard.query_batch(QueryBatchRequest(edge_requests))
        return [
            [
                Hit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
                for p in ps
            ]
            for ps in results
        ]

    def _query_groups(self, request: _Request, group_by: str, group_size: int) -> list[Group]:
        # qdrant-edge has no grouped query. This is the server's algorithm: search again and
        # again, each time leaving out the points already seen and the groups already full,
        # and once `limit` groups are open, everything outside them.
        groups: dict[str | int, list[Hit]] = {}
        seen = list(request.exclude_ids)
        batch = max(4 * request.limit * group_size, 32)
        query = _edge_query(request.query)
        while True:
            full = [k for k, hits in groups.items() if len(hits) >= group_size]
            open_keys = [k for k, hits in groups.items() if len(hits) < group_size]
            if len(groups) >= request.limit and not open_keys:
                break
            base = _edge_filter(request.conditions, seen)
            must = list(base.must or []) if base is not None else []
            must_not = list(base.must_not or []) if base is not None else []
            must_not.extend(_edge_keys_condition(group_by, full))
            if len(groups) >= request.limit:
                must.append(EdgeFilter(should=_edge_keys_condition(group_by, open_keys)))
            edge_request = QueryRequest(
                limit=batch,
                query=query,
                filter=EdgeFilter(must=must or None, must_not=must_not or None),
                with_payload=_EDGE_BRIEF,
                with_vector=False,
                score_threshold=request.score_threshold,
            )
            with self._errors():
                points = self._open().query(edge_request)
            for p in points:
                hit = Hit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
                seen.append(hit.point_id)
                for key in _group_keys(hit.payload, group_by):
                    if key not in groups:
                        if len(groups) >= request.limit:
                            continue
                        groups[key] = []
                    if len(groups[key]) < group_size:
                        groups[key].append(hit)
            if len(points) < batch:
                break
        return [Group(key, hits) for key, hits in groups.items()]

    def _facet(self, key: str, conditions: list[_Condition], limit: int) -> list[Facet]:
        request = FacetRequest(key, limit=limit, exact=True, filter=_edge_filter(conditions, []))
        with self._errors():
            response = self._open().facet(request)
        return [Facet(hit.value, int(hit.count)) for hit in response.hits]

    def _open(self) -> EdgeShard:
        shard = self._shard
        if shard is not None:
            return shard
        with self._lock:
            self._check_open()
            if self._shard is None:
                if not self._exists():
                    raise StoreError(
                        f"collection {self.collection!r} does not exist in {self.path.parent}; "
                        "call ensure_collection() first"
                    )
                self._shard = self._pool.open(self.path, lambda: self._load(None))
            return self._shard

    def _load(self, config: EdgeConfig | None, dim: int = 0) -> EdgeShard:
        """The shard at ``self.path``; with a config (of ``dim``), checked against it."""
        try:
            return EdgeShard.load(str(self.path), config)
        except Exception as exc:
            failure = exc
        if dim and "storage datatype" in str(failure):
            # Created with the other vector type, which it keeps (LOOKALIKE_VECTOR_DATATYPE).
            other = next(d for d in VECTOR_DATATYPES if d != self.vector_datatype)
            try:
                return EdgeShard.load(str(self.path), _edge_config(dim, other))
            except Exception as exc:
                failure = exc
        if "incompatible" in str(failure):
            raise StoreError(
                f"collection {self.collection!r} exists with another vector configuration: "
                f"{failure}"
            ) from failure
        raise failure

    def _exists(self) -> bool:
        return _edge_shard_exists(self.path)

    # -------------------------------------------------------- versions: the pointer file

    def _read_pointer(self) -> dict[str, str]:
        try:
            raw = json.loads(self._pointer.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"the alias file {self._pointer} is unreadable: {exc}") from exc
        if not isinstance(raw, dict):
            raise StoreError(f"the alias file {self._pointer} does not hold a JSON object")
        return {role: str(raw[role]) for role in ALIAS_ROLES if isinstance(raw.get(role), str)}

    def _write_pointer(self, targets: dict[str, str]) -> None:
        # Write, fsync, rename over the old file, fsync the folder: a crash leaves either the
        # old pointer or the new one, and a reader never sees half a file.
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{self.collection}.aliases-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({role: targets.get(role) for role in ALIAS_ROLES}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._pointer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._targets = dict(targets)

    def _alias_targets(self) -> dict[str, str]:
        if self._is_view:
            return {}
        targets = dict(self._targets)
        if "active" not in targets and _edge_shard_exists(self.root / self.collection):
            targets["active"] = self.collection  # a catalog created before versions
        return targets

    def _version_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if _edge_shard_exists(p)]

    def _version_view(self, name: str) -> VectorStore:
        with self._lock:
            self._check_open()
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = EdgeStore(
                    self.root,
                    name,
                    datatype=self.vector_datatype,
                    schema=self.schema,
                    _pool=self._pool,
                )
            return view

    def _set_alias_targets(self, changes: dict[str, str | None]) -> None:
        with self._lock:
            self._check_open()
            targets = self._alias_targets()
            for role, name in changes.items():
                if name is None:
                    targets.pop(role, None)
                else:
                    targets[role] = name
            if "active" not in targets:
                raise StoreError("the active alias cannot be removed")
            self._write_pointer(targets)
            if "active" in changes:
                # Calls already running finish on the old shard (it stays open in the pool);
                # the next call opens the new one.
                self.path = self.root / targets["active"]
                self._shard = None
                self._dim = None

    def _drop_version(self, name: str) -> None:
        path = self.root / name
        with self._lock:
            self._views.pop(name, None)
        for shard in self._pool.take(path):
            self._close_shard(shard)
        shutil.rmtree(path, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store for {self.path} is closed")

    def _check_dim(self, shard: EdgeShard, dim: int) -> None:
        # The shard was opened without a config, so its vector size is unknown here: a
        # query of the wanted size is the public way to ask.
        probe = QueryRequest(limit=1, query=Query.Nearest([1.0] * dim, using=VECTOR_NAME))
        try:
            shard.query(probe)
        except Exception as exc:
            if "dimension" in str(exc):
                raise StoreError(
                    f"collection {self.collection!r} exists with another vector size: {exc}"
                ) from exc
            raise

    def _dim_mismatch(self, existing: int, wanted: int) -> StoreError:
        return StoreError(
            f"collection {self.collection!r} holds {existing}-d vectors, not {wanted}-d"
        )

    def _ensure_indexes(self, shard: EdgeShard) -> None:
        """The declared fields' payload indexes: a new field's is built over the points
        already stored (nothing is re-embedded); a field indexed as another type is refused."""
        existing = {
            name: _EDGE_INDEX_NAMES.get(info.data_type, str(info.data_type))
            for name, info in shard.info().payload_schema.items()
        }
        wanted = self.schema.payload_indexes()
        _check_index_types(self.collection, existing, wanted)
        for field_name, kind in wanted.items():
            if field_name not in existing:
                params: Any = _EDGE_INDEX_TYPES[kind]
                if kind == TEXT_INDEX:
                    params = TextIndexParams(tokenizer=TokenizerType.Prefix, lowercase=True)
                shard.update(UpdateOperation.create_field_index(field_name, params))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        # qdrant-edge raises plain Exception (TypeError/ValueError for bad arguments) and
        # says what went wrong only in the message.
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            message = str(exc)
            if "WouldBlock" in message:
                raise StoreUnavailable(
                    f"the qdrant-edge shard {self.path} is open in another process (or another "
                    "store in this one); an embedded shard serves one process at a time. Set "
                    "LOOKALIKE_QDRANT_URL to share a Qdrant server between processes"
                ) from exc
            if "not initialized" in message:
                raise StoreError(f"the store for {self.path} is closed") from exc
            raise StoreError(f"qdrant-edge: {message}") from exc


def _checked_datatype(datatype: str) -> str:
    if datatype not in VECTOR_DATATYPES:
        raise StoreError(
            f"vector datatype {datatype!r} is not one of {', '.join(VECTOR_DATATYPES)}"
        )
    return datatype


def _edge_config(dim: int, datatype: str, quantization: Any = None) -> EdgeConfig:
    # ``quantization``: for benchmarks/vector_storage.py, which measured int8 and rejected it.
    return EdgeConfig(
        vectors={
            VECTOR_NAME: EdgeVectorParams(
                size=dim,
                distance=Distance.Cosine,
                memory=Memory.Cached,
                datatype=_EDGE_DATATYPES[datatype],
            )
        },
        hnsw_config=EDGE_HNSW,
        payload_memory=Memory.Cached,
        id_tracker_memory=Memory.Pinned,
        max_search_threads=EDGE_SEARCH_THREADS,
        quantization_config=quantization,
    )


def _edge_shard_exists(path: Path) -> bool:
    segments = path / "segments"
    return (path / "edge_config.json").exists() or (segments.is_dir() and any(segments.iterdir()))


def _edge_filter(conditions: list[_Condition], exclude_ids: list[str]) -> EdgeFilter | None:
    if not conditions and not exclude_ids:
        return None
    must: list[Any] = [_edge_condition(key, value) for key, value in conditions]
    must_not: list[Any] = [HasIdCondition(set(exclude_ids))] if exclude_ids else []
    return EdgeFilter(must=must or None, must_not=must_not or None)


def _edge_condition(key: str, value: _Value) -> Any:
    if isinstance(value, TextMatch):
        fields = (key, *value.also)
        should: list[Any] = [FieldCondition(f, match=MatchText(value.text)) for f in fields]
        if value.keywords is not None:
            path, words = value.keywords
            should.append(FieldCondition(path, match=MatchAny(list(words))))
        return EdgeFilter(should=should)
    if isinstance(value, Range):
        kind: Any = RangeDateTime if value.datetimes else RangeFloat
        bounds = kind(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
        return FieldCondition(key, range=bounds)
    if isinstance(value, list):
        return FieldCondition(key, match=MatchAny(value))
    if isinstance(value, bool):
        # qdrant-edge 0.9 reads a Python bool as the integer 1 or 0 (bool subclasses int),
        # which matches no boolean payload value; numpy's bool is read as a bool.
        return FieldCondition(key, match=MatchValue(np.bool_(value)))  # type: ignore[arg-type]
    return FieldCondition(key, match=MatchValue(value))


def _edge_query(query: SimilarityQuery) -> Any:
    if isinstance(query, Recommend):
        recommend = RecommendQuery(
            [v.tolist() for v in query.positive], [v.tolist() for v in query.negative]
        )
        if query.strategy == "sum_scores":
            return Query.RecommendSumScores(recommend, using=VECTOR_NAME)
        return Query.RecommendBestScore(recommend, using=VECTOR_NAME)
    if isinstance(query, Discover):
        pairs = [ContextPair(p.tolist(), n.tolist()) for p, n in query.context]
        return Query.Discover(DiscoverQuery(query.target.tolist(), pairs), using=VECTOR_NAME)
    if isinstance(query, Diverse):
        # qdrant-edge's lambda weighs relevance; the server's `diversity` is 1 - lambda.
        return EdgeMmr(
            query.vector.tolist(), 1.0 - query.diversity, query.candidates, using=VECTOR_NAME
        )
    return Query.Nearest(query.tolist(), using=VECTOR_NAME)


def _edge_keys_condition(key: str, values: list[str | int]) -> list[Any]:
    """Conditions matching any of ``values`` at ``key``: one per value type, as MatchAny
    takes only strings or only integers."""
    strings = [v for v in values if isinstance(v, str)]
    integers = [v for v in values if isinstance(v, int)]
    return [FieldCondition(key, match=MatchAny(vs)) for vs in (strings, integers) if vs]


def _read_vector(vectors: Any) -> np.ndarray | None:
    if isinstance(vectors, dict):
        vectors = vectors.get(VECTOR_NAME)
    if vectors is None:
        return None
    return np.asarray(vectors, dtype=np.float32)


# --------------------------------------------------------------------------- qdrant-client


class ClientStore(VectorStore):
    """A collection on a Qdrant server (or in qdrant-client's local mode) via qdrant-client.

    The store owns ``client`` and closes it. Thread-safe as far as qdrant-client is: its
    HTTP client is.

    With ``initial_label`` (what :func:`open_store` gives), a new catalog is created as the
    collection ``<collection>__<label>__1`` behind the alias ``<collection>``. Every call
    uses the alias, which the server resolves, so a switch made by one process is seen by
    all at once.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        initial_label: str | None = None,
        datatype: str = "float32",
        schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA,
        _is_view: bool = False,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> None:
        if not _COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self._client = client
        self._initial_label = initial_label
        self.vector_datatype = _checked_datatype(datatype)
        self.schema = schema
        # A Qdrant cluster spreads the collection's shards over its nodes and keeps
        # `replication_factor` copies of each (LOOKALIKE_QDRANT_SHARDS, _REPLICATION_FACTOR).
        self._shard_number = shard_number
        self._replication_factor = replication_factor
        # A version view borrows its catalog store's client.
        self._is_view = _is_view

    def close(self) -> None:
        if self._is_view:
            return
        with _client_errors():
            self._client.close()

    def _ensure_collection(self, dim: int) -> None:
        from qdrant_client import models

        client, name = self._client, self.collection
        new_alias = False
        if self._initial_label and not self._is_view:
            active = self._alias_targets().get("active")
            if active is None:
                name, new_alias = version_name(name, self._initial_label, 1), True
            else:
                name = active
        with _client_errors():
            exists = client.collection_exists(name)
        if not exists:
            try:
                with _client_errors():
                    client.create_collection(
                        name,
                        vectors_config={
                            VECTOR_NAME: models.VectorParams(
                                size=dim,
                                distance=models.Distance.COSINE,
                                # qdrant-client's local mode (tests) ignores it.
                                datatype=models.Datatype(self.vector_datatype),
                            )
                        },
                        shard_number=self._shard_number,
                        replication_factor=self._replication_factor,
                    )
            except StoreUnavailable:
                raise
            except StoreError:
                # Another process may have created it between our check and our create.
                with _client_errors():
                    if not client.collection_exists(name):
                        raise
        with _client_errors():
            info = client.get_collection(name)
        vectors = info.config.params.vectors
        params = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
        if params is None or params.size != dim or params.distance != models.Distance.COSINE:
            raise StoreError(
                f"collection {name!r} exists with another vector configuration: {vectors!r}, "
                f"not {VECTOR_NAME!r}: {dim}-d cosine"
            )
        indexed = {
            path: _CLIENT_INDEX_NAMES.get(kind, kind)
            for path, index in (info.payload_schema or {}).items()
            for kind in [str(getattr(index.data_type, "value", index.data_type))]
        }
        wanted = self.schema.payload_indexes()
        _check_index_types(name, indexed, wanted)
        with warnings.catch_warnings(), _client_errors():
            # Local mode warns that it ignores payload indexes; the server needs them.
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for field_name, kind in wanted.items():
                if field_name not in indexed:
                    client.create_payload_index(
                        name, field_name, _client_index_type(kind), wait=True
                    )
        if new_alias and "active" not in self._alias_targets():
            self._set_alias_targets({"active": name})

    def _alias_map(self) -> dict[str, str]:
        with _client_errors():
            described = self._client.get_aliases().aliases
        return {a.alias_name: a.collection_name for a in described}

    def _alias_targets(self) -> dict[str, str]:
        if self._is_view:
            return {}
        by_alias = self._alias_map()
        targets = {
            role: by_alias[alias_name(self.collection, role)]
            for role in ALIAS_ROLES
            if alias_name(self.collection, role) in by_alias
        }
        if "active" not in targets:
            with _client_errors():
                if self._client.collection_exists(self.collection):
                    targets["active"] = self.collection  # a catalog created before versions
        return targets

    def _version_names(self) -> list[str]:
        with _client_errors():
            return [c.name for c in self._client.get_collections().collections]

    def _version_view(self, name: str) -> VectorStore:
        return ClientStore(
            self._client,
            name,
            datatype=self.vector_datatype,
            schema=self.schema,
            _is_view=True,
            shard_number=self._shard_number,
            replication_factor=self._replication_factor,
        )

    def _set_alias_targets(self, changes: dict[str, str | None]) -> None:
        from qdrant_client import models

        existing = self._alias_map()
        if "active" in changes and self.collection not in existing:
            with _client_errors():
                if self._client.collection_exists(self.collection):
                    raise StoreError(
                        f"{self.collection!r} is a plain collection, created before versions; "
                        "a Qdrant server cannot put an alias of the same name over it. Create "
                        "the catalog anew (or rename it) to reindex without downtime"
                    )
        operations: list[Any] = []
        for role, target in changes.items():
            alias = alias_name(self.collection, role)
            if alias in existing:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            if target is not None:
                operations.append(
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
                    )
                )
        if operations:
            # One request: the server applies the whole list atomically.
            with _client_errors():
                self._client.update_collection_aliases(change_aliases_operations=operations)

    def _drop_version(self, name: str) -> None:
        with _client_errors():
            self._client.delete_collection(name)

    def _upsert(self, points: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> None:
        from qdrant_client import models

        batch = [
            models.PointStruct(id=pid, vector={VECTOR_NAME: vector.tolist()}, payload=payload)
            for pid, (vector, payload) in points.items()
        ]
        with _client_errors():
            self._client.upsert(self.collection, points=batch, wait=True)

    def _retrieve(self, ids: list[str], with_vectors: bool) -> list[StoredItem]:
        with _client_errors():
            records = self._client.retrieve(
                self.collection, list(ids), with_payload=True, with_vectors=with_vectors
            )
        return [
            StoredItem(
                point_id=str(record.id),
                payload=dict(record.payload or {}),
                vector=_read_vector(record.vector) if with_vectors else None,
            )
            for record in records
        ]

    def _delete(self, ids: list[str]) -> None:
        from qdrant_client import models

        selector = models.PointIdsList(points=list(ids))
        with _client_errors():
            self._client.delete(self.collection, points_selector=selector, wait=True)

    def _set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        with _client_errors():
            self._client.set_payload(self.collection, payload, points=[point_id], wait=True)

    def _search(
        self,
        vector: np.ndarray,
        limit: int,
        conditions: list[_Condition],
        exclude_ids: list[str],
        offset: int,
        score_threshold: float | None,
        with_internal: bool,
    ) -> list[Hit]:
        with _client_errors():
            response = self._client.query_points(
                self.collection,
                query=vector.tolist(),
                using=VECTOR_NAME,
                query_filter=_client_filter(conditions, exclude_ids),
                limit=limit,
                offset=offset,
                score_threshold=score_threshold,
                with_payload=True if with_internal else _client_brief(),
                with_vectors=False,
            )
        return [
            Hit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in response.points
        ]

    def _scroll(
        self, limit: int, offset: str | None, conditions: list[_Condition]
    ) -> tuple[list[StoredItem], str | None]:
        with _client_errors():
            records, next_offset = self._client.scroll(
                self.collection,
                scroll_filter=_client_filter(conditions, []),
                limit=limit,
                offset=offset,
                with_payload=_client_brief(),
                with_vectors=False,
            )
        items = [StoredItem(str(r.id), dict(r.payload or {})) for r in records]
        return items, None if next_offset is None else str(next_offset)

    def _scroll_ordered(
        self,
        limit: int,
        key: str,
        start: str | None,
        exclude: list[str],
        conditions: list[_Condition],
    ) -> list[StoredItem]:
        from qdrant_client import models

        begin = datetime.fromisoformat(start) if start is not None else None
        order = models.OrderBy(key=key, direction=models.Direction.DESC, start_from=begin)
        with _client_errors():
            records, _ = self._client.scroll(
                self.collection,
                scroll_filter=_client_filter(conditions, exclude),
                limit=limit,
                order_by=order,
                with_payload=_client_brief(),
                with_vectors=False,
            )
        return [StoredItem(str(r.id), dict(r.payload or {})) for r in records]

    def _count(self, conditions: list[_Condition]) -> int:
        with _client_errors():
            result = self._client.count(
                self.collection, count_filter=_client_filter(conditions, []), exact=True
            )
        return result.count

    def _query_batch(self, requests: list[_Request]) -> list[list[Hit]]:
        from qdrant_client import models

        batch = [
            models.QueryRequest(
                query=_client_query(r.query),
                using=VECTOR_NAME,
                filter=_client_filter(r.conditions, r.exclude_ids),
                limit=r.limit,
                offset=r.offset,
                score_threshold=r.score_threshold,
                with_payload=_client_brief(),
                with_vector=False,
            )
            for r in requests
        ]
        with _client_errors():
            responses = self._client.query_batch_points(self.collection, requests=batch)
        return [[_client_hit(p) for p in response.points] for response in responses]

    def _query_groups(self, request: _Request, group_by: str, group_size: int) -> list[Group]:
        with _client_errors():
            result = self._client.query_points_groups(
                self.collection,
                group_by=group_by,
                query=_client_query(request.query),
                using=VECTOR_NAME,
                query_filter=_client_filter(request.conditions, request.exclude_ids),
                limit=request.limit,
                group_size=group_size,
                score_threshold=request.score_threshold,
                with_payload=_client_brief(),
                with_vectors=False,
            )
        return [Group(group.id, [_client_hit(p) for p in group.hits]) for group in result.groups]

    def _facet(self, key: str, conditions: list[_Condition], limit: int) -> list[Facet]:
        with _client_errors():
            response = self._client.facet(
                self.collection,
                key,
                facet_filter=_client_filter(conditions, []),
                limit=limit,
                exact=True,
            )
        return [Facet(hit.value, int(hit.count)) for hit in response.hits]


def _client_brief() -> qm.PayloadSelectorExclude:
    """The payload a hit or a scrolled point carries: all but the internal fields."""
    from qdrant_client import models

    return models.PayloadSelectorExclude(exclude=list(INTERNAL_FIELDS))


def _client_hit(point: qm.ScoredPoint) -> Hit:
    return Hit(point_id=str(point.id), score=float(point.score), payload=dict(point.payload or {}))


def _client_query(query: SimilarityQuery) -> Any:
    from qdrant_client import models

    if isinstance(query, Recommend):
        strategy = (
            models.RecommendStrategy.SUM_SCORES
            if query.strategy == "sum_scores"
            else models.RecommendStrategy.BEST_SCORE
        )
        return models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[v.tolist() for v in query.positive],
                negative=[v.tolist() for v in query.negative],
                strategy=strategy,
            )
        )
    if isinstance(query, Discover):
        pairs = [
            models.ContextPair(positive=p.tolist(), negative=n.tolist()) for p, n in query.context
        ]
        return models.DiscoverQuery(
            discover=models.DiscoverInput(target=query.target.tolist(), context=pairs)
        )
    if isinstance(query, Diverse):
        mmr = models.Mmr(diversity=query.diversity, candidates_limit=query.candidates)
        return models.NearestQuery(nearest=query.vector.tolist(), mmr=mmr)
    return query.tolist()


# The server names a text index "text" whatever its tokenizer; ours is the only one we create.
_CLIENT_INDEX_NAMES = {"text": TEXT_INDEX}


def _client_index_type(kind: str) -> qm.PayloadSchemaType | qm.TextIndexParams:
    from qdrant_client import models

    if kind == TEXT_INDEX:
        return models.TextIndexParams(
            type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.PREFIX, lowercase=True
        )
    types = {
        "keyword": models.PayloadSchemaType.KEYWORD,
        "integer": models.PayloadSchemaType.INTEGER,
        "float": models.PayloadSchemaType.FLOAT,
        "bool": models.PayloadSchemaType.BOOL,
        "datetime": models.PayloadSchemaType.DATETIME,
    }
    if kind not in types:
        raise StoreError(f"unknown payload index type {kind!r}")
    return types[kind]


NEWEST_KEY = "ingested_at"


def _encode_newest_cursor(at: str, seen: list[str]) -> str:
    raw = json.dumps({"at": at, "seen": seen}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_newest_cursor(cursor: str | None) -> tuple[str | None, list[str]]:
    if not cursor:
        return None, []
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
        at, seen = body["at"], body["seen"]
        if not isinstance(at, str) or not all(isinstance(i, str) for i in seen):
            raise TypeError("not a newest-first cursor")
        return at, [_canonical_id(i) for i in seen]
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"not a valid cursor: {exc}") from exc


def _client_filter(conditions: list[_Condition], exclude_ids: list[str]) -> qm.Filter | None:
    from qdrant_client import models

    if not conditions and not exclude_ids:
        return None
    must: list[models.Condition] = []
    for key, value in conditions:
        if isinstance(value, TextMatch):
            should: list[models.Condition] = [
                models.FieldCondition(key=f, match=models.MatchText(text=value.text))
                for f in (key, *value.also)
            ]
            if value.keywords is not None:
                path, words = value.keywords
                should.append(
                    models.FieldCondition(key=path, match=models.MatchAny(any=list(words)))
                )
            must.append(models.Filter(should=should))
        elif isinstance(value, Range):
            kind: Any = models.DatetimeRange if value.datetimes else models.Range
            bounds = kind(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
            must.append(models.FieldCondition(key=key, range=bounds))
        elif isinstance(value, list):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    must_not: list[models.Condition] = (
        [models.HasIdCondition(has_id=list(exclude_ids))] if exclude_ids else []
    )
    return models.Filter(must=must or None, must_not=must_not or None)


# Statuses worth retrying: the server timed out, throttles, or is failing.
_TRANSIENT_STATUSES = frozenset({408, 429})


@contextmanager
def _client_errors() -> Iterator[None]:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except StoreError:
        raise
    except UnexpectedResponse as exc:
        status = exc.status_code
        detail = exc.content[:500].decode("utf-8", "replace")
        if status is None or status >= 500 or status in _TRANSIENT_STATUSES:
            raise StoreUnavailable(f"Qdrant server answered {status}: {detail}") from exc
        raise StoreError(f"Qdrant server refused the request ({status}): {detail}") from exc
    except (ResponseHandlingException, httpx.TransportError, OSError) as exc:
        # qdrant-client wraps connection errors and timeouts in ResponseHandlingException.
        cause = getattr(exc, "source", exc)
        raise StoreUnavailable(f"Qdrant server unreachable: {cause!r}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        # Local mode reports bad requests (unknown collection, wrong vector size, missing
        # point) as plain Python errors.
        raise StoreError(f"qdrant-client: {exc}") from exc
