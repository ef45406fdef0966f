"""The two ways to run a converted model: TFLite (default) and Keras (on TensorFlow, or on
whichever backend ``KERAS_BACKEND`` names: JAX runs the same model file on a GPU where no
TensorFlow GPU build is installed).

Both take a float32 batch (pixels (n, size, size, 3) in [0, 255] for a backbone, vectors for
a trained head) and return the model's named outputs (``{"features", "logits"}`` for
EfficientNet-Lite).
Neither kind of model object is safe to call from several threads at once. The Keras runner
serialises its calls; the TFLite runner keeps one interpreter per caller that may run at
once (``instances``) and hands each call an idle one, so calls from a worker's task threads
run side by side.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    name: str
    threads: int

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]: ...


def resolve_threads(threads: int) -> int:
    """0 means every CPU this process may use (TFLite's own default would be one thread)."""
    if threads > 0:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tflite_interpreter_class() -> Any:
    try:
        # LiteRT is TFLite's successor: a small package, and no TensorFlow import.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from worker.model.files import import_tensorflow

        tf = import_tensorflow()
        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteRunner:
    name = "tflite"

    def __init__(self, path: Path, threads: int = 0, instances: int = 1) -> None:
        self.threads = resolve_threads(threads)
        self.instances = max(1, min(instances, self.threads))
        self.path = Path(path)
        # ``instances`` interpreters, each with its share of the threads: calls from several
        # threads run side by side, each on its own cores, instead of queueing for one
        # interpreter whose threads meet at a barrier after every operation.
        per_instance = max(1, self.threads // self.instances)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.instances):
            self._idle.put(self._signature_runner(per_instance))

    def _signature_runner(self, threads: int) -> Any:
        interpreter_class = tflite_interpreter_class()
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it is deprecated in favour of ai_edge_litert.
            warnings.simplefilter("ignore", UserWarning)
            # The default op resolver applies the XNNPACK delegate, with these threads.
            interpreter = interpreter_class(model_path=str(self.path), num_threads=threads)
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"{self.path}: expected one signature, found {list(signatures)}")
        ((key, signature),) = signatures.items()
        (self._input,) = signature["inputs"]
        # All interpreters are alike: `delegates` reads one of them.
        self._interpreter = interpreter
        return interpreter.get_signature_runner(key)

    @property
    def delegates(self) -> list[str]:
        """Op names of the delegate nodes; ``["DELEGATE"]`` when XNNPACK took the graph."""
        # Private, but the only way the Python API shows what was delegated.
        ops = self._interpreter._get_ops_details()
        return [op["op_name"] for op in ops if op["op_name"] == "DELEGATE"]

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        runner = self._idle.get()
        try:
            # Resizing to the same batch shape again is free; a new shape re-plans once.
            out = runner(**{self._input: pixels})
        finally:
            self._idle.put(runner)
        # Every named output: "features" and "logits" for EfficientNet-Lite, "features" alone
        # for a user's own model, "embedding" for a trained head.
        return {name: np.asarray(value) for name, value in out.items()}


def bucket(n: int) -> int:
    """The batch size a batch of ``n`` is padded to on a compiling backend: the next power
    of two, so a worker's batches of every size up to its batch size compile a handful of
    shapes, not one per size."""
    return 1 << max(0, n - 1).bit_length()


class KerasRunner:
    name = "keras"

    def __init__(self, path: Path, threads: int = 0) -> None:
        # Keras picks its backend at import: TensorFlow unless KERAS_BACKEND says otherwise.
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        self.backend = keras.backend.backend()
        self.threads = resolve_threads(threads)
        if self.backend == "tensorflow":
            from worker.model.files import import_tensorflow

            tf = import_tensorflow()
            if threads > 0:
                try:
                    tf.config.threading.set_intra_op_parallelism_threads(threads)
                except RuntimeError:
                    # TensorFlow already started its thread pools in this process.
                    self.threads = tf.config.threading.get_intra_op_parallelism_threads() or 0
        # Registers the GeM layer that a model file with LOOKALIKE_POOLING=gem holds.
        import worker.model.gem  # noqa: F401

        self.path = Path(path)
        self._model = keras.saving.load_model(self.path, compile=False)
        self._lock = threading.Lock()
        # JAX compiles the model for each input shape it meets (seconds each on a GPU):
        # batches are padded up to bucket() sizes. TensorFlow's predict needs no padding.
        self.pads = self.backend == "jax"

    def prepare(self, batch_size: int) -> None:
        """Compile every padded batch shape up to ``batch_size`` now, at load, rather than
        while the first batches of each size wait for it."""
        if not self.pads:
            return
        size = self._model.input_shape[1:]
        n = 1
        while n <= bucket(batch_size):
            self.run(np.zeros((n, *size), dtype=np.float32))
            n *= 2

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        n = len(pixels)
        if self.pads and bucket(n) != n:
            padding = np.zeros((bucket(n) - n, *pixels.shape[1:]), dtype=np.float32)
            pixels = np.concatenate([pixels, padding])
        with self._lock:
            out = self._model.predict_on_batch(pixels)
        return {name: np.asarray(value)[:n] for name, value in out.items()}


RUNNERS: dict[str, type[TFLiteRunner] | type[KerasRunner]] = {
    TFLiteRunner.name: TFLiteRunner,
    KerasRunner.name: KerasRunner,
}


def make_runner(runtime: str, files: Any, threads: int = 0, instances: int = 1) -> Runner:
    if runtime == "tflite":
        return TFLiteRunner(files.tflite, threads, instances)
    if runtime == "keras":
        return KerasRunner(files.keras, threads)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNNERS)}")
