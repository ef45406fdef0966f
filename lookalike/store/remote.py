"""The remote backend: a Qdrant server through qdrant-client (:class:`ClientStore`; also
qdrant-client's local ``":memory:"`` mode in tests) and its converters."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    INTERNAL_FIELDS,
    TEXT_INDEX,
    VECTOR_NAME,
    CatalogSchema,
)
from lookalike.store.base import VectorStore, check_index_types, checked_datatype, read_vector
from lookalike.store.types import (
    ALIAS_ROLES,
    Condition,
    Discover,
    Diverse,
    Facet,
    Group,
    Hit,
    Range,
    Recommend,
    Request,
    SimilarityQuery,
    StoredItem,
    StoreError,
    StoreUnavailable,
    TextMatch,
)
from lookalike.store.versions import COLLECTION_NAME_RE, alias_name, version_name

if TYPE_CHECKING:
    # qdrant-client takes about a second to import; the embedded default never needs it.
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm


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
        if not COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self._client = client
        self._initial_label = initial_label
        self.vector_datatype = checked_datatype(datatype)
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
        check_index_types(name, indexed, wanted)
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
                vector=read_vector(record.vector) if with_vectors else None,
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

    def _scroll(
        self, limit: int, offset: str | None, conditions: list[Condition]
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
        conditions: list[Condition],
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

    def _count(self, conditions: list[Condition]) -> int:
        with _client_errors():
            result = self._client.count(
                self.collection, count_filter=_client_filter(conditions, []), exact=True
            )
        return result.count

    def _query_batch(self, requests: list[Request]) -> list[list[Hit]]:
        from qdrant_client import models

        batch = [
            models.QueryRequest(
                query=_client_query(r.query),
                using=VECTOR_NAME,
                filter=_client_filter(r.conditions, r.exclude_ids),
                limit=r.limit,
                offset=r.offset,
                score_threshold=r.score_threshold,
                with_payload=True if r.with_internal else _client_brief(),
                with_vector=False,
            )
            for r in requests
        ]
        with _client_errors():
            responses = self._client.query_batch_points(self.collection, requests=batch)
        return [[_client_hit(p) for p in response.points] for response in responses]

    def _query_groups(self, request: Request, group_by: str, group_size: int) -> list[Group]:
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

    def _facet(self, key: str, conditions: list[Condition], limit: int) -> list[Facet]:
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


def _client_filter(conditions: list[Condition], exclude_ids: list[str]) -> qm.Filter | None:
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
