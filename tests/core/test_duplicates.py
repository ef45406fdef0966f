"""The near-duplicate test's candidate search (lookalike/duplicate_candidates.py) on both
vector stores: a multiscale vector is searched and scored by its pooled head alone, any other
vector whole. The end-to-end test with the real model is tests/indexer/test_batch_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.duplicate_candidates import CANDIDATE_FLOORS, candidate_floor, candidate_query
from lookalike.models import BACKBONES, CUSTOM_MODEL, DEFAULT_MODEL
from lookalike.schema import MODEL_DIMS, MULTISCALE_DIMS, point_id
from lookalike.store import StoredItem, VectorStore, open_store
from support import STORE_BACKENDS, holds_float16, store_settings

MODEL = "efficientnet-lite0"
HEAD, WHOLE = MODEL_DIMS[MODEL], MULTISCALE_DIMS[MODEL]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def multiscale(head: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """Laid out as the embedder lays out multiscale features: each part at unit length."""
    return unit(np.concatenate([unit(head), unit(stage)]))


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    with open_store(store_settings(request.param, tmp_path)) as opened:
        yield opened


def test_a_multiscale_vector_is_searched_and_scored_by_its_pooled_head(
    store: VectorStore,
) -> None:
    rng = np.random.default_rng(5)
    # Pooled head features are non-negative (ReLU6); stage 6's are not.
    head = rng.random(HEAD)
    stage = rng.normal(size=WHOLE - HEAD)
    item = multiscale(head, stage)
    vectors = {
        # The same photo edited: its head barely moves, its stage-6 part moves a lot.
        "copy": multiscale(head + 0.15 * rng.random(HEAD), rng.normal(size=WHOLE - HEAD)),
        # Another item that looks alike: the same stage-6 part, another head.
        "look-alike": multiscale(rng.random(HEAD) ** 4, stage),
    }
    for i in range(30):
        vectors[f"other-{i}"] = multiscale(rng.random(HEAD) ** 3, rng.normal(size=WHOLE - HEAD))
    store.ensure_collection(WHOLE)
    store.upsert(
        [StoredItem(point_id(k, "t"), {"item_id": k, "tenant": "t"}, v) for k, v in vectors.items()]
    )
    heads = {k: unit(v[:HEAD]) for k, v in vectors.items()}
    expected = {k: float(h @ unit(item[:HEAD])) for k, h in heads.items()}
    assert float(vectors["look-alike"] @ item) > float(vectors["copy"] @ item)
    assert expected["copy"] > 0.95 > expected["look-alike"]

    query = candidate_query(item, MODEL)
    floor = 0.8  # the embedding similarity a candidate must reach
    hits = store.search(query.vector, limit=50, score_threshold=query.score_threshold(floor))
    found = {h.payload["item_id"]: query.similarity(h.score) for h in hits}
    # Ranked by the head's cosine, the copy first; what is below the floor left out.
    above = sorted((k for k, s in expected.items() if s >= floor - 1e-5), key=expected.__getitem__)
    assert [h.payload["item_id"] for h in hits] == above[::-1]
    assert above[-1] == "copy"
    # A float16 shard scores within a few 1e-4 of float32.
    tolerance = 2e-3 if holds_float16(store) else 1e-5
    for name, similarity in found.items():
        assert similarity == pytest.approx(expected[name], abs=tolerance)


@pytest.mark.parametrize(
    ("model", "dim"),
    [
        (MODEL, HEAD),  # pooled features
        (f"{MODEL}-head-shoes", WHOLE),  # a trained head's name, whatever its size
        ("custom-my-net", WHOLE),  # a user's own model
        (None, WHOLE),  # a point stored without a model name
    ],
)
def test_any_other_vector_is_compared_whole(model: str | None, dim: int) -> None:
    vector = unit(np.random.default_rng(1).normal(size=dim))
    query = candidate_query(vector, model)
    np.testing.assert_array_equal(query.vector, vector)
    assert query.similarity(0.7) == 0.7
    assert query.score_threshold(0.8) == pytest.approx(0.8)


def test_the_candidate_floor_follows_how_the_models_head_is_pooled() -> None:
    """A GeM-pooled head's cosines sit higher over the same pictures than an average-pooled
    one's: its floor is its own (docs/indexer.md measures both). The default model pools by
    GeM; pinned to average pooling (the earlier default) it gets the floor chosen there; a
    trained head's vectors or a user's own model's keep that floor too (not measured)."""
    assert CANDIDATE_FLOORS["gem"] > CANDIDATE_FLOORS["avg"]
    for model, backbone in BACKBONES.items():
        assert candidate_floor(model) == CANDIDATE_FLOORS[backbone.resolve()[1]]
        assert candidate_floor(model, "gem") == CANDIDATE_FLOORS["gem"]
        assert candidate_floor(model, "avg") == CANDIDATE_FLOORS["avg"]
        assert candidate_floor(model, head="shop") == CANDIDATE_FLOORS["avg"]
    assert candidate_floor(DEFAULT_MODEL) == CANDIDATE_FLOORS["gem"]
    assert candidate_floor(CUSTOM_MODEL) == CANDIDATE_FLOORS["avg"]
