"""The embedding model: the converted network computes what the PyTorch reference computes,
and the Embedder the worker calls behaves as the service needs (no mocks, the real model)."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lookalike.models import get_backbone
from lookalike.schema import head_part
from lookalike.settings import Settings
from worker.model import Embedder, build_model_cache, get_embedder, load_embedder, preprocess
from worker.model.pth import PthError, load_state_dict

# What "the same network" means here: the largest difference a float32 port may show against
# the reference (computed in float64); PyTorch's own float32 run sits ~6e-6 from it.
PARITY_TOLERANCE = 1e-4
REPO = Path(__file__).resolve().parents[2]
ESPRESSO = 967  # ImageNet class index
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field")


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)())


@pytest.fixture(scope="module")
def embedder(model_cache_dir: Path) -> Embedder:
    return load_embedder("efficientnet-lite0", model_cache_dir)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [photo(name) for name in PHOTOS]


@pytest.mark.parametrize(
    ("reference_name", "model", "input_size", "pooling"),
    [
        # Each backbone as its weights ship: their own side, the head average-pooled.
        ("efficientnet-lite0", "efficientnet-lite0", 224, "avg"),
        ("efficientnet-lite1", "efficientnet-lite1", 240, "avg"),
        ("efficientnet-lite2", "efficientnet-lite2", 260, "avg"),
        # The service's default, as a fresh service runs it (no size, no pooling given):
        # Lite0 at 320 px with the head GeM-pooled.
        ("efficientnet-lite0-320-gem", "efficientnet-lite0", 0, ""),
    ],
)
@pytest.mark.parametrize("runtime", ["keras", "tflite"])
def test_matches_pytorch_reference(
    reference_name: str,
    model: str,
    input_size: int,
    pooling: str,
    runtime: str,
    model_cache_dir: Path,
    load_reference: Callable[[str], dict[str, np.ndarray]],
) -> None:
    reference = load_reference(reference_name)
    embedder = load_embedder(
        model,
        model_cache_dir,
        runtime=runtime,
        batch_size=2,
        input_size=input_size,
        pooling=pooling,
    )
    assert embedder.input_size == reference["images"].shape[1]
    # The reference is named as the model cache names the model's files.
    files = build_model_cache(
        model, model_cache_dir, tflite=runtime == "tflite", input_size=input_size, pooling=pooling
    )
    assert files.keras.stem == reference_name

    out = embedder.infer(reference["images"])

    # The registry's record of this backbone is what the built model is.
    backbone = get_backbone(model)
    assert embedder.input_size == backbone.resolve(input_size, pooling)[0]
    assert {name: value.shape[1] for name, value in out.items()} == dict(backbone.dims)
    for key in ("features", "logits"):
        error = np.abs(out[key] - reference[key]).max()
        assert error <= PARITY_TOLERANCE, f"{model} {runtime} {key}: max abs error {error:.2e}"
    assert (out["logits"].argmax(1) == reference["logits"].argmax(1)).all()


def test_coffee_photo_is_espresso(embedder: Embedder) -> None:
    assert embedder.preprocess == "resize"
    logits = embedder.classify([photo("coffee")])
    assert logits.shape == (1, 1000)
    assert logits[0].argmax() == ESPRESSO


def test_embeddings_are_unit_length_and_deterministic(
    embedder: Embedder, photos: list[Image.Image]
) -> None:
    first = embedder.embed(photos)
    again = embedder.embed(photos)
    assert first.dtype == np.float32
    assert first.shape == (len(photos), embedder.dim) == (len(photos), 1280)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, again)


def test_a_multiscale_vector_starts_with_the_pooled_head_at_one_length(
    model_cache_dir: Path, embedder: Embedder, photos: list[Image.Image]
) -> None:
    # The service's default features; the duplicate test compares the head part alone and
    # relies on it sitting where lookalike.schema says, at the same length in every vector.
    multiscale = get_embedder(Settings(model_cache=model_cache_dir))
    assert multiscale.features == "multiscale" and multiscale.version.endswith(":multiscale")
    vectors = multiscale.embed(photos)
    assert vectors.shape == (len(photos), 1472)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    part = head_part(multiscale.name, multiscale.dim)
    assert part is not None and head_part(embedder.name, embedder.dim) is None
    head = vectors[:, part]
    lengths = np.linalg.norm(head, axis=1)
    np.testing.assert_allclose(lengths, lengths[0], atol=1e-6)
    np.testing.assert_allclose(head / lengths[:, None], embedder.embed(photos), atol=1e-5)


def test_batching_does_not_change_results(model_cache_dir: Path, photos: list[Image.Image]) -> None:
    # Batches of 2 over 5 images: two full batches and a short one.
    batched = load_embedder("efficientnet-lite0", model_cache_dir, batch_size=2)
    together = batched.embed(photos)
    alone = np.concatenate([batched.embed([image]) for image in photos])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert batched.embed([]).shape == (0, 1280)


def test_similar_images_are_nearer_than_different_ones(
    embedder: Embedder, photos: list[Image.Image]
) -> None:
    cat = photo("chelsea")
    mirrored_cat = cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    vectors = embedder.embed([cat, mirrored_cat, *photos[2:]])
    sims = vectors @ vectors[0]
    assert sims[1] > 0.9
    assert sims[1] > sims[2:].max()


def embed_from_threads(
    embedder: Embedder, photos: list[Image.Image], callers: int, offsets: int
) -> dict[int, np.ndarray]:
    """Thread i embeds ``photos[i % offsets:]``, all ``callers`` threads at once."""
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = embedder.embed(photos[i % offsets :])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(callers))
    return results


def test_safe_to_share_between_threads(embedder: Embedder, photos: list[Image.Image]) -> None:
    expected = embedder.embed(photos)
    for i, got in embed_from_threads(embedder, photos, callers=4, offsets=2).items():
        np.testing.assert_allclose(got, expected[i % 2 :], atol=1e-5)


def test_interpreters_side_by_side_give_the_same_vectors(
    model_cache_dir: Path, photos: list[Image.Image]
) -> None:
    one = load_embedder("efficientnet-lite0", model_cache_dir, threads=2, instances=1)
    two = load_embedder("efficientnet-lite0", model_cache_dir, threads=2, instances=2)
    assert (one._runner.instances, two._runner.instances) == (1, 2)  # type: ignore[attr-defined]
    # Never more interpreters than threads: each needs one of its own.
    capped = load_embedder("efficientnet-lite0", model_cache_dir, threads=1, instances=4)
    assert capped._runner.instances == 1  # type: ignore[attr-defined]
    expected = one.embed(photos)
    for i, got in embed_from_threads(two, photos, callers=6, offsets=3).items():
        np.testing.assert_allclose(got, expected[i % 3 :], atol=1e-5)


def test_get_embedder_keeps_an_interpreter_per_task_thread(model_cache_dir: Path) -> None:
    settings = Settings(model_cache=model_cache_dir, inference_threads=2)
    assert get_embedder(settings)._runner.instances == 1  # type: ignore[attr-defined]
    assert get_embedder(settings, task_threads=2)._runner.instances == 2  # type: ignore[attr-defined]
    fixed = settings.replace(inference_instances=1)
    assert get_embedder(fixed, task_threads=2)._runner.instances == 1  # type: ignore[attr-defined]


def test_tflite_runs_under_xnnpack(model_cache_dir: Path, embedder: Embedder) -> None:
    shipped = load_embedder("efficientnet-lite0", model_cache_dir, input_size=224, pooling="avg")
    for each in (embedder, shipped):
        assert each.runtime == "tflite" and each.threads >= 1
        each.embed([photo("coffee")])  # the delegate is applied on the first call
    # The default's GeM head: its two POWs run on TFLite's own kernel, between two XNNPACK
    # partitions that take everything else (docs/model.md); the shipped model is one.
    assert embedder._runner.delegates == ["DELEGATE", "DELEGATE"]  # type: ignore[attr-defined]
    assert shipped._runner.delegates == ["DELEGATE"]  # type: ignore[attr-defined]


def test_version_names_weights_and_framing(model_cache_dir: Path, embedder: Embedder) -> None:
    manifest = json.loads(
        build_model_cache("efficientnet-lite0", model_cache_dir).manifest.read_text()
    )
    sha12 = manifest["weights"]["sha256"][:12]
    # The default's side and pooling are not the backbone's own: the version names them.
    assert embedder.version == f"efficientnet-lite0:{sha12}:320:gem:resize"
    cropping = load_embedder("efficientnet-lite0", model_cache_dir, preprocess="crop")
    assert cropping.version == f"efficientnet-lite0:{sha12}:320:gem:crop"


def test_get_embedder_loads_once_per_process(model_cache_dir: Path) -> None:
    settings = Settings(model_cache=model_cache_dir, embed_batch_size=7)
    got: list[Embedder] = []
    threads = [
        threading.Thread(target=lambda: got.append(get_embedder(settings))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in got}) == 1
    assert get_embedder(settings.replace()) is got[0]
    assert got[0].batch_size == 7
    assert get_embedder(settings.replace(preprocess="crop")) is not got[0]


def test_cache_is_reused_and_repaired(model_cache_dir: Path, tmp_path: Path) -> None:
    files = build_model_cache("efficientnet-lite0", model_cache_dir)
    assert not files.built
    assert files.version.startswith("efficientnet-lite0:")

    copy = tmp_path / "models"
    shutil.copytree(model_cache_dir, copy)
    damaged = copy / files.tflite.name
    damaged.write_bytes(damaged.read_bytes()[:1000])
    repaired = build_model_cache("efficientnet-lite0", copy)
    assert repaired.built
    assert not build_model_cache("efficientnet-lite0", copy).built
    assert load_embedder("efficientnet-lite0", copy).classify([photo("coffee")]).argmax() == (
        ESPRESSO
    )


def test_the_keras_runtime_needs_no_tflite_file(tmp_path: Path) -> None:
    # A GPU worker runs Keras (on JAX where no TensorFlow GPU build is installed): its cache
    # holds the Keras file alone, and a later TFLite user converts both.
    cache = tmp_path / "models"
    files = build_model_cache("efficientnet-lite0", cache, tflite=False)
    assert files.built and files.keras.is_file() and not files.tflite.exists()
    manifest = json.loads(files.manifest.read_text())
    assert set(manifest["files"]) == {"keras"}
    assert manifest["built_with"]["keras_backend"] == "tensorflow"
    keras_only = load_embedder("efficientnet-lite0", cache, runtime="keras")
    assert not files.tflite.exists()
    assert keras_only.classify([photo("coffee")]).argmax() == ESPRESSO

    both = build_model_cache("efficientnet-lite0", cache)
    assert both.built and both.tflite.is_file()
    assert set(json.loads(both.manifest.read_text())["files"]) == {"keras", "tflite"}
    assert not build_model_cache("efficientnet-lite0", cache, tflite=False).built
    assert not build_model_cache("efficientnet-lite0", cache).built


def test_padded_batches_give_the_same_outputs(model_cache_dir: Path) -> None:
    # On JAX the Keras runner pads a batch up to a power of two (one compiled shape per
    # bucket); the padding rows must not reach the caller nor change the real rows.
    from worker.model.runners import KerasRunner, bucket

    assert [bucket(n) for n in (1, 2, 3, 4, 5, 127, 128, 129)] == [1, 2, 4, 4, 8, 128, 128, 256]
    embedder = load_embedder("efficientnet-lite0", model_cache_dir, runtime="keras")
    pixels = embedder.pixels([photo(name) for name in PHOTOS[:3]]).astype(np.float32)
    runner = KerasRunner(build_model_cache("efficientnet-lite0", model_cache_dir).keras)
    assert not runner.pads  # TensorFlow here: no padding needed
    plain = runner.run(pixels)
    runner.pads = True
    runner.prepare(3)
    padded = runner.run(pixels)
    assert plain.keys() == padded.keys()
    for key, value in plain.items():
        assert padded[key].shape == value.shape
        np.testing.assert_allclose(padded[key], value, atol=1e-5)


def test_lite1_builds_and_classifies(model_cache_dir: Path) -> None:
    embedder = load_embedder("efficientnet-lite1", model_cache_dir)
    assert (embedder.name, embedder.input_size, embedder.dim) == ("efficientnet-lite1", 240, 1280)
    assert embedder.classify([photo("coffee")]).argmax() == ESPRESSO


def test_cli_reports_an_up_to_date_cache(model_cache_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.model", "build", "--cache-dir", str(model_cache_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "up to date: efficientnet-lite0:" in done.stdout


def test_importing_the_package_does_not_load_tensorflow() -> None:
    code = "import sys, worker.model; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False False"


def test_unknown_model_and_mode_are_refused(model_cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        load_embedder("efficientnet-b7", model_cache_dir)
    with pytest.raises(ValueError, match="unknown preprocess mode"):
        load_embedder("efficientnet-lite0", model_cache_dir, preprocess="squash")


# --- preprocessing -------------------------------------------------------------------------


def wide_test_card() -> Image.Image:
    """300x100: a red left third, a green middle and a blue right third."""
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :100, 0] = 255
    pixels[:, 100:200, 1] = 255
    pixels[:, 200:, 2] = 255
    return Image.fromarray(pixels)


def test_resize_keeps_the_whole_image_and_crop_keeps_the_centre() -> None:
    resized, cropped = (preprocess([wide_test_card()], 64, mode)[0] for mode in ("resize", "crop"))
    assert resized.shape == cropped.shape == (64, 64, 3)
    # Whole image: red at the left edge, blue at the right, white bars above and below.
    assert tuple(resized[32, 1]) == (255, 0, 0)
    assert tuple(resized[32, 62]) == (0, 0, 255)
    assert tuple(resized[2, 32]) == (255, 255, 255)
    # Centre crop: only the green middle survives.
    assert (cropped[:, :, 1] > 200).all() and (cropped[:, :, [0, 2]] < 60).all()


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (20, 20, 30, 30))
    (pixels,) = preprocess([rgba], 50, "resize")
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[25, 25]) == (0, 0, 255)
    gray = preprocess([Image.new("L", (10, 20), 128)], 16, "crop")
    assert gray.shape == (1, 16, 16, 3) and (gray == 128).all()


# --- checkpoint reader -----------------------------------------------------------------------


def test_checkpoint_reader_reads_the_shipped_weights() -> None:
    from worker.model.cache import weights_file

    state = load_state_dict(weights_file("efficientnet-lite0"))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert len(state) == 296


def test_checkpoint_reader_refuses_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    legacy = tmp_path / "evil.pth"
    with legacy.open("wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"weight": Exploit()}, f, protocol=2)
    with pytest.raises(PthError, match="refusing to unpickle"):
        load_state_dict(legacy)
