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

from lookalike.store.base import VectorStore, mirror_versions
from lookalike.store.edge import EdgeStore
from lookalike.store.opener import LazyStore, open_store
from lookalike.store.remote import ClientStore
from lookalike.store.types import (
    ALIAS_ROLES,
    KEEP,
    RECOMMEND_STRATEGIES,
    Aliases,
    Discover,
    Diverse,
    Facet,
    Group,
    Hit,
    Range,
    Recommend,
    Search,
    SimilarityQuery,
    StoredItem,
    StoreError,
    StoreUnavailable,
    TextMatch,
    Version,
    Where,
)

__all__ = [
    "ALIAS_ROLES",
    "KEEP",
    "RECOMMEND_STRATEGIES",
    "Aliases",
    "ClientStore",
    "Discover",
    "Diverse",
    "EdgeStore",
    "Facet",
    "Group",
    "Hit",
    "LazyStore",
    "Range",
    "Recommend",
    "Search",
    "SimilarityQuery",
    "StoreError",
    "StoreUnavailable",
    "StoredItem",
    "TextMatch",
    "VectorStore",
    "Version",
    "Where",
    "mirror_versions",
    "open_store",
]
