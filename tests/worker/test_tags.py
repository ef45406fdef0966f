"""Tags from the classifier: the generated class table, the tags of real photos from the
real model (TFLite, as the worker runs it), and what the pipeline stores and drops."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lookalike.images import sha256_hex
from lookalike.schema import LABELS_FIELD, TAGS_FIELD, point_id
from lookalike.settings import Settings
from worker import pipeline
from worker.celery_app import create_celery, runtime_of
from worker.model import load_embedder
from worker.model.tags import imagenet_classes, tag_payloads


def _png(name: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(out, "PNG")
    return out.getvalue()


def test_the_table_names_the_classifiers_classes_in_order_with_their_parents() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    by_name = {c.names[0]: c for c in classes}
    # "shoe" finds running shoes and sandals; "bag" backpacks; a sweatshirt is a pullover.
    for label, parent in [
        ("running shoe", "shoe"),
        ("sandal", "shoe"),
        ("backpack", "bag"),
        ("sweatshirt", "pullover"),
        ("golden retriever", "dog"),
    ]:
        assert parent in by_name[label].parents, label
    # The parents too general to search by are left out.
    assert not any("artifact" in c.parents or "device" in c.parents for c in classes)


def test_the_classifier_tags_a_photo_in_the_same_model_call(model_cache_dir: Path) -> None:
    embedder = load_embedder("efficientnet-lite0", model_cache_dir, runtime="tflite")
    images = [Image.open(io.BytesIO(_png(n))).convert("RGB") for n in ("coffee", "rocket")]
    vectors, logits = embedder.embed_and_classify(images)
    assert logits is not None and logits.shape == (2, 1000)
    np.testing.assert_allclose(vectors, embedder.embed(images), atol=1e-6)

    coffee, rocket = tag_payloads(logits, top_k=3, min_score=0.1)
    assert coffee[LABELS_FIELD][0]["name"] == "espresso"
    assert coffee[LABELS_FIELD][0]["wnid"] == "n07920052"
    assert 0.1 <= coffee[LABELS_FIELD][-1]["score"] <= coffee[LABELS_FIELD][0]["score"] <= 1
    assert {"espresso", "coffee", "beverage"} <= set(coffee[TAGS_FIELD])
    assert "coffee" not in rocket[TAGS_FIELD]
    # Tagging off: no fields; a threshold nothing reaches: no labels, no tags.
    assert tag_payloads(logits, top_k=0, min_score=0.1) == [{}, {}]
    assert tag_payloads(logits, top_k=3, min_score=1.0)[0] == {LABELS_FIELD: [], TAGS_FIELD: []}


def test_ingest_stores_tags_and_a_reindex_without_tags_drops_them(settings: Settings) -> None:
    runtime = runtime_of(create_celery(settings))
    try:
        data = _png("coffee")
        sha = sha256_hex(data)
        runtime.blobs.put(sha, data)
        item = {"id": "cup-1", "tenant": "shop", "image_sha256": sha, "metadata": {}}
        # An item indexed before tags (or with them off) has none ...
        runtime.settings = runtime.settings.replace(tags_top_k=0)
        assert pipeline.index_items(runtime, [item]).indexed == ["cup-1"]
        (stored,) = runtime.store.retrieve([point_id("cup-1", "shop")])
        assert TAGS_FIELD not in stored.payload
        # ... and gets them from a reindex, as an existing catalog does (indexer reindex).
        runtime.settings = runtime.settings.replace(tags_top_k=3)
        tagged = runtime.store.create_version(settings.model, settings.vector_size())
        assert pipeline.reindex_items(runtime, tagged.name, [stored.point_id])["indexed"]
        (stored,) = runtime.store.version(tagged.name).retrieve([stored.point_id])
        assert stored.payload[LABELS_FIELD][0]["name"] == "espresso"
        assert "coffee" in stored.payload[TAGS_FIELD]
        # A new ingest tags too.
        assert pipeline.index_items(runtime, [item]).indexed == ["cup-1"]
        (ingested,) = runtime.store.retrieve([point_id("cup-1", "shop")])
        assert ingested.payload[TAGS_FIELD] == stored.payload[TAGS_FIELD]

        # A reindex with tags off rebuilds the item without them (and keeps the rest).
        runtime.settings = runtime.settings.replace(tags_top_k=0)
        version = runtime.store.create_version(settings.model, settings.vector_size())
        report = pipeline.reindex_items(runtime, version.name, [stored.point_id])
        assert report["indexed"] == ["cup-1"]
        (again,) = runtime.store.version(version.name).retrieve([stored.point_id])
        assert TAGS_FIELD not in again.payload and LABELS_FIELD not in again.payload
        assert again.payload["image_sha256"] == sha
    finally:
        runtime.close()


@pytest.mark.parametrize(("top_k", "min_score"), [(-1, 0.1), (11, 0.1), (3, 1.5)])
def test_tag_settings_out_of_range_are_refused(top_k: int, min_score: float) -> None:
    from lookalike.settings import SettingsError

    with pytest.raises(SettingsError, match="TAGS"):
        Settings(tags_top_k=top_k, tags_min_score=min_score)
