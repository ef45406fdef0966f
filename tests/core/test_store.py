"""The vector store: the same behaviour from the embedded qdrant-edge shard and from
qdrant-client (local mode standing in for a server)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from lookalike.schema import INTERNAL_FIELDS, KEYPOINTS_FIELD, point_id
from lookalike.settings import Settings
from lookalike.store import (
    Aliases,
    ClientStore,
    Discover,
    Diverse,
    EdgeStore,
    Range,
    Recommend,
    Search,
    StoredItem,
    StoreError,
    StoreUnavailable,
    VectorStore,
    Version,
    open_store,
)
from support import STORE_BACKENDS, free_port, holds_float16, store_settings

DIM = 12
N_ITEMS = 60
REPO = Path(__file__).resolve().parents[2]

CATEGORIES = ("shoes", "bags", "hats")


def make_items(seed: int = 7) -> list[StoredItem]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(N_ITEMS):
        tenant = "b" if i % 6 == 0 else "a"
        payload = {
            "item_id": f"sku-{i}",
            "tenant": tenant,
            "metadata": {
                "category": CATEGORIES[i % 3],
                "price": round(float(rng.uniform(5, 100)), 2),
                "in_stock": bool(i % 4 != 0),
            },
        }
        vector = rng.normal(size=DIM).astype(np.float32)
        items.append(StoredItem(point_id(f"sku-{i}", tenant), payload, vector))
    return items


ITEMS = make_items()


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def cosine_ranking(query: np.ndarray, items: list[StoredItem]) -> list[tuple[str, float]]:
    """(point id, cosine similarity) of ``items``, best first, computed with numpy."""
    matrix = np.stack([item.vector for item in items if item.vector is not None])
    scores = unit(matrix) @ unit(query)
    order = np.argsort(-scores, kind="stable")
    return [(items[i].point_id, float(scores[i])) for i in order]


def as_held(store: VectorStore, vector: np.ndarray) -> np.ndarray:
    """A vector as the store holds it: unit length, rounded to float16 where it stores that."""
    vector = unit(vector)
    return vector.astype(np.float16).astype(np.float32) if holds_float16(store) else vector


def held(store: VectorStore, items: list[StoredItem] = ITEMS) -> list[StoredItem]:
    """``items`` with the vectors the store holds for them: the references below are computed
    from these, so a float16 shard is held to the same rankings."""
    return [StoredItem(i.point_id, i.payload, as_held(store, i.vector)) for i in items]  # type: ignore[arg-type]


def score_tolerance(store: VectorStore) -> float:
    """How far a score may be from the float32 reference's: float16 search also rounds the
    query and sums in its own order, a few 1e-4 at most for unit vectors."""
    return 1e-3 if holds_float16(store) else 1e-5


@pytest.fixture(params=STORE_BACKENDS)
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    store = open_store(store_settings(request.param, tmp_path))
    yield store
    store.close()


@pytest.fixture
def store(empty_store: VectorStore) -> VectorStore:
    """A collection holding ITEMS, for tests that change it."""
    empty_store.ensure_collection(DIM)
    empty_store.upsert(ITEMS)
    return empty_store


@pytest.fixture(scope="module", params=STORE_BACKENDS)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorStore]:
    """A collection holding ITEMS, shared by the tests that only read it.

    Creating a shard with its payload indexes costs a few hundred ms of fsyncs on disk.
    """
    store = open_store(store_settings(request.param, tmp_path_factory.mktemp("loaded")))
    store.ensure_collection(DIM)
    store.upsert(ITEMS)
    yield store
    store.close()


@pytest.fixture
def query() -> np.ndarray:
    return np.random.default_rng(99).normal(size=DIM).astype(np.float32)


def test_open_store_picks_the_backend_from_settings(tmp_path: Path) -> None:
    with open_store(Settings(data_dir=tmp_path)) as edge:
        assert isinstance(edge, EdgeStore)
        assert edge.path == tmp_path / "qdrant" / "catalog"
    with open_store(Settings(qdrant_url=":memory:", collection="other")) as memory:
        assert isinstance(memory, ClientStore)
        assert memory.collection == "other"


def test_ensure_collection_is_idempotent(empty_store: VectorStore) -> None:
    empty_store.ensure_collection(DIM)
    empty_store.upsert(ITEMS[:3])
    empty_store.ensure_collection(DIM)
    assert empty_store.count() == 3


def test_ensure_collection_with_another_size_fails_permanently(empty_store: VectorStore) -> None:
    empty_store.ensure_collection(DIM)
    with pytest.raises(StoreError) as excinfo:
        empty_store.ensure_collection(DIM + 1)
    assert not isinstance(excinfo.value, StoreUnavailable)


def test_using_a_missing_collection_is_a_store_error(empty_store: VectorStore) -> None:
    with pytest.raises(StoreError):
        empty_store.count()
    with pytest.raises(StoreError):
        empty_store.upsert(ITEMS[:1])


def test_retrieve_returns_payload_and_unit_vector(loaded: VectorStore) -> None:
    wanted = [ITEMS[5], ITEMS[1], ITEMS[30]]
    missing = point_id("never-stored")
    got = loaded.retrieve([*(item.point_id for item in wanted), missing], with_vectors=True)

    assert [item.point_id for item in got] == [item.point_id for item in wanted]
    for stored, original in zip(got, wanted, strict=True):
        assert stored.payload == original.payload
        assert stored.vector is not None and stored.vector.dtype == np.float32
        assert stored.vector.shape == (DIM,)
        # Cosine collections keep vectors normalized (in float16: to its 11 bits).
        np.testing.assert_allclose(stored.vector, as_held(loaded, original.vector), atol=1e-6)  # type: ignore[arg-type]
    assert loaded.retrieve([ITEMS[0].point_id])[0].vector is None


def test_upserting_the_same_id_overwrites(store: VectorStore) -> None:
    original = ITEMS[3]
    new_vector = np.ones(DIM, dtype=np.float32)
    store.upsert([StoredItem(original.point_id, {"tenant": "a", "note": "v2"}, new_vector)])

    assert store.count() == N_ITEMS
    (stored,) = store.retrieve([original.point_id], with_vectors=True)
    assert stored.payload == {"tenant": "a", "note": "v2"}
    np.testing.assert_allclose(stored.vector, as_held(store, new_vector), atol=1e-6)  # type: ignore[arg-type]


def test_delete(store: VectorStore) -> None:
    gone = [ITEMS[0].point_id, ITEMS[1].point_id]
    store.delete([*gone, point_id("never-stored")])

    assert store.count() == N_ITEMS - 2
    assert store.retrieve(gone) == []


def test_hits_and_scrolled_points_leave_the_internal_fields_out(
    store: VectorStore, query: np.ndarray
) -> None:
    """The keypoints (~10 KiB a point) and the retired colour signature travel only where
    they are read: points read by id, and the duplicates search (``with_internal``)."""
    internal = {KEYPOINTS_FIELD: "k" * 10_000, "color_signature": "c" * 700}
    store.upsert(
        [StoredItem(i.point_id, {**i.payload, **internal}, i.vector) for i in ITEMS]  # type: ignore[arg-type]
    )
    assert set(INTERNAL_FIELDS) == set(internal)
    brief = [
        *store.search(query, limit=5),
        *store.query(query, limit=5),
        *store.query(Recommend((query,)), limit=5),
        *store.query_batch([Search(query, 5)])[0],
        *(
            h
            for g in store.query_groups(query, group_by="tenant", group_size=3, limit=2)
            for h in g.hits
        ),
        *store.scroll(limit=5)[0],
    ]
    assert len(brief) >= 20
    for point in brief:
        assert "tenant" in point.payload  # the rest of the payload is there
        assert not set(internal) & set(point.payload), point
    full = [*store.search(query, limit=5, with_internal=True), *store.retrieve([ITEMS[0].point_id])]
    for point in full:
        assert {k: point.payload[k] for k in internal} == internal


def test_search_ranks_by_cosine_similarity(loaded: VectorStore, query: np.ndarray) -> None:
    hits = loaded.search(query, limit=10)

    expected = cosine_ranking(query, held(loaded))[:10]
    assert [hit.point_id for hit in hits] == [pid for pid, _ in expected]
    np.testing.assert_allclose(
        [hit.score for hit in hits], [s for _, s in expected], atol=score_tolerance(loaded)
    )
    by_id = {item.point_id: item.payload for item in ITEMS}
    assert all(hit.payload == by_id[hit.point_id] for hit in hits)


def test_search_excludes_ids(loaded: VectorStore, query: np.ndarray) -> None:
    ranking = [pid for pid, _ in cosine_ranking(query, ITEMS)]
    excluded = ranking[:3]

    hits = loaded.search(query, limit=5, exclude_ids=excluded)

    assert [hit.point_id for hit in hits] == ranking[3:8]


WHERE_CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "tenant": ({"tenant": "b"}, lambda p: p["tenant"] == "b"),
    "keyword": ({"metadata.category": "hats"}, lambda p: p["metadata"]["category"] == "hats"),
    "match-any": (
        {"metadata.category": ["shoes", "bags"]},
        lambda p: p["metadata"]["category"] in ("shoes", "bags"),
    ),
    "empty-any": ({"metadata.category": []}, lambda p: False),
    "range": (
        {"metadata.price": Range(gte=20.0, lt=60.0)},
        lambda p: 20.0 <= p["metadata"]["price"] < 60.0,
    ),
    "exact-float": (
        {"metadata.price": ITEMS[7].payload["metadata"]["price"]},
        lambda p: p["metadata"]["price"] == ITEMS[7].payload["metadata"]["price"],
    ),
    "bool-true": ({"metadata.in_stock": True}, lambda p: p["metadata"]["in_stock"] is True),
    "bool-false": ({"metadata.in_stock": False}, lambda p: p["metadata"]["in_stock"] is False),
    "all-of": (
        {"tenant": "a", "metadata.in_stock": True, "metadata.price": Range(lte=50.0)},
        lambda p: (
            p["tenant"] == "a" and p["metadata"]["in_stock"] and p["metadata"]["price"] <= 50.0
        ),
    ),
}


@pytest.mark.parametrize("case", WHERE_CASES)
def test_where_filters_search_count_and_scroll(
    loaded: VectorStore, query: np.ndarray, case: str
) -> None:
    where, predicate = WHERE_CASES[case]
    matching = [item for item in ITEMS if predicate(item.payload)]
    expected = [pid for pid, _ in cosine_ranking(query, matching)] if matching else []

    hits = loaded.search(query, limit=N_ITEMS, where=where)
    assert [hit.point_id for hit in hits] == expected
    assert loaded.count(where) == len(matching)
    page, _ = loaded.scroll(limit=N_ITEMS, where=where)
    assert {item.point_id for item in page} == set(expected)


def test_filter_runs_inside_the_search(loaded: VectorStore, query: np.ndarray) -> None:
    # Tenant "b" holds 10 of 60 points: a filter applied after a top-5 search would come
    # back short; applied inside it, it returns b's own top 5.
    tenant_b = [item for item in ITEMS if item.payload["tenant"] == "b"]
    hits = loaded.search(query, limit=5, where={"tenant": "b"})
    assert [hit.point_id for hit in hits] == [pid for pid, _ in cosine_ranking(query, tenant_b)][:5]


def test_search_pages_with_offset(loaded: VectorStore, query: np.ndarray) -> None:
    pages = [loaded.search(query, limit=7, offset=offset) for offset in (0, 7, 14)]

    ids = [hit.point_id for page in pages for hit in page]
    assert ids == [pid for pid, _ in cosine_ranking(query, ITEMS)[:21]]
    assert loaded.search(query, limit=7, offset=N_ITEMS) == []


def test_search_score_threshold(loaded: VectorStore, query: np.ndarray) -> None:
    ranking = cosine_ranking(query, ITEMS)
    # Halfway between two neighbouring scores, so float rounding cannot flip a point.
    threshold = (ranking[4][1] + ranking[5][1]) / 2

    hits = loaded.search(query, limit=20, score_threshold=threshold)

    assert [hit.point_id for hit in hits] == [pid for pid, _ in ranking[:5]]


def test_scroll_visits_every_point_once(loaded: VectorStore) -> None:
    seen: list[str] = []
    offset: str | None = None
    pages = 0
    while True:
        page, offset = loaded.scroll(limit=7, offset=offset)
        seen.extend(item.point_id for item in page)
        pages += 1
        if offset is None:
            break
        assert pages < N_ITEMS, "scroll does not terminate"

    assert sorted(seen) == sorted(item.point_id for item in ITEMS)
    assert pages == -(-N_ITEMS // 7)


def test_set_payload_merges_keys_and_keeps_the_vector(store: VectorStore) -> None:
    item = ITEMS[2]
    store.set_payload(item.point_id, {"tenant": "c", "label": "sale"})

    (stored,) = store.retrieve([item.point_id], with_vectors=True)
    assert stored.payload == {**item.payload, "tenant": "c", "label": "sale"}
    np.testing.assert_allclose(stored.vector, as_held(store, item.vector), atol=1e-6)  # type: ignore[arg-type]
    assert store.count({"tenant": "c"}) == 1


def test_set_payload_of_a_missing_point_is_a_store_error(loaded: VectorStore) -> None:
    with pytest.raises(StoreError):
        loaded.set_payload(point_id("never-stored"), {"tenant": "c"})


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.upsert([StoredItem(point_id("x"), {}, np.ones(DIM + 1, np.float32))]),
        lambda s: s.upsert([StoredItem(point_id("x"), {}, None)]),
        lambda s: s.upsert([StoredItem(point_id("x"), {}, np.full(DIM, np.nan, np.float32))]),
        lambda s: s.upsert([StoredItem("not-a-uuid", {}, np.ones(DIM, np.float32))]),
        lambda s: s.search(np.ones(DIM - 1, np.float32), limit=3),
        lambda s: s.search(np.zeros(DIM, np.float32), limit=3),
        lambda s: s.search(np.ones(DIM, np.float32), limit=0),
        lambda s: s.search(np.ones(DIM, np.float32), limit=3, where={"tenant": {"a": 1}}),
        lambda s: s.count({"metadata.category": ["shoes", 3]}),
        lambda s: s.count({"metadata.price": Range()}),
    ],
    ids=[
        "wrong-dim",
        "no-vector",
        "nan",
        "bad-id",
        "query-dim",
        "zero-query",
        "limit-0",
        "bad-where",
        "mixed-list",
        "empty-range",
    ],
)
def test_bad_requests_are_permanent_errors(
    loaded: VectorStore, call: Callable[[VectorStore], object]
) -> None:
    with pytest.raises(StoreError) as excinfo:
        call(loaded)
    assert not isinstance(excinfo.value, StoreUnavailable)


# ----------------------------------------------------------------------- query types


def scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    """Qdrant's squashing of similarities into (0, 1) for recommend and discovery scores."""
    return 0.5 * (x / (1.0 + np.abs(x)) + 1.0)


def reference_scores(
    items: list[StoredItem], score: Callable[[np.ndarray], np.ndarray]
) -> list[tuple[str, float]]:
    """(point id, score) of ``items`` by ``score`` over their unit vectors, best first."""
    matrix = unit(np.stack([item.vector for item in items if item.vector is not None]))
    scores = score(matrix)
    order = np.argsort(-scores, kind="stable")
    return [(items[i].point_id, float(scores[i])) for i in order]


def assert_ranked_as(
    hits: list[Any], expected: list[tuple[str, float]], atol: float = 1e-5
) -> None:
    """The hits are the expected ranking: same scores in the same order, each hit with its own
    expected score (points with equal scores may come in either order)."""
    reference = dict(expected)
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=atol)
    np.testing.assert_allclose(
        [h.score for h in hits], [reference.get(h.point_id, np.nan) for h in hits], atol=atol
    )


def test_query_with_a_vector_is_the_plain_search(loaded: VectorStore, query: np.ndarray) -> None:
    where = {"metadata.in_stock": True}
    assert loaded.query(query, limit=8, where=where, offset=2) == loaded.search(
        query, limit=8, where=where, offset=2
    )


def test_recommend_best_score_ranks_like_these_not_those(loaded: VectorStore) -> None:
    liked = [ITEMS[1].vector, ITEMS[2].vector]
    disliked = [ITEMS[3].vector]
    p = unit(np.stack(liked))  # type: ignore[arg-type]
    n = unit(np.stack(disliked))  # type: ignore[arg-type]

    def best_score(m: np.ndarray) -> np.ndarray:
        best_p, best_n = (m @ p.T).max(axis=1), (m @ n.T).max(axis=1)
        return np.where(best_p > best_n, scaled_sigmoid(best_p), -scaled_sigmoid(best_n))

    hits = loaded.query(Recommend(liked, disliked), limit=N_ITEMS)  # type: ignore[arg-type]

    expected = reference_scores(held(loaded), best_score)
    assert_ranked_as(hits, expected, score_tolerance(loaded))
    # The disliked item, and everything nearer to it than to both liked ones, sinks.
    assert hits[-1].point_id == ITEMS[3].point_id and hits[-1].score < 0
    assert {h.point_id for h in hits[:2]} == {ITEMS[1].point_id, ITEMS[2].point_id}


def test_recommend_sum_scores(loaded: VectorStore) -> None:
    liked, disliked = [ITEMS[4].vector, ITEMS[5].vector], [ITEMS[6].vector, ITEMS[7].vector]
    p, n = unit(np.stack(liked)), unit(np.stack(disliked))  # type: ignore[arg-type]

    hits = loaded.query(
        Recommend(liked, disliked, strategy="sum_scores"),  # type: ignore[arg-type]
        limit=10,
        where={"tenant": "a"},
        exclude_ids=[ITEMS[4].point_id, ITEMS[5].point_id],
    )

    candidates = [
        item
        for item in held(loaded)
        if item.payload["tenant"] == "a"
        and item.point_id not in (ITEMS[4].point_id, ITEMS[5].point_id)
    ]
    expected = reference_scores(candidates, lambda m: (m @ p.T).sum(1) - (m @ n.T).sum(1))[:10]
    assert [h.point_id for h in hits] == [pid for pid, _ in expected]
    np.testing.assert_allclose(
        [h.score for h in hits], [s for _, s in expected], atol=score_tolerance(loaded)
    )


def test_discover_counts_satisfied_pairs_then_nearness_to_the_target(loaded: VectorStore) -> None:
    target = ITEMS[10].vector
    pairs = [(ITEMS[11].vector, ITEMS[12].vector), (ITEMS[13].vector, ITEMS[14].vector)]

    def discovery(m: np.ndarray) -> np.ndarray:
        rank = np.zeros(len(m))
        for pos, neg in pairs:
            rank += np.where(m @ unit(pos) > m @ unit(neg), 1.0, -1.0)  # type: ignore[arg-type]
        return rank + scaled_sigmoid(m @ unit(target))  # type: ignore[arg-type]

    hits = loaded.query(Discover(target, pairs), limit=15)  # type: ignore[arg-type]

    expected = reference_scores(held(loaded), discovery)[:15]
    assert_ranked_as(hits, expected, score_tolerance(loaded))


def reference_mmr(
    query: np.ndarray, items: list[StoredItem], diversity: float, candidates: int, limit: int
) -> list[str]:
    pool = cosine_ranking(query, items)[:candidates]
    vectors = {item.point_id: unit(item.vector) for item in items}  # type: ignore[arg-type]
    relevance = dict(pool)
    selected = [pool[0][0]]
    pending = [pid for pid, _ in pool[1:]]
    while len(selected) < limit and pending:

        def mmr(pid: str) -> float:
            redundancy = max(float(vectors[pid] @ vectors[s]) for s in selected)
            return (1 - diversity) * relevance[pid] - diversity * redundancy

        best = max(pending, key=mmr)
        selected.append(best)
        pending.remove(best)
    return selected


@pytest.mark.parametrize("diversity", [0.0, 0.3, 0.8])
def test_diverse_reranks_by_maximal_marginal_relevance(
    loaded: VectorStore, query: np.ndarray, diversity: float
) -> None:
    hits = loaded.query(Diverse(query, diversity, candidates=30), limit=8)

    assert [h.point_id for h in hits] == reference_mmr(query, held(loaded), diversity, 30, 8)
    # Hits keep their cosine similarity to the query.
    cosine = dict(cosine_ranking(query, held(loaded)))
    np.testing.assert_allclose(
        [h.score for h in hits], [cosine[h.point_id] for h in hits], atol=score_tolerance(loaded)
    )


def test_diversity_spreads_the_results(loaded: VectorStore, query: np.ndarray) -> None:
    def mean_pairwise_similarity(point_ids: list[str]) -> float:
        by_id = {item.point_id: unit(item.vector) for item in ITEMS}  # type: ignore[arg-type]
        m = np.stack([by_id[pid] for pid in point_ids])
        sims = m @ m.T
        return float(sims[~np.eye(len(m), dtype=bool)].mean())

    plain = [h.point_id for h in loaded.query(query, limit=6)]
    diverse = [h.point_id for h in loaded.query(Diverse(query, 0.6, candidates=40), limit=6)]

    assert diverse[0] == plain[0]
    assert mean_pairwise_similarity(diverse) < mean_pairwise_similarity(plain)


def reference_groups(
    ranking: list[tuple[str, float]], key: Callable[[str], str], limit: int, size: int
) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for pid, _ in ranking:
        k = key(pid)
        if k not in groups and len(groups) < limit:
            groups[k] = []
        if k in groups and len(groups[k]) < size:
            groups[k].append(pid)
    return list(groups.items())


@pytest.mark.parametrize(("limit", "size"), [(2, 2), (3, 4), (3, 1)])
def test_query_groups_keeps_at_most_n_per_group(
    loaded: VectorStore, query: np.ndarray, limit: int, size: int
) -> None:
    category = {item.point_id: item.payload["metadata"]["category"] for item in ITEMS}
    in_stock = [item for item in ITEMS if item.payload["metadata"]["in_stock"]]

    groups = loaded.query_groups(
        query,
        group_by="metadata.category",
        group_size=size,
        limit=limit,
        where={"metadata.in_stock": True},
    )

    expected = reference_groups(cosine_ranking(query, in_stock), category.__getitem__, limit, size)
    assert [(g.key, [h.point_id for h in g.hits]) for g in groups] == expected
    assert all(h.payload["metadata"]["in_stock"] for g in groups for h in g.hits)


def test_query_groups_of_a_recommend_query(loaded: VectorStore) -> None:
    liked = [ITEMS[20].vector]
    category = {item.point_id: item.payload["metadata"]["category"] for item in ITEMS}
    p = unit(np.stack(liked))  # type: ignore[arg-type]

    groups = loaded.query_groups(
        Recommend(liked),
        group_by="metadata.category",
        group_size=2,
        limit=3,  # type: ignore[arg-type]
    )

    ranking = reference_scores(ITEMS, lambda m: scaled_sigmoid((m @ p.T).max(axis=1)))
    expected = reference_groups(ranking, category.__getitem__, 3, 2)
    assert [(g.key, [h.point_id for h in g.hits]) for g in groups] == expected


def test_query_groups_reaches_past_a_dominant_group(empty_store: VectorStore) -> None:
    # 300 near-identical shirts crowd the top of the ranking; the 2 other groups are found
    # anyway, at the bottom.
    rng = np.random.default_rng(3)
    direction = rng.normal(size=DIM).astype(np.float32)
    shirts = [
        StoredItem(
            point_id(f"shirt-{i}"),
            {"metadata": {"category": "shirts"}},
            direction + 0.05 * rng.normal(size=DIM).astype(np.float32),
        )
        for i in range(300)
    ]
    others = [
        StoredItem(
            point_id(f"{c}-{i}"),
            {"metadata": {"category": c}},
            -direction + rng.normal(size=DIM).astype(np.float32),
        )
        for c in ("hats", "shoes")
        for i in range(3)
    ]
    empty_store.ensure_collection(DIM)
    empty_store.upsert(shirts + others)

    groups = empty_store.query_groups(
        direction, group_by="metadata.category", group_size=2, limit=3
    )

    assert next(g.key for g in groups) == "shirts"
    assert sorted(str(g.key) for g in groups) == ["hats", "shirts", "shoes"]
    assert all(len(g.hits) == 2 for g in groups)


def test_query_batch_answers_each_query_as_alone(loaded: VectorStore, query: np.ndarray) -> None:
    searches = [
        Search(query, 5),
        Search(
            ITEMS[8].vector, 4, where={"metadata.category": "hats"}, exclude_ids=[ITEMS[8].point_id]
        ),  # type: ignore[arg-type]
        Search(Recommend([ITEMS[9].vector], [ITEMS[10].vector]), 3, offset=2),  # type: ignore[arg-type]
        Search(Diverse(query, 0.5, 20), 4, score_threshold=0.0),
    ]

    results = loaded.query_batch(searches)

    assert len(results) == len(searches)
    for search, hits in zip(searches, results, strict=True):
        alone = loaded.query(
            search.query,
            limit=search.limit,
            where=search.where,
            exclude_ids=search.exclude_ids,
            offset=search.offset,
            score_threshold=search.score_threshold,
        )
        assert hits and [h.point_id for h in hits] == [h.point_id for h in alone]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in alone], atol=1e-5)
    assert loaded.query_batch([]) == []


def test_facet_counts_values(loaded: VectorStore) -> None:
    facets = loaded.facet("metadata.category", where={"tenant": "a"})

    counts: dict[str, int] = {}
    for item in ITEMS:
        if item.payload["tenant"] == "a":
            category = item.payload["metadata"]["category"]
            counts[category] = counts.get(category, 0) + 1
    assert {f.value: f.count for f in facets} == counts
    assert [f.count for f in facets] == sorted(counts.values(), reverse=True)
    assert len(loaded.facet("metadata.category", limit=1)) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.query(Recommend([]), limit=3),
        lambda s: s.query(Recommend([np.ones(DIM, np.float32)], strategy="best"), limit=3),
        lambda s: s.query(Recommend(np.ones(DIM, np.float32)), limit=3),
        lambda s: s.query(Discover(np.ones(DIM, np.float32), []), limit=3),
        lambda s: s.query(Discover(np.ones(DIM, np.float32), [(np.ones(DIM),)]), limit=3),
        lambda s: s.query(Diverse(np.ones(DIM, np.float32), 1.5), limit=3),
        lambda s: s.query(np.ones(DIM, np.float32), limit=3, score_threshold=float("nan")),
        lambda s: s.query_groups(np.ones(DIM, np.float32), group_by="", group_size=1, limit=3),
        lambda s: s.query_groups(
            np.ones(DIM, np.float32), group_by="tenant", group_size=0, limit=3
        ),
        lambda s: s.query_groups(
            Diverse(np.ones(DIM, np.float32)), group_by="tenant", group_size=1, limit=3
        ),
        lambda s: s.query_batch([Search(np.ones(DIM + 1, np.float32), 3)]),
    ],
    ids=[
        "no-positive",
        "bad-strategy",
        "one-vector-not-a-list",
        "no-context",
        "bad-pair",
        "diversity-above-1",
        "nan-threshold",
        "empty-group-by",
        "group-size-0",
        "grouped-mmr",
        "batch-query-dim",
    ],
)
def test_bad_queries_are_permanent_errors(
    loaded: VectorStore, call: Callable[[VectorStore], object]
) -> None:
    with pytest.raises(StoreError) as excinfo:
        call(loaded)
    assert not isinstance(excinfo.value, StoreUnavailable)


# ----------------------------------------------------------------------- edge only


def test_edge_data_survives_close_and_reopen(tmp_path: Path, query: np.ndarray) -> None:
    settings = store_settings("edge", tmp_path)
    with open_store(settings) as first:
        first.ensure_collection(DIM)
        first.upsert(ITEMS)
        before = first.search(query, limit=5, where={"metadata.in_stock": True})

    with open_store(settings) as second:
        # Opens lazily, without ensure_collection, as an API restarted on old data does.
        assert second.count() == N_ITEMS
        assert second.search(query, limit=5, where={"metadata.in_stock": True}) == before
        second.ensure_collection(DIM)
        with pytest.raises(StoreError):
            second.ensure_collection(DIM + 1)

    with open_store(settings) as third:
        third.count()
        with pytest.raises(StoreError):
            third.ensure_collection(DIM + 1)  # asks the shard it has already opened
    with open_store(settings) as fourth, pytest.raises(StoreError):
        fourth.ensure_collection(DIM + 1)  # checks the stored config as it opens


def test_edge_store_cannot_be_used_after_close(tmp_path: Path) -> None:
    store = open_store(store_settings("edge", tmp_path))
    store.ensure_collection(DIM)
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.count()


SECOND_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lookalike.settings import Settings
    from lookalike.store import StoreUnavailable, open_store

    store = open_store(Settings(data_dir=Path(sys.argv[1])))
    try:
        print("count", store.count())
    except StoreUnavailable as exc:
        print("unavailable", exc)
    finally:
        store.close()
    """
)


def run_second_process(data_dir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_edge_shard_is_locked_by_its_process(tmp_path: Path) -> None:
    settings = store_settings("edge", tmp_path)
    store = open_store(settings)
    store.ensure_collection(DIM)
    store.upsert(ITEMS[:4])

    output = run_second_process(settings.data_dir)
    assert output.startswith("unavailable"), output
    assert "another process" in output
    with open_store(settings) as same_process, pytest.raises(StoreUnavailable):
        same_process.count()

    store.close()
    assert run_second_process(settings.data_dir) == "count 4"


def test_edge_store_is_shared_by_threads(tmp_path: Path, query: np.ndarray) -> None:
    store = open_store(store_settings("edge", tmp_path))
    store.ensure_collection(DIM)
    errors: list[BaseException] = []
    extra = make_items(seed=8)

    def write(items: list[StoredItem]) -> None:
        try:
            for i in range(0, len(items), 5):
                store.upsert(items[i : i + 5])
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(50):
                store.search(query, limit=5, where={"tenant": "a"})
                store.count()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(ITEMS,)),
        threading.Thread(target=write, args=(extra,)),
        *(threading.Thread(target=read) for _ in range(3)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # make_items derives ids from the sku, so both batches write the same 60 points.
    assert store.count() == N_ITEMS
    store.close()


# ----------------------------------------------------------------------- server errors


def test_unreachable_server_is_unavailable() -> None:
    client = QdrantClient(
        url=f"http://127.0.0.1:{free_port()}", timeout=2, check_compatibility=False
    )
    with ClientStore(client, "catalog") as store, pytest.raises(StoreUnavailable):
        store.count()


@pytest.fixture
def answering_server() -> Iterator[Callable[[int], str]]:
    """A local HTTP server answering every request with the status a test sets."""
    status = {"code": 500}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_any(self) -> None:
            body = b'{"status": {"error": "test"}, "time": 0}'
            self.send_response(status["code"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def answer(code: int) -> str:
        status["code"] = code
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield answer
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("code", "transient"), [(503, True), (500, True), (429, True), (400, False), (404, False)]
)
def test_server_status_decides_whether_to_retry(
    answering_server: Callable[[int], str], code: int, transient: bool
) -> None:
    client = QdrantClient(url=answering_server(code), timeout=2, check_compatibility=False)
    with ClientStore(client, "catalog") as store, pytest.raises(StoreError) as excinfo:
        store.count()
    assert isinstance(excinfo.value, StoreUnavailable) is transient


# ----------------------------------------------------------- versions and aliases (reindex)

FIRST = "catalog__efficientnet-lite0__1"


@pytest.fixture(params=["edge", "client-memory"])
def catalog_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """A catalog as the service opens it (open_store: versioned, behind an alias), with ITEMS."""
    store = open_store(store_settings(request.param, tmp_path))
    store.ensure_collection(DIM)
    store.upsert(ITEMS[:10])
    yield store
    store.close()


def test_a_new_catalog_is_version_1_behind_its_alias(catalog_store: VectorStore) -> None:
    aliases = catalog_store.aliases()
    assert aliases == Aliases(active=Version(FIRST, "efficientnet-lite0", 1))
    assert catalog_store.versions() == [aliases.active]
    assert catalog_store.version(FIRST).count() == catalog_store.count() == 10


def test_a_version_label_names_its_backbone_and_head_and_the_settings_fill_the_rest() -> None:
    from lookalike.store.versions import VersionModel, model_of, parse_label, requested_label

    headed = VersionModel("efficientnet-lite0", "shop-2")
    assert headed.label == "efficientnet-lite0-head-shop-2"
    assert parse_label(headed.label) == headed
    assert parse_label("efficientnet-lite1") == VersionModel("efficientnet-lite1")
    for other in ("", "resnet-head-shop", "efficientnet-lite0-head-", "efficientnet-lite0-x"):
        assert parse_label(other) is None, other

    def of(label: str | None, head: str = "") -> VersionModel:
        version = None if label is None else Version(f"catalog__{label}__1", label, 1)
        return model_of(version, "efficientnet-lite0", head)

    assert of(headed.label) == headed
    assert of(headed.label, head="other") == headed
    # A label of the configured backbone alone is filled with the configured head (as every
    # version was before a label could name one), another backbone's without.
    assert of("efficientnet-lite0", head="other") == VersionModel("efficientnet-lite0", "other")
    assert of("efficientnet-lite1", head="other") == VersionModel("efficientnet-lite1")
    assert (
        of("", head="other")
        == of(None, head="other")
        == VersionModel("efficientnet-lite0", "other")
    )
    # A reindex to the backbone with head "none" makes a label that no configured head fills.
    plain = requested_label("efficientnet-lite0", "none")
    assert plain == "efficientnet-lite0-head-none"
    assert of(plain, head="other") == of(plain) == VersionModel("efficientnet-lite0")
    assert requested_label("efficientnet-lite0", "shop-2") == headed.label
    assert requested_label("efficientnet-lite1") == "efficientnet-lite1"


def test_a_catalog_switched_to_a_head_opens_again_at_the_heads_size(tmp_path: Path) -> None:
    """A restart after `indexer reindex --head`: the active version's vectors are the head's
    size, not the configured backbone's."""
    from lookalike.store import LazyStore

    heads = tmp_path / "models" / "heads"
    heads.mkdir(parents=True)
    (heads / "shop.json").write_text(json.dumps({"dim": 8}))
    settings = Settings(data_dir=tmp_path / "data", model_cache=tmp_path / "models")
    first = LazyStore(settings)
    store = first.get()
    version = store.create_version("efficientnet-lite0-head-shop", 8)
    store.set_aliases(active=version.name, previous=FIRST)
    first.close()
    again = LazyStore(settings)
    assert again.get().aliases().active == version
    again.get().upsert([StoredItem(point_id("a"), {"item_id": "a"}, np.ones(8, np.float32))])
    again.close()


def test_a_new_version_fills_while_the_alias_serves_the_old_then_switches_and_rolls_back(
    catalog_store: VectorStore, query: np.ndarray
) -> None:
    new = catalog_store.create_version("efficientnet-lite1", DIM)
    assert new == Version("catalog__efficientnet-lite1__2", "efficientnet-lite1", 2)
    catalog_store.set_aliases(next=new.name)
    target = catalog_store.version(new.name)
    target.upsert(ITEMS[10:40])
    # Every call of the catalog's store still answers from the active version.
    assert catalog_store.count() == 10
    assert {h.point_id for h in catalog_store.search(query, limit=50)} == {
        i.point_id for i in ITEMS[:10]
    }

    switched = catalog_store.set_aliases(active=new.name, previous=FIRST, next=None)
    assert switched.active == new and switched.previous is not None and switched.next is None
    assert switched.previous.name == FIRST
    assert catalog_store.count() == 30
    assert len(catalog_store.search(query, limit=50)) == 30

    rolled_back = catalog_store.set_aliases(active=FIRST, previous=new.name)
    assert rolled_back.active is not None and rolled_back.active.name == FIRST
    assert catalog_store.count() == 10


def test_aliases_name_only_existing_versions_and_guard_them(catalog_store: VectorStore) -> None:
    with pytest.raises(StoreError):
        catalog_store.set_aliases(active="catalog__efficientnet-lite0__9")
    with pytest.raises(StoreError):
        catalog_store.version("another-catalog__x__1")
    with pytest.raises(StoreError):
        catalog_store.drop_version(FIRST)  # the active one
    spare = catalog_store.create_version("efficientnet-lite0", DIM)
    catalog_store.version(spare.name).upsert(ITEMS[:3])
    catalog_store.drop_version(spare.name)
    assert [v.name for v in catalog_store.versions()] == [FIRST]
    assert catalog_store.count() == 10


def test_the_edge_alias_file_survives_a_restart(tmp_path: Path) -> None:
    settings = store_settings("edge", tmp_path)
    with open_store(settings) as store:
        store.ensure_collection(DIM)
        new = store.create_version("efficientnet-lite1", DIM)
        store.version(new.name).upsert(ITEMS[:5])
        store.set_aliases(active=new.name, previous=FIRST)
    with open_store(settings) as reopened:
        assert reopened.count() == 5
        aliases = reopened.aliases()
        assert aliases.active == new
        assert aliases.previous is not None and aliases.previous.name == FIRST
    pointer = settings.qdrant_path / "catalog.aliases.json"
    assert json.loads(pointer.read_text())["active"] == new.name


def test_an_edge_catalog_from_before_versions_is_kept_and_can_be_reindexed(tmp_path: Path) -> None:
    settings = store_settings("edge", tmp_path)
    with EdgeStore(settings.qdrant_path, "catalog") as legacy:
        legacy.ensure_collection(DIM)
        legacy.upsert(ITEMS[:4])
    with open_store(settings) as store:
        store.ensure_collection(DIM)
        assert store.aliases().active == Version("catalog", "", 0)
        assert store.count() == 4
        new = store.create_version("efficientnet-lite0", DIM)
        store.version(new.name).upsert(ITEMS[:7])
        store.set_aliases(active=new.name, previous="catalog")
        assert store.count() == 7


def test_a_server_cannot_alias_over_a_catalog_from_before_versions() -> None:
    client = QdrantClient(":memory:")
    ClientStore(client, "catalog").ensure_collection(DIM)  # a plain collection
    store = ClientStore(client, "catalog", initial_label="efficientnet-lite0")
    store.ensure_collection(DIM)
    assert store.aliases().active == Version("catalog", "", 0)
    new = store.create_version("efficientnet-lite1", DIM)
    with pytest.raises(StoreError, match="plain collection"):
        store.set_aliases(active=new.name)
    store.close()


def test_reads_during_an_edge_switch_never_fail(tmp_path: Path, query: np.ndarray) -> None:
    settings = store_settings("edge", tmp_path)
    with open_store(settings) as store:
        store.ensure_collection(DIM)
        store.upsert(ITEMS)
        new = store.create_version("efficientnet-lite1", DIM)
        store.version(new.name).upsert(ITEMS)
        errors: list[BaseException] = []
        answers: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    answers.append(len(store.search(query, limit=5)))
                except BaseException as exc:
                    errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for thread in readers:
            thread.start()
        for _ in range(20):
            store.set_aliases(active=new.name, previous=FIRST)
            store.set_aliases(active=FIRST, previous=new.name)
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == []
    assert answers and set(answers) == {5}


def test_a_catalog_keeps_the_vector_type_it_was_created_with(tmp_path: Path) -> None:
    """LOOKALIKE_VECTOR_DATATYPE applies to new collections: a float32 shard opens under
    float16 settings with its vectors exact, and takes new items."""
    with open_store(store_settings("edge", tmp_path)) as old:
        old.ensure_collection(DIM)
        old.upsert(ITEMS[:10])
    with open_store(store_settings("edge-float16", tmp_path)) as reopened:
        assert isinstance(reopened, EdgeStore) and reopened.vector_datatype == "float16"
        reopened.ensure_collection(DIM)
        reopened.upsert(ITEMS[10:20])
        assert reopened.count() == 20
        for item in reopened.retrieve([i.point_id for i in ITEMS[:20]], with_vectors=True):
            original = next(i for i in ITEMS if i.point_id == item.point_id)
            np.testing.assert_allclose(item.vector, unit(original.vector), atol=1e-6)  # type: ignore[arg-type]
    with (
        open_store(store_settings("edge-float16", tmp_path)) as wrong,
        pytest.raises(StoreError, match=r"another vector configuration.*vector size"),
    ):
        wrong.ensure_collection(DIM + 1)


def test_settings_refuse_an_unknown_vector_type() -> None:
    with pytest.raises(ValueError, match="LOOKALIKE_VECTOR_DATATYPE"):
        Settings(vector_datatype="float64")


def test_scroll_newest_pages_through_every_item_newest_first(empty_store: VectorStore) -> None:
    """Items of one batch share their ingest time: the cursor carries the page's ids at the
    boundary time, so no item is skipped or repeated across pages."""
    from datetime import UTC, datetime, timedelta

    empty_store.ensure_collection(DIM)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)
    items = [
        StoredItem(
            point_id(f"b{i // 4}-{i}", "t"),
            {
                "item_id": f"b{i // 4}-{i}",
                "tenant": "t" if i != 5 else "other",
                "ingested_at": (start + timedelta(minutes=i // 4)).isoformat(),
            },
            rng.normal(size=DIM).astype(np.float32),
        )
        for i in range(14)  # batches of 4, 4, 4, 2 items
    ]
    empty_store.upsert(items)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = empty_store.scroll_newest(limit=3, cursor=cursor, where={"tenant": "t"})
        seen += [i.payload["item_id"] for i in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 5 and len(seen) == len(set(seen)) == 13  # one item is another tenant's
    batches = [int(i.split("-")[0][1:]) for i in seen]
    assert batches == sorted(batches, reverse=True)
    with pytest.raises(StoreError):
        empty_store.scroll_newest(limit=3, cursor="not-a-cursor")


def test_text_match_finds_id_words_and_name_word_prefixes(empty_store: VectorStore) -> None:
    from lookalike.store import TextMatch

    empty_store.ensure_collection(DIM)
    rng = np.random.default_rng(4)
    rows = [
        ("shop.shoes.red-runner", {"name": "Red Runner"}),
        ("shop.shoes.trail-2", {"title": "Trail shoe, size 42"}),
        ("shop.food.crumb-7", {}),
    ]
    empty_store.upsert(
        [
            StoredItem(
                point_id(item_id, "t"),
                {"item_id": item_id, "tenant": "t", "metadata": meta},
                rng.normal(size=DIM).astype(np.float32),
            )
            for item_id, meta in rows
        ]
    )

    def found(text: str) -> list[str]:
        where = {
            "tenant": "t",
            "item_id": TextMatch(text, ("metadata.name", "metadata.title")),
        }
        items, _ = empty_store.scroll(limit=10, where=where)
        assert empty_store.count(where) == len(items)
        return sorted(i.payload["item_id"] for i in items)

    assert found("crumb") == ["shop.food.crumb-7"]  # a word of the id
    assert found("shoes") == ["shop.shoes.red-runner", "shop.shoes.trail-2"]
    assert found("runner") == ["shop.shoes.red-runner"]  # a word of the name, any case
    assert found("nothing-like-it") == []
    if isinstance(empty_store, EdgeStore):
        # The start of a word of a name or title: the prefix text index (a Qdrant server
        # builds it too; qdrant-client's local mode ignores payload indexes).
        assert found("run") == ["shop.shoes.red-runner"]
        assert found("tra") == ["shop.shoes.trail-2"]
    with pytest.raises(StoreError):
        empty_store.scroll(limit=10, where={"item_id": TextMatch("  ")})
