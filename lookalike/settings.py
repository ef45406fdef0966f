"""All configuration in one typed object.

Defaults, then environment variables prefixed ``LOOKALIKE_``, then explicit overrides
(tests, the demo). Every knob is listed in the README's configuration table.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.schema import CatalogSchema

ENV_PREFIX = "LOOKALIKE_"

MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "custom")
RUNTIMES = ("tflite", "keras")
# "resize" keeps the whole image (= "pad" onto white); "stretch" squashes it to a square.
PREPROCESS_MODES = ("resize", "crop", "pad", "stretch")
# What the backbone's vector is: its pooled head, or that concatenated with pooled earlier
# stages (see docs/quality.md).
FEATURES = ("pooled", "multiscale")
# How a user's own model (LOOKALIKE_MODEL=custom) wants its [0, 255] RGB pixels: as they are
# ("raw"), or scaled as keras.applications' preprocess_input modes "tf", "torch", "caffe" do.
# Empty: the architecture's own mode (LOOKALIKE_CUSTOM_MODEL_ARCH), else "raw".
CUSTOM_INPUT_MODES = ("", "raw", "tf", "torch", "caffe")
# How a new collection stores its vectors (Settings.vector_datatype; lookalike/store.py).
VECTOR_DATATYPES = ("float32", "float16")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# A trained head's name: a file name in the model cache and part of the model name.
HEAD_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


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
    # Images per model call on the CPU: small batches keep a call's activations in the CPU's
    # caches; with an interpreter per task thread, 2 beat 1, 4, 8 and 32 end to end
    # (docs/performance.md). On a GPU, 128 or more.
    embed_batch_size: int = 2
    # Variants of the embedding (docs/quality.md measures them); each changes the vectors, so
    # each is part of the model version stored with every point. "multiscale" (the pooled
    # head and the pooled stage 6) finds more same-category neighbours than "pooled" (the
    # head alone) on every labelled set measured, at the same inference cost; the duplicate
    # test compares the head part alone, so its threshold holds for both. A user's own model
    # (LOOKALIKE_MODEL=custom) has one output, its embedding: it ignores this (model_features).
    features: str = "multiscale"
    # Average the features of the image and its mirror image (twice the inference work).
    tta_flip: bool = False
    # A catalog-tuned head (`indexer train-head`) in <model cache>/heads/<name>.*; empty: none.
    head: str = ""
    # LOOKALIKE_MODEL=custom: a Keras model file (.keras, or a full-model .h5) whose output,
    # globally pooled if it is a feature map, is the embedding; or, with an architecture
    # name, a weights file for that keras.applications model (e.g. VGG16 ImageNet "notop").
    custom_model_path: Path | None = None
    custom_model_arch: str = ""
    # Input side in pixels; 0: read from the model (or the architecture's default).
    custom_model_input_size: int = 0
    custom_model_input_mode: str = ""
    # Threads for TFLite inference in all; 0: every CPU the process may use.
    inference_threads: int = 0
    # TFLite interpreters in a worker process, each with its share of those threads, so that
    # task threads run the model side by side rather than in turns on one interpreter whose
    # threads wait for each other after every layer. 0: one per task thread of the worker
    # (the embedded default's two; `--pool threads --concurrency N`'s N), at most one per
    # inference thread. docs/performance.md measures it.
    inference_instances: int = 0
    max_upload_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_metadata_bytes: int = 16 * 1024
    # The worker decodes each image in a child process killed after this many seconds: a
    # file that keeps a decoder busy fails alone as ``decode_timeout`` (a search photo: a 422)
    # instead of holding a worker thread. ~1 CPU-ms a photo (docs/reliability.md); a 40 MP
    # picture decodes in about a second. 0: decode in the worker's process, unbounded.
    decode_timeout_s: float = 5.0
    # How long the API waits for a query-time embedding from a worker.
    query_timeout_s: float = 30.0
    # Redis redelivers a task whose worker died (SIGKILL, OOM) after this long; it must exceed
    # the longest task, or a slow batch runs twice (harmless, but wasted work).
    broker_visibility_timeout_s: int = 3600
    # Retries of a task that meets an unavailable vector store (exponential backoff, capped
    # at 120 s) before it fails for good and says so in its status.
    task_max_retries: int = 10
    # Threads of the in-process worker in the embedded default. Two: one batch decodes and
    # frames its images while another runs the model (which serialises on its own lock and
    # uses every core), so the cores never wait for the Python between model calls.
    embedded_worker_threads: int = 2
    # The embedded qdrant-edge shard builds its HNSW index once no item was written for this
    # many seconds (0: never; queries then scan every vector). docs/performance.md.
    index_after_idle_s: float = 5.0
    # How a new collection stores its vectors: "float32", or "float16" (half the vectors'
    # RAM, scores within ~1e-3, recall@10 a little lower: docs/performance.md). An existing
    # collection keeps the type it was created with; a reindex's new version takes this one.
    vector_datatype: str = "float32"
    # Logs: "text" for a terminal, "json" (one object per line, with the request id) for a
    # log pipeline; the level applies to the root logger.
    log_format: str = "text"
    log_level: str = "INFO"
    # A separate worker process serves its Prometheus metrics on this port (0: not served;
    # the embedded default's worker metrics are on the API's /metrics).
    worker_metrics_port: int = 0
    # A Qdrant server's collection is created with these (a cluster spreads the shards over
    # its nodes and keeps `replication_factor` copies of each); the embedded shard ignores them.
    qdrant_shards: int = 1
    qdrant_replication_factor: int = 1
    # API keys, comma-separated; with none configured (the embedded demo) no key is needed.
    # A read key browses and queries; a write key may also add and delete items.
    # "TENANT/KEY" binds a key to one tenant; a plain "KEY" serves every tenant.
    api_keys_read: str = ""
    api_keys_write: str = ""
    # Signs the image URLs in API results, so an <img> tag loads them without a key header.
    # Empty: derived from the API keys (set it when a single tenant-bound key is configured).
    url_signing_key: str = ""
    # Submissions remembered per tenant for GET /v1/jobs.
    jobs_history: int = 1000
    # Two items are near-duplicates (the same shot, edited) or colour variants when the share
    # of keypoints one similarity transform explains reaches this: lookalike/verify.py,
    # measured in docs/indexer.md.
    duplicate_threshold: float = 0.08
    # The worker computes and stores each image's keypoints at ingest and reindex (~16 CPU-ms
    # a 1.5 MP photo, about as much as decode and model together: docs/performance.md). Off:
    # no keypoints, and the duplicates answers report exact copies only (``disabled``).
    duplicate_keypoints: bool = True
    # The catalog's own metadata fields, their types and roles (filter, facet, group): JSON
    # ({"fields": {...}}), or the path of a JSON file holding it; empty: category, brand
    # (keywords), price (float), in_stock (bool). README "The catalog schema".
    catalog_schema: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # catalog_schema, parsed (lookalike.schema.CatalogSchema).
    catalog: CatalogSchema = field(init=False, repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise SettingsError(f"LOOKALIKE_MODEL must be one of {', '.join(MODELS)}")
        if self.runtime not in RUNTIMES:
            raise SettingsError(f"LOOKALIKE_RUNTIME must be one of {', '.join(RUNTIMES)}")
        if self.preprocess not in PREPROCESS_MODES:
            raise SettingsError(
                f"LOOKALIKE_PREPROCESS must be one of {', '.join(PREPROCESS_MODES)}"
            )
        if self.features not in FEATURES:
            raise SettingsError(f"LOOKALIKE_FEATURES must be one of {', '.join(FEATURES)}")
        if self.head and not HEAD_NAME.match(self.head):
            raise SettingsError(
                "LOOKALIKE_HEAD must be a head name: 1-32 lower-case letters, digits and '-'"
            )
        if self.model == "custom" and self.custom_model_path is None:
            raise SettingsError("LOOKALIKE_MODEL=custom needs LOOKALIKE_CUSTOM_MODEL_PATH")
        if self.custom_model_input_mode not in CUSTOM_INPUT_MODES:
            raise SettingsError(
                "LOOKALIKE_CUSTOM_MODEL_INPUT_MODE must be one of "
                f"{', '.join(m for m in CUSTOM_INPUT_MODES if m)} (or empty)"
            )
        if self.custom_model_input_size < 0:
            raise SettingsError("LOOKALIKE_CUSTOM_MODEL_INPUT_SIZE must not be negative")
        if self.vector_datatype not in VECTOR_DATATYPES:
            raise SettingsError(
                f"LOOKALIKE_VECTOR_DATATYPE must be one of {', '.join(VECTOR_DATATYPES)}"
            )
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"LOOKALIKE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"LOOKALIKE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.worker_metrics_port <= 65535:
            raise SettingsError("LOOKALIKE_WORKER_METRICS_PORT must be a port number (0: off)")
        for name in ("api_keys_read", "api_keys_write"):
            parse_api_keys(getattr(self, name), f"{ENV_PREFIX}{name.upper()}")
        if self.decode_timeout_s < 0:
            raise SettingsError("LOOKALIKE_DECODE_TIMEOUT_S must not be negative (0: no bound)")
        if self.task_max_retries < 0:
            raise SettingsError("LOOKALIKE_TASK_MAX_RETRIES must not be negative")
        if self.inference_instances < 0 or self.inference_threads < 0:
            raise SettingsError(
                "LOOKALIKE_INFERENCE_THREADS and LOOKALIKE_INFERENCE_INSTANCES must not be negative"
            )
        from lookalike.schema import SchemaError, load_catalog_schema

        try:
            object.__setattr__(self, "catalog", load_catalog_schema(self.catalog_schema))
        except SchemaError as exc:
            raise SettingsError(f"LOOKALIKE_CATALOG_SCHEMA: {exc}") from None
        if not 0 < self.duplicate_threshold <= 1:
            raise SettingsError("LOOKALIKE_DUPLICATE_THRESHOLD must be in (0, 1]")
        for name in (
            "jobs_history",
            "embed_batch_size",
            "max_upload_bytes",
            "max_image_pixels",
            "qdrant_shards",
            "qdrant_replication_factor",
            "broker_visibility_timeout_s",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"LOOKALIKE_{name.upper()} must be positive")

    @property
    def model_features(self) -> str:
        """The features the embedder reads: ``features`` for an EfficientNet-Lite backbone,
        ``pooled`` (its one output) for a user's own model."""
        return "pooled" if self.model == "custom" else self.features

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
    def thumbnail_dir(self) -> Path:
        return self.data_dir / "thumbnails"

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
            if f.name in ("extra", "catalog"):
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or (raw == "" and f.name not in ("redis_url", "qdrant_url")):
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)


def parse_api_keys(raw: str, name: str = "API keys") -> list[tuple[str | None, str]]:
    """(tenant or None for every tenant, key) of each entry of a comma-separated key list."""
    from lookalike.schema import InvalidId, validate_id

    keys: list[tuple[str | None, str]] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        tenant, sep, key = entry.partition("/")
        if not sep:
            tenant, key = "*", entry
        if len(key) < 8 or any(c.isspace() for c in key):
            raise SettingsError(f"{name}: a key must be at least 8 characters, without spaces")
        if tenant != "*":
            try:
                validate_id(tenant, "tenant")
            except InvalidId as exc:
                raise SettingsError(f"{name}: {exc} (in {tenant!r}/…)") from None
        keys.append((None if tenant == "*" else tenant, key))
    return keys


def _parse(name: str, type_: Any, raw: str) -> Any:
    type_name = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    if type_name == "bool":
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean (true/false)")
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
