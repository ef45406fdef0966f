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
"""

from __future__ import annotations

import re
import threading
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    HasIdCondition,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    UpdateOperation,
)
from qdrant_edge import Filter as EdgeFilter

from lookalike.schema import PAYLOAD_INDEXES, VECTOR_NAME

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
    """A numeric range condition for :data:`Where`; at least one bound is required."""

    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None


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
_Value: TypeAlias = str | int | bool | list[str] | list[int] | Range
_Condition: TypeAlias = tuple[str, _Value]


class StoreError(Exception):
    """A permanent failure: bad request, dimension mismatch, missing collection or point."""


class StoreUnavailable(StoreError):
    """A transient failure: server unreachable or overloaded, embedded shard locked. Retry."""


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
    ) -> list[Hit]:
        """The ``limit`` points most similar to ``vector``, best first, after ``offset``.

        ``where`` is applied inside the ANN search, so a selective filter still returns
        ``limit`` hits when that many match. ``score_threshold`` drops hits below that
        cosine similarity.
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
        )

    def scroll(
        self, *, limit: int, offset: str | None = None, where: Where | None = None
    ) -> tuple[list[StoredItem], str | None]:
        """One page of points (without vectors) in id order, and the offset of the next page.

        Start with ``offset=None``; the next offset is ``None`` after the last page.
        """
        _check_limit(limit)
        start = None if offset is None else _canonical_id(offset)
        return self._scroll(limit, start, _parse_where(where))

    def count(self, where: Where | None = None) -> int:
        """The exact number of points matching ``where`` (all points without it)."""
        return self._count(_parse_where(where))

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
    ) -> list[Hit]: ...

    @abstractmethod
    def _scroll(
        self, limit: int, offset: str | None, conditions: list[_Condition]
    ) -> tuple[list[StoredItem], str | None]: ...

    @abstractmethod
    def _count(self, conditions: list[_Condition]) -> int: ...


def open_store(settings: Settings) -> VectorStore:
    """The store ``settings`` asks for; nothing is opened or created until first use."""
    if not settings.qdrant_url:
        return EdgeStore(settings.qdrant_path, settings.collection)
    from qdrant_client import QdrantClient

    if settings.qdrant_url == ":memory:":
        return ClientStore(QdrantClient(":memory:"), settings.collection)
    client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    return ClientStore(client, settings.collection)


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


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StoreError(f"limit must be a positive integer, not {limit!r}")


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
    if isinstance(value, Range):
        bounds = (value.gte, value.lte, value.gt, value.lt)
        if all(bound is None for bound in bounds):
            raise StoreError(f"filter on {key!r}: a Range needs at least one bound")
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


# --------------------------------------------------------------------------- qdrant-edge

_EDGE_INDEX_TYPES = {
    "keyword": PayloadSchemaType.Keyword,
    "integer": PayloadSchemaType.Integer,
    "float": PayloadSchemaType.Float,
    "bool": PayloadSchemaType.Bool,
    "datetime": PayloadSchemaType.Datetime,
}


class EdgeStore(VectorStore):
    """The embedded default: a qdrant-edge shard in ``path / collection``.

    Thread-safe: one instance is shared by the API's request threads and the in-process
    worker. An ``EdgeShard`` is internally synchronized (pyo3 requires the type to be
    ``Sync``; 4 writers, 4 readers and periodic flushes on one shard ran without error or
    lost points, and a close() under load only made in-flight calls fail cleanly), so data
    calls run concurrently; only opening and closing take ``_lock``.

    The shard's write-ahead log holds a file lock: a second process (or a second store on
    the same directory) gets :class:`StoreUnavailable` until the first closes.
    """

    def __init__(self, path: Path | str, collection: str) -> None:
        if not _COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self.path = Path(path) / collection
        self._lock = threading.Lock()
        self._shard: EdgeShard | None = None
        self._dim: int | None = None
        self._closed = False

    def close(self) -> None:
        with self._lock:
            shard, self._shard, self._closed = self._shard, None, True
            if shard is None:
                return
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
                shard = self._shard
                if shard is None:
                    config = EdgeConfig(
                        vectors={VECTOR_NAME: EdgeVectorParams(size=dim, distance=Distance.Cosine)}
                    )
                    if self._exists():
                        # With a config, load() checks it against the stored segments.
                        shard = self._load(config)
                    else:
                        shard = EdgeShard.create(str(self.path), config)
                    self._shard = shard
                else:
                    self._check_dim(shard, dim)
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
    ) -> list[Hit]:
        request = QueryRequest(
            limit=limit,
            offset=offset,
            query=Query.Nearest(vector.tolist(), using=VECTOR_NAME),
            filter=_edge_filter(conditions, exclude_ids),
            with_payload=True,
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
            with_payload=True,
            with_vector=False,
        )
        with self._errors():
            records, next_offset = self._open().scroll(request)
        items = [StoredItem(str(r.id), dict(r.payload or {})) for r in records]
        return items, None if next_offset is None else str(next_offset)

    def _count(self, conditions: list[_Condition]) -> int:
        request = CountRequest(exact=True, filter=_edge_filter(conditions, []))
        with self._errors():
            return self._open().count(request)

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
                self._shard = self._load(None)
            return self._shard

    def _load(self, config: EdgeConfig | None) -> EdgeShard:
        try:
            return EdgeShard.load(str(self.path), config)
        except Exception as exc:
            if "incompatible" in str(exc):
                raise StoreError(
                    f"collection {self.collection!r} exists with another vector configuration: "
                    f"{exc}"
                ) from exc
            raise

    def _exists(self) -> bool:
        segments = self.path / "segments"
        return (self.path / "edge_config.json").exists() or (
            segments.is_dir() and any(segments.iterdir())
        )

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
        existing = {name: info.data_type for name, info in shard.info().payload_schema.items()}
        for field_name, kind in PAYLOAD_INDEXES.items():
            wanted = _EDGE_INDEX_TYPES.get(kind)
            if wanted is None:
                raise StoreError(f"unknown payload index type {kind!r} for {field_name!r}")
            if existing.get(field_name) != wanted:
                shard.update(UpdateOperation.create_field_index(field_name, wanted))

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


def _edge_filter(conditions: list[_Condition], exclude_ids: list[str]) -> EdgeFilter | None:
    if not conditions and not exclude_ids:
        return None
    must: list[Any] = [_edge_condition(key, value) for key, value in conditions]
    must_not: list[Any] = [HasIdCondition(set(exclude_ids))] if exclude_ids else []
    return EdgeFilter(must=must or None, must_not=must_not or None)


def _edge_condition(key: str, value: _Value) -> Any:
    if isinstance(value, Range):
        bounds = RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
        return FieldCondition(key, range=bounds)
    if isinstance(value, list):
        return FieldCondition(key, match=MatchAny(value))
    if isinstance(value, bool):
        # qdrant-edge 0.9 reads a Python bool as the integer 1 or 0 (bool subclasses int),
        # which matches no boolean payload value; numpy's bool is read as a bool.
        return FieldCondition(key, match=MatchValue(np.bool_(value)))  # type: ignore[arg-type]
    return FieldCondition(key, match=MatchValue(value))


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
    """

    def __init__(self, client: QdrantClient, collection: str) -> None:
        if not _COLLECTION_NAME_RE.match(collection):
            raise StoreError(
                f"collection name {collection!r} may hold only letters, digits, '_' and '-'"
            )
        self.collection = collection
        self._client = client

    def close(self) -> None:
        with _client_errors():
            self._client.close()

    def _ensure_collection(self, dim: int) -> None:
        from qdrant_client import models

        client, name = self._client, self.collection
        with _client_errors():
            exists = client.collection_exists(name)
        if not exists:
            try:
                with _client_errors():
                    client.create_collection(
                        name,
                        vectors_config={
                            VECTOR_NAME: models.VectorParams(
                                size=dim, distance=models.Distance.COSINE
                            )
                        },
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
        indexed = info.payload_schema or {}
        with warnings.catch_warnings(), _client_errors():
            # Local mode warns that it ignores payload indexes; the server needs them.
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for field_name, kind in PAYLOAD_INDEXES.items():
                if field_name not in indexed:
                    client.create_payload_index(
                        name, field_name, _client_index_type(kind), wait=True
                    )

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
                with_payload=True,
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
                with_payload=True,
                with_vectors=False,
            )
        items = [StoredItem(str(r.id), dict(r.payload or {})) for r in records]
        return items, None if next_offset is None else str(next_offset)

    def _count(self, conditions: list[_Condition]) -> int:
        with _client_errors():
            result = self._client.count(
                self.collection, count_filter=_client_filter(conditions, []), exact=True
            )
        return result.count


def _client_index_type(kind: str) -> qm.PayloadSchemaType:
    from qdrant_client import models

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


def _client_filter(conditions: list[_Condition], exclude_ids: list[str]) -> qm.Filter | None:
    from qdrant_client import models

    if not conditions and not exclude_ids:
        return None
    must: list[models.Condition] = []
    for key, value in conditions:
        if isinstance(value, Range):
            bounds = models.Range(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
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
