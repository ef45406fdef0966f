"""LOOKALIKE_TAGS_PASS=224: the logits (the tags) from a second pass of the same weights over
the input resized in the graph to 224 px, the side the classifier was trained at; the vectors
stay the 320 px default's. docs/quality.md "Tags" measures what it gives back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lookalike.settings import Settings
from worker.model import Embedder, build_model_cache, get_embedder, load_embedder

# As tests/worker/test_model.py: a float32 port against the float64 reference.
PARITY_TOLERANCE = 1e-4
TAGS = "224"


@pytest.fixture(scope="module", params=["tflite", "keras"])
def tagged(request: pytest.FixtureRequest, model_cache_dir: Path) -> Embedder:
    return load_embedder(
        "efficientnet-lite0",
        model_cache_dir,
        runtime=request.param,
        batch_size=2,
        features="multiscale",
        tags_pass=TAGS,
    )


@pytest.fixture(scope="module")
def reference(load_reference: Callable[[str], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    # The default's reference images (320 px) and its PyTorch features.
    return load_reference("efficientnet-lite0-320-gem")


def test_features_are_the_defaults_and_logits_the_224_models(
    tagged: Embedder, reference: dict[str, np.ndarray], model_cache_dir: Path
) -> None:
    import keras

    pixels = reference["images"].astype(np.float32)
    out = tagged.infer(pixels)
    error = np.abs(out["features"] - reference["features"]).max()
    assert error <= PARITY_TOLERANCE, f"features: max abs error {error:.2e}"
    default = load_embedder("efficientnet-lite0", model_cache_dir, batch_size=2)
    np.testing.assert_allclose(
        out["stage6"], default.infer(pixels)["stage6"], atol=PARITY_TOLERANCE
    )
    # The 224 px model (the weights as they ship) on the same pixels resized the same way.
    resized = np.asarray(keras.layers.Resizing(224, 224, interpolation="bilinear")(pixels))
    shipped = load_embedder(
        "efficientnet-lite0", model_cache_dir, batch_size=2, input_size=224, pooling="avg"
    )
    expected = shipped.infer(resized)["logits"]
    error = np.abs(out["logits"] - expected).max()
    assert error <= PARITY_TOLERANCE, f"logits: max abs error {error:.2e}"
    assert (out["logits"].argmax(1) == expected.argmax(1)).all()
    # ...which are not the default's own 320 px logits.
    assert np.abs(out["logits"] - default.infer(pixels)["logits"]).max() > 0.1


def test_own_files_and_version_and_the_default_keeps_its_own(
    tagged: Embedder, model_cache_dir: Path
) -> None:
    default = build_model_cache("efficientnet-lite0", model_cache_dir)
    files = build_model_cache("efficientnet-lite0", model_cache_dir, tags_pass=TAGS)
    assert not files.built and files.tags_pass == TAGS
    assert files.keras.name == "efficientnet-lite0-320-gem-tags224.keras"
    assert files.version == f"{default.version}:tags224"
    assert tagged.version == f"{default.version}:tags224:resize:multiscale"
    assert json.loads(files.manifest.read_text())["tags_pass"] == TAGS
    # The default's files and manifest are as they were.
    assert default.keras.name == "efficientnet-lite0-320-gem.keras"
    assert "tags_pass" not in json.loads(default.manifest.read_text())


def test_get_embedder_follows_the_setting(tagged: Embedder, model_cache_dir: Path) -> None:
    settings = Settings(model_cache=model_cache_dir)
    on = settings.replace(tags_pass=TAGS)
    assert get_embedder(on) is not get_embedder(settings)
    assert get_embedder(on).version.removesuffix(":tags224:resize:multiscale") == (
        get_embedder(settings).version.removesuffix(":resize:multiscale")
    )


def test_a_pass_at_the_models_own_side_or_another_side_is_refused(model_cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="repeats"):
        build_model_cache(
            "efficientnet-lite0", model_cache_dir, input_size=224, pooling="avg", tags_pass=TAGS
        )
    with pytest.raises(ValueError, match="unknown tags pass"):
        build_model_cache("efficientnet-lite0", model_cache_dir, tags_pass="320")


def test_a_tuxpaint_stamp_gets_the_224_models_top_tag_back(
    tagged: Embedder, model_cache_dir: Path
) -> None:
    """A chicken the 320 px default calls a black grouse: with the second pass, the worker's
    tags name it as the 224 px model does."""
    from PIL import Image

    from tests.support import TUXPAINT_STAMPS
    from worker.model.tags import tag_payloads

    image = Image.open(TUXPAINT_STAMPS / "animals" / "birds" / "chicken_profile.png")
    image.load()
    shipped = load_embedder("efficientnet-lite0", model_cache_dir, input_size=224, pooling="avg")
    default = load_embedder("efficientnet-lite0", model_cache_dir)
    top = {}
    for name, embedder in (("tagged", tagged), ("224", shipped), ("default", default)):
        logits = embedder.embed_and_classify([image])[1]
        assert logits is not None
        top[name] = tag_payloads(logits, 3, 0.1)[0]["labels"][0]["name"]
    assert top["tagged"] == top["224"] == "hen"
    assert top["default"] != "hen"
