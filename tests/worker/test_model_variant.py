"""LOOKALIKE_INPUT_SIZE and LOOKALIKE_POOLING: the shipped weights at another input size, the
head GeM-pooled. The default (no size, no pooling given) is Lite0 at 320 px with GeM; the
model as the weights ship (224 px, average pooling: the default before it) stays a setting
away, with its own files and version."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lookalike.models import get_backbone
from lookalike.settings import Settings
from worker.model import Embedder, build_model_cache, get_embedder, load_embedder

SIZE = 320
ESPRESSO = 967  # ImageNet class index
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]


@pytest.fixture(scope="module")
def gem(model_cache_dir: Path) -> dict[str, Embedder]:
    """The default model, 320 px with GeM, on both runtimes (the TFLite build writes the
    Keras file too)."""
    return {
        runtime: load_embedder(
            "efficientnet-lite0", model_cache_dir, runtime=runtime, features="multiscale"
        )
        for runtime in ("tflite", "keras")
    }


@pytest.fixture(scope="module")
def shipped(model_cache_dir: Path) -> Embedder:
    """The earlier default: the weights at their own 224 px, the head average-pooled."""
    return load_embedder(
        "efficientnet-lite0", model_cache_dir, features="multiscale", input_size=224, pooling="avg"
    )


def test_tflite_matches_keras(gem: dict[str, Embedder], photos: list[Image.Image]) -> None:
    pixels = gem["tflite"].pixels(photos)
    assert pixels.shape == (len(photos), SIZE, SIZE, 3)
    lite, keras_out = gem["tflite"].infer(pixels), gem["keras"].infer(pixels)
    for key in ("features", "logits", "stage6"):
        scale = float(np.abs(keras_out[key]).max())
        assert np.abs(lite[key] - keras_out[key]).max() <= 1e-5 * max(scale, 1.0), key
    vectors = gem["tflite"].embed(photos)
    assert vectors.shape == (len(photos), 1472)
    assert np.abs(vectors - gem["keras"].embed(photos)).max() < 1e-5


def test_features_are_the_generalised_mean_of_the_head(
    model_cache_dir: Path, gem: dict[str, Embedder], photos: list[Image.Image]
) -> None:
    """The head's map, from the shipped model's own weights run at 320 px, pooled by NumPy
    (the formula docs/quality.md measured); the logits stay on the average, so tags mean
    what they meant."""
    import keras

    from worker.model import efficientnet_lite

    default = keras.saving.load_model(
        build_model_cache(
            "efficientnet-lite0", model_cache_dir, tflite=False, input_size=224, pooling="avg"
        ).keras,
        compile=False,
    )
    resized = efficientnet_lite.build(replace(get_backbone("efficientnet-lite0"), input_size=SIZE))
    for layer in resized.layers:
        if layer.weights:
            layer.set_weights(default.get_layer(layer.name).get_weights())
    probe = keras.Model(
        resized.inputs, [resized.get_layer("features").input, resized.get_layer("logits").output]
    )
    pixels = gem["keras"].pixels(photos).astype(np.float32)
    head_map, logits = probe.predict_on_batch(pixels)
    expected = np.power(np.power(np.maximum(head_map, 1e-6), 3.0).mean(axis=(1, 2)), 1.0 / 3.0)
    got = gem["keras"].infer(pixels)
    np.testing.assert_allclose(got["features"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["logits"], np.asarray(logits), atol=1e-5)
    assert int(got["logits"][0].argmax()) == ESPRESSO


def test_vectors_and_version_differ_from_the_earlier_default(
    model_cache_dir: Path, gem: dict[str, Embedder], shipped: Embedder, photos: list[Image.Image]
) -> None:
    sha12 = json.loads((model_cache_dir / "efficientnet-lite0.json").read_text())["weights"][
        "sha256"
    ][:12]
    # Pinned (224, avg), the version is the one catalogs indexed with the earlier default
    # hold, so their workers keep serving them.
    assert shipped.version == f"efficientnet-lite0:{sha12}:resize:multiscale"
    assert gem["tflite"].version == f"efficientnet-lite0:{sha12}:{SIZE}:gem:resize:multiscale"
    assert gem["tflite"].name == "efficientnet-lite0" and gem["tflite"].dim == shipped.dim
    # The shrink-on-load decode target and the framing follow the embedder's input size.
    assert gem["tflite"].input_size == SIZE and shipped.input_size == 224
    ours, theirs = gem["tflite"].embed(photos), shipped.embed(photos)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.max() < 0.99, cosines


def test_each_variant_has_its_own_files_and_the_shipped_model_keeps_its_own(
    model_cache_dir: Path, gem: dict[str, Embedder], shipped: Embedder
) -> None:
    default = build_model_cache("efficientnet-lite0", model_cache_dir)
    assert not default.built
    assert (default.keras.name, default.tflite.name) == (
        f"efficientnet-lite0-{SIZE}-gem.keras",
        f"efficientnet-lite0-{SIZE}-gem.tflite",
    )
    manifest = json.loads(default.manifest.read_text())
    assert (manifest["input_size"], manifest["pooling"]) == (SIZE, "gem")
    assert manifest["version"] == default.version
    assert default == build_model_cache(
        "efficientnet-lite0", model_cache_dir, input_size=SIZE, pooling="gem"
    )
    # The backbone's own size with average pooling is the model as it ships: the files and
    # version of the earlier default, unchanged.
    own = build_model_cache("efficientnet-lite0", model_cache_dir, input_size=224, pooling="avg")
    assert not own.built
    assert (own.keras.name, own.input_size, own.pooling) == ("efficientnet-lite0.keras", 224, "avg")
    assert own.version == shipped.version.removesuffix(":resize:multiscale")


def test_get_embedder_keeps_one_per_variant(
    model_cache_dir: Path, gem: dict[str, Embedder], shipped: Embedder
) -> None:
    settings = Settings(model_cache=model_cache_dir)
    pinned = settings.replace(input_size=224, pooling="avg")
    assert get_embedder(pinned) is get_embedder(pinned.replace())
    assert get_embedder(pinned) is not get_embedder(settings)
    # A fresh service's settings run the default model; the pinned ones the earlier one.
    assert get_embedder(settings).version == gem["tflite"].version
    assert get_embedder(pinned).version == shipped.version


def test_sizes_out_of_range_and_unknown_poolings_are_refused(model_cache_dir: Path) -> None:
    for size, pooling in ((32, "avg"), (2048, "gem"), (-1, "avg"), (SIZE, "max")):
        with pytest.raises(ValueError):
            build_model_cache(
                "efficientnet-lite0", model_cache_dir, input_size=size, pooling=pooling
            )
