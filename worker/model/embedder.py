"""What the Celery worker calls: images in, L2-normalised embeddings (or logits) out.

``get_embedder(settings)`` loads the model lazily, once per process and settings, behind a
lock: the first task pays for loading (and, on a fresh disk, converting) the model, later
tasks reuse it. A forked child never reuses its parent's interpreter (thread pools do not
survive ``fork``); it loads its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.settings import FEATURES
from worker.model import efficientnet_lite
from worker.model.cache import ModelFiles, build_model_cache
from worker.model.custom import CustomModel
from worker.model.preprocess import method, preprocess
from worker.model.runners import KerasRunner, Runner, make_runner

if TYPE_CHECKING:
    from lookalike.settings import Settings
    from worker.model.heads import Head


class Embedder:
    """One model, one preprocessing, one runtime; safe to share between threads.

    Variants (docs/quality.md): ``features="multiscale"`` reads the pooled head concatenated
    with pooled earlier stages; ``tta_flip`` averages the features of the image and its
    mirror image; ``head`` maps the backbone's vectors through a catalog-tuned head.
    """

    def __init__(
        self,
        name: str,
        version: str,
        input_size: int,
        runner: Runner,
        preprocess: str = "resize",
        batch_size: int = 32,
        *,
        dim: int = efficientnet_lite.FEATURE_DIM,
        features: str = "pooled",
        tta_flip: bool = False,
        head: Head | None = None,
    ) -> None:
        method(preprocess)  # "resize" and "crop"; "pad" and "stretch" by name, for benchmarks
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}; choose one of {FEATURES}")
        # Embeddings from two embedders are comparable exactly when their versions match:
        # same weights, same framing of the image, same variants. The runtime does not
        # enter: Keras and TFLite agree to ~1e-5.
        base_version = f"{version}:{preprocess}"
        if features != "pooled":
            base_version += f":{features}"
        if tta_flip:
            base_version += ":flip"
        # What the backbone alone makes: a head takes these vectors, and names them.
        self.base_version = base_version
        self.base_dim = dim
        self.name = name
        self.version = base_version
        self.dim = dim
        if head is not None:
            if head.base_version != base_version:
                raise ValueError(
                    f"head {head.name!r} was trained on {head.base_version} vectors, but this "
                    f"embedder makes {base_version} vectors; train the head again"
                )
            self.name = f"{name}-head-{head.name}"
            self.version = f"{base_version}:{head.version}"
            self.dim = head.dim
        self.input_size = input_size
        self.preprocess = preprocess
        self.features = features
        self.tta_flip = tta_flip
        self.head = head
        self.batch_size = batch_size
        self.runtime = runner.name
        self.threads = runner.threads
        self._runner = runner

    def __repr__(self) -> str:
        return (
            f"Embedder({self.version!r}, runtime={self.runtime!r}, "
            f"batch_size={self.batch_size}, threads={self.threads})"
        )

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The uint8 model input for ``images``, framed by this embedder's preprocessing."""
        return preprocess(images, self.input_size, self.preprocess)

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs for already-framed pixels: ``features``, ``logits`` and
        ``stage6`` for EfficientNet-Lite, ``features`` alone for a user's own model.

        ``pixels`` is (n, input_size, input_size, 3), uint8 or float in [0, 255].
        """
        if pixels.ndim != 4 or pixels.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected pixels (n, {self.input_size}, {self.input_size}, 3), got {pixels.shape}"
            )
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(pixels), self.batch_size):
            result = self._runner.run(pixels[start : start + self.batch_size].astype(np.float32))
            for key, array in result.items():
                parts.setdefault(key, []).append(array)
        if not parts:
            result = self._runner.run(np.zeros((1, *pixels.shape[1:]), dtype=np.float32))
            return {key: array[:0] for key, array in result.items()}
        return {key: np.concatenate(arrays) for key, arrays in parts.items()}

    def _output(self, pixels: np.ndarray, key: str) -> np.ndarray:
        out = self.infer(pixels)
        if key not in out:
            raise ValueError(f"model {self.name!r} has no {key!r} output (it has {sorted(out)})")
        return out[key]

    def _backbone(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The backbone's vectors for framed pixels, before the final scaling, and the
        classifier's logits from the same call (None for a model without them)."""
        keys = ("features",) if self.features == "pooled" else ("features", "stage6")
        out = self.infer(pixels)
        logits = out.get("logits")
        if self.tta_flip:
            mirrored = self.infer(np.ascontiguousarray(pixels[:, :, ::-1]))
            # Sum, not mean: the vectors are scaled to unit length afterwards anyway.
            out = {key: out[key] + mirrored[key] for key in keys if key in out}
        missing = [key for key in keys if key not in out]
        if missing:
            raise ValueError(f"model {self.name!r} has no {missing[0]!r} output")
        if self.features == "pooled":
            return out["features"], logits
        # Multiscale: each part scaled to unit length first, so both weigh the same.
        return np.concatenate([l2_normalise(out[key]) for key in keys], axis=1), logits

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, dim): the embedding, each row scaled to unit length.

        Without variants, the pooled 1280-d features of the backbone.
        """
        return self.embed_and_classify(images)[0]

    def embed_and_classify(
        self, images: Sequence[Image.Image]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The embedding (as :meth:`embed`) and the ImageNet logits (n, 1000) of the same
        model calls: tags cost no second inference. Logits None: the model has none (a
        user's own model)."""
        # Frame one batch at a time so a large request never holds all its pixels at once.
        parts = [
            self._backbone(self.pixels(images[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        if not parts:
            return np.empty((0, self.dim), dtype=np.float32), None
        vectors = l2_normalise(np.concatenate([vectors for vectors, _ in parts]))
        if self.head is not None:
            vectors = l2_normalise(self.head.apply(vectors))
        logit_parts = [logits for _, logits in parts]
        if any(logits is None for logits in logit_parts):
            return vectors, None
        return vectors, np.concatenate(logit_parts)  # type: ignore[arg-type]

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, 1000) ImageNet logits (no softmax)."""
        parts = [
            self._output(self.pixels(images[start : start + self.batch_size]), "logits")
            for start in range(0, len(images), self.batch_size)
        ]
        if not parts:
            return np.empty((0, efficientnet_lite.NUM_CLASSES), dtype=np.float32)
        return np.concatenate(parts)


def l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    # Pooled ReLU6 activations are never all zero in practice; guard the division anyway.
    return (features / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def load_embedder(
    model: str,
    cache_dir: Path,
    runtime: str = "tflite",
    preprocess: str = "resize",
    batch_size: int = 32,
    threads: int = 0,
    *,
    instances: int = 1,
    features: str = "pooled",
    tta_flip: bool = False,
    head: str = "",
    custom: CustomModel | None = None,
    input_size: int = 0,
    pooling: str = "",
    tags_pass: str = "",
) -> Embedder:
    """An embedder for ``model`` from ``cache_dir``, converting the weights there if needed.

    ``model="custom"`` takes a user's own Keras model, described by ``custom``; ``head``
    names a trained head in ``cache_dir/heads``. ``input_size`` and ``pooling`` of the head
    ("avg", "gem") make another model of the same weights; 0 and "": the backbone's defaults
    (lookalike/models.py; Lite0 at 320 px with GeM). ``tags_pass`` ("224"): the logits from
    a second pass at that side (LOOKALIKE_TAGS_PASS).
    """
    method(preprocess)  # fail on a bad mode before the slow part
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; choose one of {FEATURES}")
    files: ModelFiles
    if model == "custom":
        from worker.model.custom import build_custom_cache

        if custom is None:
            raise ValueError("model 'custom' needs the custom model's description")
        if features != "pooled":
            raise ValueError("a custom model has only pooled features")
        if input_size or pooling or tags_pass:
            raise ValueError("a custom model has its own input size, pooling and logits")
        files = build_custom_cache(custom, Path(cache_dir))
    else:
        # Keras alone needs no TFLite file (nor TensorFlow, on another Keras backend).
        files = build_model_cache(
            model,
            Path(cache_dir),
            tflite=runtime == "tflite",
            input_size=input_size,
            pooling=pooling,
            tags_pass=tags_pass,
        )
    loaded_head = None
    if head:
        from worker.model.heads import load_head

        loaded_head = load_head(Path(cache_dir), head, runtime, threads)
    runner = make_runner(runtime, files, threads, instances)
    if isinstance(runner, KerasRunner):
        runner.prepare(batch_size)
    dim = files.multiscale_dim if features == "multiscale" else files.feature_dim
    return Embedder(
        files.model,
        files.version,
        files.input_size,
        runner,
        preprocess,
        batch_size,
        dim=dim,
        features=features,
        tta_flip=tta_flip,
        head=loaded_head,
    )


_lock = threading.Lock()
_embedders: dict[tuple[object, ...], Embedder] = {}
_pid = os.getpid()


def get_embedder(settings: Settings, task_threads: int = 1) -> Embedder:
    """The process's embedder for these settings, loaded on first use.

    ``task_threads``: how many threads of the caller run the model at once; with
    ``inference_instances`` 0, the embedder keeps an interpreter for each.
    """
    global _pid
    custom = CustomModel.from_settings(settings) if settings.model == "custom" else None
    instances = settings.inference_instances or max(1, task_threads)
    key = (
        settings.model,
        str(Path(settings.model_dir).resolve()),
        settings.runtime,
        settings.preprocess,
        settings.embed_batch_size,
        settings.inference_threads,
        instances,
        settings.model_features,
        settings.tta_flip,
        settings.head,
        custom,
        settings.input_size,
        settings.pooling,
        settings.tags_pass,
    )
    with _lock:
        if _pid != os.getpid():
            _embedders.clear()
            _pid = os.getpid()
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = load_embedder(
                settings.model,
                settings.model_dir,
                runtime=settings.runtime,
                preprocess=settings.preprocess,
                batch_size=settings.embed_batch_size,
                threads=settings.inference_threads,
                instances=instances,
                features=settings.model_features,
                tta_flip=settings.tta_flip,
                head=settings.head,
                custom=custom,
                input_size=settings.input_size,
                pooling=settings.pooling,
                tags_pass=settings.tags_pass,
            )
            _embedders[key] = embedder
        return embedder
