"""Bring your own model: a Keras model saved by the test becomes the service's backbone
(LOOKALIKE_MODEL=custom), end to end through the embedded service."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.schema import ModelNotBuilt
from lookalike.settings import Settings
from support import labelled_images, post_item, wait_for_task

SIZE = 48


def _tiny_model(path: Path, seed: int = 0) -> Path:
    """A two-layer convolutional net ending in a 16-channel feature map (no pooling)."""
    from worker.model.files import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    with warnings.catch_warnings():
        # Keras 3.15 + NumPy 2 warn once per variable about np.array(copy=False) on save.
        warnings.simplefilter("ignore", DeprecationWarning)
        keras.Model(inputs, x).save(path)
    return path


@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("byo") / "tiny_net.keras")


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.open(path).copy() for _, path in labelled_images(per_category=2)]


def test_a_keras_model_file_becomes_the_backbone(
    user_model: Path, photos: list[Image.Image], tmp_path: Path
) -> None:
    import keras

    from worker.model import get_embedder
    from worker.model.custom import CustomModel, build_custom_cache
    from worker.model.preprocess import preprocess

    settings = Settings(
        model="custom",
        custom_model_path=user_model,
        custom_model_input_mode="tf",
        model_cache=tmp_path / "models",
    )
    with pytest.raises(ModelNotBuilt, match="custom model"):
        settings.vector_size()

    # The default features are multiscale, which a user's model (one output) has no use for.
    assert settings.features == "multiscale" and settings.model_features == "pooled"
    embedder = get_embedder(settings)

    assert (embedder.name, embedder.dim, embedder.input_size) == ("custom-tiny-net", 16, SIZE)
    assert embedder.version.startswith("custom-tiny-net:") and embedder.version.endswith(":resize")
    assert settings.vector_size() == 16  # the API reads it from the manifest, without TensorFlow
    vectors = embedder.embed(photos)
    assert vectors.shape == (len(photos), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # What the user's model itself computes on pixels scaled to [-1, 1], averaged over space.
    original = keras.saving.load_model(user_model)
    pixels = preprocess(photos, SIZE, "resize").astype(np.float32) / 127.5 - 1.0
    expected = np.asarray(original.predict_on_batch(pixels)).mean(axis=(1, 2))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    with pytest.raises(ValueError, match="no 'logits' output"):
        embedder.classify(photos[:1])

    # Converted once; other options are another version, never mixed up with this one.
    custom = CustomModel.from_settings(settings)
    assert not build_custom_cache(custom, settings.model_dir).built
    raw = get_embedder(settings.replace(custom_model_input_mode="raw"))
    assert raw.version != embedder.version


def test_a_weights_file_for_a_known_architecture(tmp_path: Path) -> None:
    """As a user with ImageNet "notop" weights downloaded elsewhere would: the architecture
    by name, the weights file by path (here: random weights the test saved)."""
    from worker.model.custom import CustomModel, build_custom_cache
    from worker.model.files import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(1)
    net = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))
    weights = tmp_path / "mobilenet_notop.weights.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net.save_weights(weights)

    custom = CustomModel(weights, arch="mobilenet_v2", input_size=96)
    files = build_custom_cache(custom, tmp_path / "models")

    assert (files.feature_dim, files.input_size) == (1280, 96)
    pixels = np.random.default_rng(0).integers(0, 256, (1, 96, 96, 3)).astype(np.float32)
    from worker.model.runners import TFLiteRunner

    got = TFLiteRunner(files.tflite, threads=1).run(pixels)["features"]
    expected = np.asarray(net.predict_on_batch(pixels / 127.5 - 1.0)).mean(axis=(1, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_unusable_models_are_refused(tmp_path: Path) -> None:
    from worker.model.cache import ModelCacheError
    from worker.model.custom import CustomModel, build_custom_cache

    with pytest.raises(ModelCacheError, match="not found"):
        build_custom_cache(CustomModel(tmp_path / "missing.keras"), tmp_path)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelCacheError, match="cannot load"):
        build_custom_cache(CustomModel(junk), tmp_path)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_custom_cache(CustomModel(junk, arch="alexnet"), tmp_path)


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def custom_service(user_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from launcher.embedded import start_embedded
    from worker.model.__main__ import main as build_main

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("byo-service") / "data",
        model="custom",
        custom_model_path=user_model,
    )
    # As a deployment would: convert the model before the service starts.
    argv = ["build", "--custom", str(user_model), "--cache-dir", str(settings.model_dir)]
    assert build_main(argv) == 0
    service = start_embedded(settings)
    yield service
    service.stop()


def test_the_service_indexes_and_searches_with_the_custom_model(custom_service: object) -> None:
    client = custom_service.app.test_client()  # type: ignore[attr-defined]
    chosen = labelled_images(per_category=2)
    for category, path in chosen:
        item_id = f"{category}-{path.stem}"
        resp = post_item(client, item_id, path.read_bytes(), {"category": category})
        assert resp.status_code == 202, resp.get_json()
        assert wait_for_task(client, resp.get_json()["task_id"])["status"] == "succeeded"

    category, path = chosen[0]
    item = client.get(f"/v1/items/{category}-{path.stem}").get_json()
    assert item["model"] == "custom-tiny-net"
    similar = client.get(f"/v1/items/{category}-{path.stem}/similar?limit=3").get_json()
    assert len(similar["items"]) == 3
    found = client.post(
        "/v1/search?limit=1",
        data={"image": (path.open("rb"), "query.png")},
        content_type="multipart/form-data",
    ).get_json()
    assert found["items"][0]["id"] == f"{category}-{path.stem}"
