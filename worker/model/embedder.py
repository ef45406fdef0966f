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

from worker.model import efficientnet_lite
from worker.model.cache import build_model_cache
from worker.model.preprocess import MODES, method, preprocess
from worker.model.runtime import Runner, make_runner

if TYPE_CHECKING:
    from lookalike.settings import Settings


class Embedder:
    """One model, one preprocessing, one runtime; safe to share between threads."""

    dim: int = efficientnet_lite.FEATURE_DIM

    def __init__(
        self,
        name: str,
        version: str,
        input_size: int,
        runner: Runner,
        preprocess: str = "resize",
        batch_size: int = 32,
    ) -> None:
        if preprocess not in MODES:
            raise ValueError(f"unknown preprocess mode {preprocess!r}; choose one of {MODES}")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.name = name
        # Embeddings from two embedders are comparable exactly when their versions match:
        # same weights, same framing of the image. The runtime does not enter: Keras and
        # TFLite agree to ~1e-5.
        self.version = f"{version}:{preprocess}"
        self.input_size = input_size
        self.preprocess = preprocess
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
        """Raw model outputs ``{"features", "logits"}`` for already-framed pixels.

        ``pixels`` is (n, input_size, input_size, 3), uint8 or float in [0, 255].
        """
        if pixels.ndim != 4 or pixels.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected pixels (n, {self.input_size}, {self.input_size}, 3), got {pixels.shape}"
            )
        n = len(pixels)
        out = {
            "features": np.empty((n, self.dim), dtype=np.float32),
            "logits": np.empty((n, efficientnet_lite.NUM_CLASSES), dtype=np.float32),
        }
        for start in range(0, n, self.batch_size):
            result = self._runner.run(pixels[start : start + self.batch_size].astype(np.float32))
            for key, array in out.items():
                array[start : start + len(result[key])] = result[key]
        return out

    def _outputs(self, images: Sequence[Image.Image], key: str) -> np.ndarray:
        # Frame one batch at a time so a large request never holds all its pixels at once.
        parts = [
            self.infer(self.pixels(images[start : start + self.batch_size]))[key]
            for start in range(0, len(images), self.batch_size)
        ]
        if not parts:
            width = self.dim if key == "features" else efficientnet_lite.NUM_CLASSES
            return np.empty((0, width), dtype=np.float32)
        return np.concatenate(parts)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, dim): the pooled 1280-d features, each row scaled to unit length."""
        features = self._outputs(images, "features")
        return l2_normalise(features)

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """float32 (n, 1000) ImageNet logits (no softmax)."""
        return self._outputs(images, "logits")


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
) -> Embedder:
    """An embedder for ``model`` from ``cache_dir``, converting the weights there if needed."""
    method(preprocess)  # fail on a bad mode before the slow part
    files = build_model_cache(model, Path(cache_dir))
    runner = make_runner(runtime, files, threads)
    return Embedder(files.model, files.version, files.input_size, runner, preprocess, batch_size)


_lock = threading.Lock()
_embedders: dict[tuple[object, ...], Embedder] = {}
_pid = os.getpid()


def get_embedder(settings: Settings) -> Embedder:
    """The process's embedder for these settings, loaded on first use."""
    global _pid
    key = (
        settings.model,
        str(Path(settings.model_dir).resolve()),
        settings.runtime,
        settings.preprocess,
        settings.embed_batch_size,
        settings.inference_threads,
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
            )
            _embedders[key] = embedder
        return embedder
