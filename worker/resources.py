"""Per-process state of a worker: settings, the vector store and the model, opened lazily."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from lookalike.blobs import BlobStore
from lookalike.settings import Settings
from lookalike.store import LazyStore, VectorStore

if TYPE_CHECKING:
    from worker.decoding import DecodeProcesses
    from worker.model import Embedder


class WorkerRuntime:
    def __init__(self, settings: Settings, store: VectorStore | None = None) -> None:
        self.settings = settings
        self.blobs = BlobStore(settings.image_dir)
        self._store = LazyStore(settings, store)
        # Threads that run tasks in this process (set when a worker starts): each gets its
        # own model interpreter unless LOOKALIKE_INFERENCE_INSTANCES says otherwise.
        self.task_threads = 1
        # Catalog version name -> what its first stored point says of how the version was
        # made (worker/pipeline.py first_point: its decode mode and model version).
        self.first_points: dict[str, dict[str, str]] = {}
        self._decoder: DecodeProcesses | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> VectorStore:
        return self._store.get()

    @property
    def embedder(self) -> Embedder:
        # Imported here so that starting a worker (and importing this module) stays cheap;
        # the model loads on the first task, once per process.
        from worker.model import get_embedder

        return get_embedder(self.settings, self.task_threads)

    @property
    def decoder(self) -> DecodeProcesses | None:
        """The time-bounded decoder (worker/decoding.py); None with LOOKALIKE_DECODE_TIMEOUT_S=0."""
        if self.settings.decode_timeout_s <= 0:
            return None
        with self._lock:
            if self._decoder is None:
                from worker.decoding import DecodeProcesses

                self._decoder = DecodeProcesses(self.settings.decode_timeout_s)
            return self._decoder

    def close(self) -> None:
        with self._lock:
            if self._decoder is not None:
                self._decoder.close()
                self._decoder = None
        self._store.close()


def runtime_of(app: Any) -> WorkerRuntime:
    """The worker state that ``worker.celery_app.create_celery`` attached to a Celery app."""
    runtime: WorkerRuntime = app.lookalike
    return runtime
