"""All configuration in one typed object.

Defaults, then environment variables prefixed ``LOOKALIKE_``, then explicit overrides
(tests, the demo). Every knob is listed in the README's configuration table.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "LOOKALIKE_"

MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
RUNTIMES = ("tflite", "keras")
PREPROCESS_MODES = ("resize", "crop")


class SettingsError(ValueError):
    """A configuration value is invalid."""


@dataclass(frozen=True)
class Settings:
    # Where the embedded defaults keep their state: uploaded images, the qdrant-edge shard,
    # the model cache.
    data_dir: Path = Path("data")
    # Empty: the embedded default (in-process broker and worker). Otherwise a Redis URL used
    # as Celery broker and result backend.
    redis_url: str = ""
    # Empty: the embedded qdrant-edge shard under data_dir/qdrant. ":memory:" selects
    # qdrant-client's local mode (tests only). Otherwise the URL of a Qdrant server.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: str = "catalog"
    model: str = "efficientnet-lite0"
    # Folder holding the converted models (.keras, .tflite); default data_dir/models.
    model_cache: Path | None = None
    runtime: str = "tflite"
    preprocess: str = "resize"
    embed_batch_size: int = 32
    # Threads for TFLite inference; 0 lets the runtime choose.
    inference_threads: int = 0
    max_upload_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_metadata_bytes: int = 16 * 1024
    # How long the API waits for a query-time embedding from a worker.
    query_timeout_s: float = 30.0
    # Threads of the in-process worker in the embedded default.
    embedded_worker_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise SettingsError(f"LOOKALIKE_MODEL must be one of {', '.join(MODELS)}")
        if self.runtime not in RUNTIMES:
            raise SettingsError(f"LOOKALIKE_RUNTIME must be one of {', '.join(RUNTIMES)}")
        if self.preprocess not in PREPROCESS_MODES:
            raise SettingsError(
                f"LOOKALIKE_PREPROCESS must be one of {', '.join(PREPROCESS_MODES)}"
            )
        for name in ("embed_batch_size", "max_upload_bytes", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise SettingsError(f"LOOKALIKE_{name.upper()} must be positive")

    @property
    def embedded_broker(self) -> bool:
        return not self.redis_url

    @property
    def model_dir(self) -> Path:
        return self.model_cache if self.model_cache is not None else self.data_dir / "models"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    def replace(self, **overrides: Any) -> Settings:
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or (raw == "" and f.name not in ("redis_url", "qdrant_url")):
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)


def _parse(name: str, type_: Any, raw: str) -> Any:
    type_name = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if "Path" in type_name:
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid number") from exc
    return raw
