"""Bring your own model: a user's Keras model (or weights file) as the backbone.

``LOOKALIKE_MODEL=custom`` with ``LOOKALIKE_CUSTOM_MODEL_PATH`` pointing at

- a Keras model file (``.keras``, or a full-model legacy ``.h5``): its output, globally
  average-pooled if it is a feature map, is the embedding; or
- a weights file of a ``keras.applications`` architecture named by
  ``LOOKALIKE_CUSTOM_MODEL_ARCH`` (e.g. ``vgg16`` with the ImageNet "notop" weights
  downloaded elsewhere): the architecture without its classifier, average-pooled.

The model is wrapped once into the cache like the shipped backbone: an input of [0, 255] RGB
pixels, the input scaling the model expects (``LOOKALIKE_CUSTOM_MODEL_INPUT_MODE``: ``raw``,
or keras.applications' ``tf``, ``torch``, ``caffe`` modes, as a fixed 1x1 convolution), the
model, pooling; saved as ``custom-<name>.keras`` and ``.tflite`` with a manifest that records
the vector size (so the API can size the collection without TensorFlow). The version names
the source file's sha256 and the options: vectors of two files are never mixed up.

Importing this module is cheap; Keras is imported only to convert.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.schema import custom_manifest_path, custom_model_name
from worker.model.cache import ModelCacheError, ModelFiles
from worker.model.files import import_tensorflow, locked, sha256_file

if TYPE_CHECKING:
    from lookalike.settings import Settings

log = logging.getLogger(__name__)

CUSTOM_FORMAT = 1
INPUT_MODES = ("raw", "tf", "torch", "caffe")
# Relative to the largest output: user models can be deep and their outputs large.
SELF_CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Architecture:
    keras_class: str
    input_size: int
    input_mode: str


# keras.applications models whose ImageNet weights files users bring (include_top=False).
ARCHITECTURES: dict[str, Architecture] = {
    "vgg16": Architecture("VGG16", 224, "caffe"),
    "vgg19": Architecture("VGG19", 224, "caffe"),
    "resnet50": Architecture("ResNet50", 224, "caffe"),
    "resnet50v2": Architecture("ResNet50V2", 224, "tf"),
    "inception_v3": Architecture("InceptionV3", 299, "tf"),
    "xception": Architecture("Xception", 299, "tf"),
    "mobilenet_v2": Architecture("MobileNetV2", 224, "tf"),
    "densenet121": Architecture("DenseNet121", 224, "torch"),
    # EfficientNet and ConvNeXt in keras.applications scale their own input.
    "efficientnet_b0": Architecture("EfficientNetB0", 224, "raw"),
    "convnext_tiny": Architecture("ConvNeXtTiny", 224, "raw"),
}

# keras.applications.imagenet_utils.preprocess_input's constants.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CustomModel:
    """What the settings say about a user's model."""

    path: Path
    arch: str = ""
    # 0: from the model's input shape, or the architecture's default.
    input_size: int = 0
    # "": the architecture's mode, else "raw".
    input_mode: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> CustomModel:
        if settings.custom_model_path is None:
            raise ValueError("LOOKALIKE_MODEL=custom needs LOOKALIKE_CUSTOM_MODEL_PATH")
        return cls(
            Path(settings.custom_model_path).resolve(),
            settings.custom_model_arch,
            settings.custom_model_input_size,
            settings.custom_model_input_mode,
        )

    def resolved_mode(self) -> str:
        if self.input_mode:
            return self.input_mode
        return ARCHITECTURES[self.arch].input_mode if self.arch else "raw"

    def check(self) -> None:
        if self.arch and self.arch not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.resolved_mode() not in INPUT_MODES:
            raise ValueError(f"unknown input mode {self.input_mode!r}; choose one of {INPUT_MODES}")
        if not self.path.is_file():
            raise ModelCacheError(f"custom model file {self.path} not found")


def build_custom_cache(custom: CustomModel, cache_dir: Path, *, force: bool = False) -> ModelFiles:
    """Make sure ``cache_dir`` holds the wrapped user model; convert only when needed."""
    custom.check()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = custom_model_name(custom.path)
    manifest_path = custom_manifest_path(cache_dir, custom.path)
    keras_path, tflite_path = cache_dir / f"{name}.keras", cache_dir / f"{name}.tflite"
    source_sha = sha256_file(custom.path)
    options = f"{source_sha}:{custom.arch}:{custom.resolved_mode()}:{custom.input_size}"
    fingerprint = hashlib.sha256(options.encode()).hexdigest()

    def files(manifest: dict[str, Any], built: bool) -> ModelFiles:
        return ModelFiles(
            model=name,
            keras=keras_path,
            tflite=tflite_path,
            manifest=manifest_path,
            weights_sha256=source_sha,
            version=manifest["version"],
            input_size=int(manifest["input_size"]),
            built=built,
            feature_dim=int(manifest["feature_dim"]),
            multiscale_dim=0,
        )

    manifest = None if force else _up_to_date(manifest_path, fingerprint)
    if manifest is not None:
        return files(manifest, built=False)
    with locked(cache_dir / f".{name}.lock"):
        manifest = None if force else _up_to_date(manifest_path, fingerprint)
        if manifest is not None:
            return files(manifest, built=False)
        manifest = _convert(custom, name, fingerprint, source_sha, cache_dir)
    return files(manifest, built=True)


def _up_to_date(manifest_path: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != CUSTOM_FORMAT or manifest.get("fingerprint") != fingerprint:
        return None
    for entry in manifest.get("files", {}).values():
        path = manifest_path.parent / entry["name"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return None
    return manifest


def _input_scaling(keras: Any, mode: str) -> Any:
    """keras.applications' preprocess_input ``mode`` as a fixed 1x1 convolution."""
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    bias = np.zeros(3, dtype=np.float32)
    for c in range(3):
        if mode == "tf":
            kernel[0, 0, c, c], bias[c] = 1 / 127.5, -1.0
        elif mode == "torch":
            kernel[0, 0, c, c] = 1 / (255.0 * _TORCH_STD[c])
            bias[c] = -_TORCH_MEAN[c] / _TORCH_STD[c]
        elif mode == "caffe":
            # RGB -> BGR, then the ImageNet mean of each channel subtracted.
            kernel[0, 0, 2 - c, c], bias[c] = 1.0, -_CAFFE_MEAN_BGR[c]
    layer = keras.layers.Conv2D(3, 1, name=f"input_{mode}", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([kernel, bias])
    return layer


def _load_user_model(keras: Any, custom: CustomModel) -> tuple[Any, int]:
    if custom.arch:
        arch = ARCHITECTURES[custom.arch]
        size = custom.input_size or arch.input_size
        constructor = getattr(keras.applications, arch.keras_class)
        model = constructor(
            include_top=False, weights=str(custom.path), input_shape=(size, size, 3)
        )
        return model, size
    try:
        model = keras.saving.load_model(custom.path, compile=False)
    except Exception as exc:
        raise ModelCacheError(f"cannot load {custom.path} as a Keras model: {exc}") from exc
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelCacheError(f"{custom.path}: expected an image input (n, h, w, 3), got {shape}")
    height, width = shape[1], shape[2]
    if custom.input_size:
        if height not in (None, custom.input_size) or width not in (None, custom.input_size):
            raise ModelCacheError(
                f"{custom.path} takes {height}x{width} images, not {custom.input_size}"
            )
        return model, custom.input_size
    if height is None or height != width:
        raise ModelCacheError(
            f"{custom.path} takes {height}x{width} images: set LOOKALIKE_CUSTOM_MODEL_INPUT_SIZE"
        )
    return model, int(height)


def _convert(
    custom: CustomModel, name: str, fingerprint: str, source_sha: str, cache_dir: Path
) -> dict[str, Any]:
    started = time.monotonic()
    log.info("converting custom model %s", custom.path)
    tf = import_tensorflow()
    import keras

    user, size = _load_user_model(keras, custom)
    mode = custom.resolved_mode()
    inputs = keras.Input((size, size, 3), name="pixels")
    x = inputs if mode == "raw" else _input_scaling(keras, mode)(inputs)
    y = user(x)
    if isinstance(y, dict):
        if "features" not in y:
            raise ModelCacheError(f"{custom.path}: several outputs {sorted(y)}, none 'features'")
        y = y["features"]
    elif isinstance(y, list | tuple):
        y = y[0]
    if len(y.shape) == 4:
        y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    elif len(y.shape) != 2:
        raise ModelCacheError(f"{custom.path}: output of shape {y.shape} is not a vector")
    model = keras.Model(inputs, {"features": y}, name=name)
    feature_dim = int(y.shape[-1])

    keras_path, tflite_path = cache_dir / f"{name}.keras", cache_dir / f"{name}.tflite"
    manifest_path = custom_manifest_path(cache_dir, custom.path)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        staged_keras, staged_tflite = staging / keras_path.name, staging / tflite_path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model.save(staged_keras)
        model.export(str(staged_tflite), format="litert", verbose=False)
        difference = _self_check(model, staged_tflite, size)
        if difference > SELF_CHECK_TOLERANCE:
            raise ModelCacheError(f"{name}: TFLite differs from Keras by {difference:.2e}")
        manifest = {
            "format": CUSTOM_FORMAT,
            "model": name,
            "version": f"{name}:{fingerprint[:12]}",
            "fingerprint": fingerprint,
            "input_size": size,
            "input_mode": mode,
            "feature_dim": feature_dim,
            "source": {"path": str(custom.path), "sha256": source_sha, "arch": custom.arch},
            "files": {
                "keras": {"name": keras_path.name, "sha256": sha256_file(staged_keras)},
                "tflite": {"name": tflite_path.name, "sha256": sha256_file(staged_tflite)},
            },
            "built_with": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "keras_vs_tflite_relative_diff": difference,
        }
        os.replace(staged_keras, keras_path)
        os.replace(staged_tflite, tflite_path)
        staged_manifest = staging / manifest_path.name
        staged_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staged_manifest, manifest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s in %.1fs", name, time.monotonic() - started)
    return manifest


def _self_check(model: Any, tflite_path: Path, size: int) -> float:
    from worker.model.runners import TFLiteRunner

    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(model.predict_on_batch(pixels)["features"])
    got = TFLiteRunner(tflite_path, threads=1).run(pixels)["features"]
    scale = max(float(np.abs(expected).max()), 1e-6)
    return float(np.abs(expected - got).max() / scale)
