"""The embedded default backend: qdrant-edge's in-process engine (:class:`EdgeStore`) and
its converters from the store's types to qdrant-edge's."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    MatchAny,
    MatchText,
    MatchValue,
    Memory,
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
from lookalike.store.base import VectorStore, check_index_types, checked_datatype, read_vector
from lookalike.store.edge_shards import (
    EDGE_DATATYPES,
    EDGE_HNSW,
    EDGE_INDEX_NAMES,
    EDGE_INDEX_TYPES,
    EDGE_SEARCH_THREADS,
    ShardPool,
)
from lookalike.store.types import (
    ALIAS_ROLES,
    Condition,
    ConditionValue,
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
from lookalike.store.validation import group_keys
from lookalike.store.versions import COLLECTION_NAME_RE, version_name

# The payload a hit or a scrolled point carries: all but the internal fields.
EDGE_BRIEF = PayloadSelector.Exclude(list(INTERNAL_FIELDS))


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
        _pool: ShardPool | None = None,
    ) -> None:
        if not COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self.root = Path(path)
        self._initial_label = initial_label
        self.vector_datatype = checked_datatype(datatype)
        self.schema = schema
        # A version view shares its catalog store's pool and is bound to one directory.
        self._is_view = _pool is not None
        self._pool = _pool or ShardPool(index_after_idle_s)
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
                    config = edge_config(dim, self.vector_datatype)
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
                vector=read_vector(record.vector) if with_vectors else None,
            )
            for record in records
        ]

    def _delete(self, ids: list[str]) -> None:
        with self._errors():
            self._open().update(UpdateOperation.delete_points(list(ids)))

    def _set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        with self._errors():
            self._open().update(UpdateOperation.set_payload([point_id], payload))

    def _scroll(
        self, limit: int, offset: str | None, conditions: list[Condition]
    ) -> tuple[list[StoredItem], str | None]:
        request = ScrollRequest(
            offset=offset,
            limit=limit,
            filter=_edge_filter(conditions, []),
            with_payload=EDGE_BRIEF,
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
        conditions: list[Condition],
    ) -> list[StoredItem]:
        request = ScrollRequest(
            limit=limit,
            filter=_edge_filter(conditions, exclude),
            with_payload=EDGE_BRIEF,
            with_vector=False,
            order_by=EdgeOrderBy(key, EdgeDirection.Desc, start_from=start),
        )
        with self._errors():
            records, _ = self._open().scroll(request)
        return [StoredItem(str(r.id), dict(r.payload or {})) for r in records]

    def _count(self, conditions: list[Condition]) -> int:
        request = CountRequest(exact=True, filter=_edge_filter(conditions, []))
        with self._errors():
            return self._open().count(request)

    def _query_batch(self, requests: list[Request]) -> list[list[Hit]]:
        edge_requests = [
            QueryRequest(
                limit=r.limit,
                offset=r.offset,
                query=_edge_query(r.query),
                filter=_edge_filter(r.conditions, r.exclude_ids),
                with_payload=True if r.with_internal else EDGE_BRIEF,
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

    def _query_groups(self, request: Request, group_by: str, group_size: int) -> list[Group]:
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
                with_payload=EDGE_BRIEF,
                with_vector=False,
                score_threshold=request.score_threshold,
            )
            with self._errors():
                points = self._open().query(edge_request)
            for p in points:
                hit = Hit(point_id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
                seen.append(hit.point_id)
                for key in group_keys(hit.payload, group_by):
                    if key not in groups:
                        if len(groups) >= request.limit:
                            continue
                        groups[key] = []
                    if len(groups[key]) < group_size:
                        groups[key].append(hit)
            if len(points) < batch:
                break
        return [Group(key, hits) for key, hits in groups.items()]

    def _facet(self, key: str, conditions: list[Condition], limit: int) -> list[Facet]:
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
                return EdgeShard.load(str(self.path), edge_config(dim, other))
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
            name: EDGE_INDEX_NAMES.get(info.data_type, str(info.data_type))
            for name, info in shard.info().payload_schema.items()
        }
        wanted = self.schema.payload_indexes()
        check_index_types(self.collection, existing, wanted)
        for field_name, kind in wanted.items():
            if field_name not in existing:
                params: Any = EDGE_INDEX_TYPES[kind]
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


def edge_config(dim: int, datatype: str, quantization: Any = None) -> EdgeConfig:
    # ``quantization``: for benchmarks/vector_storage.py, which measured int8 and rejected it.
    return EdgeConfig(
        vectors={
            VECTOR_NAME: EdgeVectorParams(
                size=dim,
                distance=Distance.Cosine,
                memory=Memory.Cached,
                datatype=EDGE_DATATYPES[datatype],
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


def _edge_filter(conditions: list[Condition], exclude_ids: list[str]) -> EdgeFilter | None:
    if not conditions and not exclude_ids:
        return None
    must: list[Any] = [_edge_condition(key, value) for key, value in conditions]
    must_not: list[Any] = [HasIdCondition(set(exclude_ids))] if exclude_ids else []
    return EdgeFilter(must=must or None, must_not=must_not or None)


def _edge_condition(key: str, value: ConditionValue) -> Any:
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
