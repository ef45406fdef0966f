"""The explanation's maths and its feature maps, on the real TFLite model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from worker.model import load_embedder
from worker.model.match_maps import explain_pair, get_map_reader, shares


def test_the_shares_of_one_image_add_up_to_the_cosine_of_the_means() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((7, 7, 32)), rng.random((7, 7, 32))
    cosine, heat_a, heat_b = shares(a, b)
    mean_a, mean_b = a.mean(axis=(0, 1)), b.mean(axis=(0, 1))
    expected = mean_a @ mean_b / (np.linalg.norm(mean_a) * np.linalg.norm(mean_b))
    assert cosine == pytest.approx(expected)
    assert heat_a.shape == heat_b.shape == (7, 7)
    assert heat_a.sum() == pytest.approx(cosine) and heat_b.sum() == pytest.approx(cosine)


@pytest.mark.parametrize(
    ("input_size", "pooling", "side"),
    [
        # The default: 320 px, the head GeM-pooled, whose maps are its positions'
        # contributions (their mean is the GeM vector).
        (0, "", 10),
        # The model as it ships (the earlier default): 224 px, averaged.
        (224, "avg", 7),
    ],
)
def test_the_maps_pool_to_the_models_outputs_and_the_score_is_the_embeddings(
    model_cache_dir: Path, input_size: int, pooling: str, side: int
) -> None:
    variant = {"input_size": input_size, "pooling": pooling}
    embedder = load_embedder(
        "efficientnet-lite0", model_cache_dir, features="multiscale", **variant
    )
    reader = get_map_reader("efficientnet-lite0", model_cache_dir, **variant)
    images = [Image.fromarray(skimage.data.coffee()), Image.fromarray(skimage.data.chelsea())]
    pixels = embedder.pixels(images)
    pooled = embedder.infer(pixels)
    for i, framed in enumerate(pixels):
        maps = reader.maps(framed)
        assert maps["features"].shape == (side, side, 1280)
        assert maps["stage6"].shape == (side, side, 192)
        for name in ("features", "stage6"):
            np.testing.assert_allclose(maps[name].mean(axis=(0, 1)), pooled[name][i], atol=1e-4)
    out = explain_pair(embedder, reader, *images)
    vectors = embedder.embed(images)
    assert out["score"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-4)
    assert sum(out["split"].values()) == pytest.approx(out["score"], abs=1e-5)
    assert out["images"][0]["heatmap_png"] and len(out["images"][1]["grid"]) == side
