"""The interface both backends implement (:class:`VectorStore`): argument checks and the
version/alias logic live here, each backend supplies the ``_``-prefixed primitives."""

from __future__ import annotations

import base64
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from lookalike.schema import (
    TEXT_INDEX,
    VECTOR_NAME,
)
from lookalike.settings import VECTOR_DATATYPES
from lookalike.store.types import (
    KEEP,
    Aliases,
    Condition,
    Diverse,
    Facet,
    Group,
    Hit,
    Keep,
    Request,
    Search,
    SimilarityQuery,
    StoredItem,
    StoreError,
    Version,
    Where,
)
from lookalike.store.validation import (
    as_vector,
    canonical_id,
    canonical_ids,
    check_limit,
    parse_search,
    parse_where,
)
from lookalike.store.versions import LABEL_RE, parse_version, version_name


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
            points[canonical_id(item.point_id)] = (as_vector(item.vector), dict(item.payload))
        if points:
            self._upsert(points)

    def retrieve(self, point_ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredItem]:
        """The stored points among ``point_ids``, in request order; missing ids are absent."""
        ids = canonical_ids(point_ids)
        if not ids:
            return []
        found = {item.point_id: item for item in self._retrieve(ids, with_vectors)}
        return [found[pid] for pid in ids if pid in found]

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points; ids that are not stored are ignored."""
        ids = canonical_ids(point_ids)
        if ids:
            self._delete(ids)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Merge ``payload`` into a point's payload; the vector is untouched.

        Top-level keys are merged: a key given here replaces the stored value whole, nested
        dicts included. Raises :class:`StoreError` if the point does not exist.
        """
        self._set_payload(canonical_id(point_id), dict(payload))

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
        search = Search(vector, limit, where, exclude_ids, offset, score_threshold)
        request = dataclasses.replace(parse_search(search), with_internal=with_internal)
        return self._query_batch([request])[0]

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
        return self._query_batch([parse_search(search)])[0]

    def query_batch(self, searches: Sequence[Search]) -> list[list[Hit]]:
        """Run several queries in one call (one planned batch); one list of hits per query."""
        requests = [parse_search(search) for search in searches]
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
        check_limit(group_size, "group_size")
        request = parse_search(Search(query, limit, where, exclude_ids, 0, score_threshold))
        if isinstance(request.query, Diverse):
            raise StoreError("a diversity (MMR) query cannot be grouped")
        return self._query_groups(request, group_by, group_size)

    def facet(self, key: str, *, where: Where | None = None, limit: int = 100) -> list[Facet]:
        """The most frequent values of the payload field ``key`` among the points matching
        ``where``, with their exact counts, most frequent first (the field needs an index)."""
        if not isinstance(key, str) or not key:
            raise StoreError(f"facet key must be a payload field path, not {key!r}")
        check_limit(limit)
        facets = self._facet(key, parse_where(where), limit)
        return sorted(facets, key=lambda f: (-f.count, str(f.value)))

    def scroll(
        self, *, limit: int, offset: str | None = None, where: Where | None = None
    ) -> tuple[list[StoredItem], str | None]:
        """One page of points (without vectors) in id order, and the offset of the next page.

        Start with ``offset=None``; the next offset is ``None`` after the last page.
        """
        check_limit(limit)
        start = None if offset is None else canonical_id(offset)
        return self._scroll(limit, start, parse_where(where))

    def scroll_newest(
        self, *, limit: int, cursor: str | None = None, where: Where | None = None
    ) -> tuple[list[StoredItem], str | None]:
        """One page of points, the most recently ingested first (``ingested_at``, which has a
        range index for this), and the cursor of the next page (``None`` after the last).

        Items ingested in one batch share their time, so a cursor is that time plus the ids
        of the page's items that have it: the next page starts at the time, without them.
        """
        check_limit(limit)
        at, seen = _decode_newest_cursor(cursor)
        items = self._scroll_ordered(limit + 1, NEWEST_KEY, at, seen, parse_where(where))
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        last = str(items[-1].payload.get(NEWEST_KEY))
        same = [i.point_id for i in items if str(i.payload.get(NEWEST_KEY)) == last]
        return items, _encode_newest_cursor(last, (seen if last == at else []) + same)

    def count(self, where: Where | None = None) -> int:
        """The exact number of points matching ``where`` (all points without it)."""
        return self._count(parse_where(where))

    # ------------------------------------------------------------ versions and aliases

    def aliases(self) -> Aliases:
        """The versions named by the catalog's aliases (``active`` is None before the first
        :meth:`ensure_collection`)."""
        targets = self._alias_targets()
        found = {v.name: v for v in self.versions()}
        # A name that is no version of this catalog (a hand-made alias) is reported as such.
        named = {
            role: found.get(name) or parse_version(self.collection, name) or Version(name, "", -1)
            for role, name in targets.items()
        }
        return Aliases(**{"active": None, **named})

    def versions(self) -> list[Version]:
        """Every version of the catalog that exists, oldest first."""
        parsed = (parse_version(self.collection, name) for name in self._version_names())
        return sorted((v for v in parsed if v is not None), key=lambda v: (v.number, v.name))

    def create_version(self, label: str, dim: int) -> Version:
        """Create an empty version ``<catalog>__<label>__<n+1>``; no alias names it yet."""
        if not LABEL_RE.match(label):
            raise StoreError(f"version label {label!r} may hold only letters, digits and '-'")
        number = max((v.number for v in self.versions()), default=0) + 1
        version = Version(version_name(self.collection, label, number), label, number)
        self.version(version.name).ensure_collection(dim)
        return version

    def version(self, name: str) -> VectorStore:
        """A store bound to one version (what a reindex writes into), sharing this store's
        connection or shards; closing it does nothing, closing this store closes both."""
        if parse_version(self.collection, name) is None:
            raise StoreError(f"{name!r} is not a version of the catalog {self.collection!r}")
        return self._version_view(name)

    def set_aliases(
        self,
        *,
        active: str | Keep = KEEP,
        previous: str | Keep | None = KEEP,
        next: str | Keep | None = KEEP,
    ) -> Aliases:
        """Point aliases at versions (None removes one), all at once: a reader sees either the
        old or the new set, never a mix."""
        current = self._alias_targets()
        existing = {v.name for v in self.versions()}
        changes: dict[str, str | None] = {}
        for role, value in (("active", active), ("previous", previous), ("next", next)):
            if isinstance(value, Keep) or current.get(role) == value:
                continue
            if value is not None and value not in existing:
                raise StoreError(f"cannot point {role!r} at {value!r}: no such version")
            changes[role] = value
        if changes:
            self._set_alias_targets(changes)
        return self.aliases()

    def drop_version(self, name: str) -> None:
        """Delete a version and its points; an aliased version cannot be dropped."""
        if parse_version(self.collection, name) is None:
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
    def _scroll(
        self, limit: int, offset: str | None, conditions: list[Condition]
    ) -> tuple[list[StoredItem], str | None]: ...

    @abstractmethod
    def _scroll_ordered(
        self,
        limit: int,
        key: str,
        start: str | None,
        exclude: list[str],
        conditions: list[Condition],
    ) -> list[StoredItem]:
        """Up to ``limit`` points by ``key`` descending, from ``start`` (inclusive) down."""

    @abstractmethod
    def _count(self, conditions: list[Condition]) -> int: ...

    @abstractmethod
    def _query_batch(self, requests: list[Request]) -> list[list[Hit]]: ...

    @abstractmethod
    def _query_groups(self, request: Request, group_by: str, group_size: int) -> list[Group]: ...

    @abstractmethod
    def _facet(self, key: str, conditions: list[Condition], limit: int) -> list[Facet]: ...


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


def check_index_types(
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
def checked_datatype(datatype: str) -> str:
    if datatype not in VECTOR_DATATYPES:
        raise StoreError(
            f"vector datatype {datatype!r} is not one of {', '.join(VECTOR_DATATYPES)}"
        )
    return datatype


def read_vector(vectors: Any) -> np.ndarray | None:
    if isinstance(vectors, dict):
        vectors = vectors.get(VECTOR_NAME)
    if vectors is None:
        return None
    return np.asarray(vectors, dtype=np.float32)


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
        return at, [canonical_id(i) for i in seen]
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"not a valid cursor: {exc}") from exc
