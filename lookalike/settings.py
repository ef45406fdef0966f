"""All configuration in typed objects (pydantic-settings).

Defaults, then environment variables prefixed ``LOOKALIKE_`` (``Settings.from_env``), then
explicit overrides (tests, the demo). ``Settings(...)`` alone reads no environment: the
factories (``create_app``, ``create_celery``) take the object they are given. Every knob is
listed in the README's configuration table; the comment above each field is its
documentation. A value that does not fit is a :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from lookalike import schema
from lookalike.models import CUSTOM_MODEL, DEFAULT_MODEL, MODELS, get_backbone
from lookalike.schema import (
    CatalogSchema,
    InvalidId,
    SchemaError,
    load_catalog_schema,
    parse_bool,
    validate_id,
)

ENV_PREFIX = "LOOKALIKE_"

Runtime = Literal["tflite", "keras"]
# "resize" keeps the whole image (= "pad" onto white); "stretch" squashes it to a square.
PreprocessMode = Literal["resize", "crop", "pad", "stretch"]
# What the backbone's vector is: its pooled head, or that concatenated with pooled earlier
# stages (see docs/quality.md).
Features = Literal["pooled", "multiscale"]
# How the backbone's head (its last activation map) is pooled into the vector: the global
# average the classifier was trained with, or the generalised mean at p = 3 (docs/model.md).
Pooling = Literal["avg", "gem"]
# How a user's own model (LOOKALIKE_MODEL=custom) wants its [0, 255] RGB pixels: as they are
# ("raw"), or scaled as keras.applications' preprocess_input modes "tf", "torch", "caffe" do.
# Empty: the architecture's own mode (LOOKALIKE_CUSTOM_MODEL_ARCH), else "raw".
CustomInputMode = Literal["", "raw", "tf", "torch", "caffe"]
# Where the classifier's logits (the tags) come from: "" the embedding's own pass; "224" a
# second pass of the same weights over the input resized in the graph to 224 px, the side the
# classifier was trained at (docs/quality.md "Tags").
TagsPass = Literal["", "224"]
# How a new collection stores its vectors (Settings.vector_datatype; lookalike/store/).
VectorDatatype = Literal["float32", "float16"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

RUNTIMES: tuple[str, ...] = get_args(Runtime)
PREPROCESS_MODES: tuple[str, ...] = get_args(PreprocessMode)
FEATURES: tuple[str, ...] = get_args(Features)
POOLINGS: tuple[str, ...] = get_args(Pooling)
TAGS_PASSES: tuple[str, ...] = get_args(TagsPass)
CUSTOM_INPUT_MODES: tuple[str, ...] = get_args(CustomInputMode)
VECTOR_DATATYPES: tuple[str, ...] = get_args(VectorDatatype)
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# LOOKALIKE_INPUT_SIZE's range: below 64 the backbone's stride-32 head map is smaller than
# 2x2 positions.
MIN_INPUT_SIZE = 64
MAX_INPUT_SIZE = 1024

# A trained head's name: a file name in the model cache and part of the model name.
HEAD_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# Where a head is named for a reindex, this one means the backbone's own vectors, even with
# LOOKALIKE_HEAD set (lookalike.store.versions.requested_label); no head may take it.
NO_HEAD = "none"


class SettingsError(ValueError):
    """A configuration value is invalid."""


def _bool(value: Any) -> Any:
    """Booleans from text by the one rule of the whole service (lookalike.schema.parse_bool)."""
    if isinstance(value, str):
        parsed = parse_bool(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a boolean (true/false)")
        return parsed
    return value


def _model(value: str) -> str:
    if value not in MODELS:
        raise ValueError(f"must be one of {', '.join(MODELS)}")
    return value


def _head(value: str) -> str:
    if value and not HEAD_NAME.match(value):
        raise ValueError("must be a head name: 1-32 lower-case letters, digits and '-'")
    if value == NO_HEAD:
        raise ValueError(f"{NO_HEAD!r} is no head's name: leave it empty for none")
    return value


def _api_keys(value: str) -> str:
    parse_api_keys(value)
    return value


Bool = Annotated[bool, BeforeValidator(_bool)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
ApiKeys = Annotated[str, AfterValidator(_api_keys)]


class _Environment(EnvSettingsSource):
    """The ``LOOKALIKE_*`` variables of one mapping (os.environ, or a test's dict); an empty
    value counts as unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items() if value != ""}


class _LookalikeSettings(BaseSettings):
    """What both settings objects share: the prefix, immutability, and readable errors."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any
    ) -> Any:
        # Only what the caller passes: from_env adds the environment.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
        """Defaults, then ``LOOKALIKE_*`` variables of ``environ`` (default os.environ),
        then ``overrides``."""
        try:
            values = _Environment(cls, os.environ if environ is None else environ)()
        except ValueError as exc:  # pydantic-settings' own parse errors (e.g. bad JSON)
            raise SettingsError(str(exc)) from None
        return cls(**{**values, **overrides})

    def replace(self, **overrides: Any) -> Any:
        """A copy with some values changed, checked like a new object."""
        return type(self)(**{**self.model_dump(), **overrides})


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ENV_PREFIX + "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if error["loc"] else message)
    return "; ".join(problems)


class Settings(_LookalikeSettings):
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
    model: Annotated[str, AfterValidator(_model)] = DEFAULT_MODEL
    # Folder holding the converted models (.keras, .tflite); default data_dir/models.
    model_cache: Path | None = None
    runtime: Runtime = "tflite"
    preprocess: PreprocessMode = "resize"
    # Images per model call on the CPU: small batches keep a call's activations in the CPU's
    # caches; with an interpreter per task thread, 2 beat 1, 4, 8 and 32 end to end
    # (docs/performance.md). On a GPU, 128 or more.
    embed_batch_size: Positive = 2
    # Variants of the embedding (docs/quality.md measures them); each changes the vectors, so
    # each is part of the model version stored with every point. "multiscale" (the pooled
    # head and the pooled stage 6) finds more same-category neighbours than "pooled" (the
    # head alone) on every labelled set measured, at the same inference cost; the duplicate
    # test compares the head part alone, so its threshold holds for both. A user's own model
    # (LOOKALIKE_MODEL=custom) has one output, its embedding: it ignores this (model_features).
    features: Features = "multiscale"
    # The backbone's input side in pixels; 0: the backbone's default (Lite0 320, Lite1 240,
    # Lite2 260: lookalike/models.py). The same weights run at any side; a larger one sees
    # more of a photo's detail for more CPU (Lite0 at 320 against its own 224: ~2x the
    # model's, ~1.2x the ingest CPU: docs/model.md). Each side is a model version of its own:
    # a catalog indexed at another is refused, not mixed; index it anew (or pin the side it
    # was indexed at: 224 with LOOKALIKE_POOLING=avg, the earlier default: docs/model.md).
    input_size: Annotated[int, Field(ge=0, le=MAX_INPUT_SIZE)] = 0
    # "avg" or "gem" (generalised mean, p = 3: strong local activations weigh more; the
    # classifier's logits, for tags, stay on the average); empty: the backbone's default
    # (gem for all three). A model version of its own, as above.
    pooling: Pooling | Literal[""] = ""
    # Average the features of the image and its mirror image (twice the inference work).
    tta_flip: Bool = False
    # A catalog-tuned head (`indexer train-head`) in <model cache>/heads/<name>.*; empty: none.
    head: Annotated[str, AfterValidator(_head)] = ""
    # LOOKALIKE_MODEL=custom: a Keras model file (.keras, or a full-model .h5) whose output,
    # globally pooled if it is a feature map, is the embedding; or, with an architecture
    # name, a weights file for that keras.applications model (e.g. VGG16 ImageNet "notop").
    custom_model_path: Path | None = None
    custom_model_arch: str = ""
    # Input side in pixels; 0: read from the model (or the architecture's default).
    custom_model_input_size: NonNegative = 0
    custom_model_input_mode: CustomInputMode = ""
    # Threads for TFLite inference in all; 0: every CPU the process may use.
    inference_threads: NonNegative = 0
    # TFLite interpreters in a worker process, each with its share of those threads, so that
    # task threads run the model side by side rather than in turns on one interpreter whose
    # threads wait for each other after every layer. 0: one per task thread of the worker
    # (the embedded default's two; `--pool threads --concurrency N`'s N), at most one per
    # inference thread. docs/performance.md measures it.
    inference_instances: NonNegative = 0
    max_upload_bytes: Positive = 16 * 1024 * 1024
    max_image_pixels: Positive = 40_000_000
    max_metadata_bytes: Positive = 16 * 1024
    # The worker decodes each image in a child process killed after this many seconds: a
    # file that keeps a decoder busy fails alone as ``decode_timeout`` (a search photo: a 422)
    # instead of holding a worker thread. ~1 CPU-ms a photo (docs/reliability.md); a 40 MP
    # picture decodes in about a second. 0: decode in the worker's process, unbounded.
    decode_timeout_s: Annotated[float, Field(ge=0)] = 5.0
    # How long the API waits for a query-time embedding from a worker.
    query_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Redis redelivers a task whose worker died (SIGKILL, OOM) after this long; it must exceed
    # the longest task, or a slow batch runs twice (harmless, but wasted work).
    broker_visibility_timeout_s: Positive = 3600
    # Retries of a task that meets an unavailable vector store (exponential backoff, capped
    # at 120 s) before it fails for good and says so in its status.
    task_max_retries: NonNegative = 10
    # Threads of the in-process worker in the embedded default. Two: one batch decodes and
    # frames its images while another runs the model (which serialises on its own lock and
    # uses every core), so the cores never wait for the Python between model calls.
    embedded_worker_threads: Positive = 2
    # The embedded qdrant-edge shard builds its HNSW index once no item was written for this
    # many seconds (0: never; queries then scan every vector). docs/performance.md.
    index_after_idle_s: Annotated[float, Field(ge=0)] = 5.0
    # How a new collection stores its vectors: "float32", or "float16" (half the vectors'
    # RAM, scores within ~1e-3, recall@10 a little lower: docs/performance.md). An existing
    # collection keeps the type it was created with; a reindex's new version takes this one.
    vector_datatype: VectorDatatype = "float32"
    # Logs: "text" for a terminal, "json" (one object per line, with the request id) for a
    # log pipeline; the level applies to the root logger.
    log_format: LogFormat = "text"
    log_level: Annotated[
        LogLevel, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
    ] = "INFO"
    # A separate worker process serves its Prometheus metrics on this port (0: not served;
    # the embedded default's worker metrics are on the API's /metrics).
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # A Qdrant server's collection is created with these (a cluster spreads the shards over
    # its nodes and keeps `replication_factor` copies of each); the embedded shard ignores them.
    qdrant_shards: Positive = 1
    qdrant_replication_factor: Positive = 1
    # API keys, comma-separated; with none configured (the embedded demo) no key is needed.
    # A read key browses and queries; a write key may also add and delete items.
    # "TENANT/KEY" binds a key to one tenant; a plain "KEY" serves every tenant.
    api_keys_read: ApiKeys = ""
    api_keys_write: ApiKeys = ""
    # Signs the image URLs in API results, so an <img> tag loads them without a key header.
    # Empty: derived from the API keys (set it when a single tenant-bound key is configured).
    url_signing_key: str = ""
    # Submissions remembered per tenant for GET /v1/jobs.
    jobs_history: Positive = 1000
    # Two items are near-duplicates (the same shot, edited) or colour variants when the share
    # of keypoints one similarity transform explains reaches this (and, for a near-duplicate,
    # their thumbnails agree under it): lookalike/verify.py, measured in docs/indexer.md.
    duplicate_threshold: Annotated[float, Field(gt=0, le=1)] = 0.02
    # The worker computes and stores each image's keypoints at ingest and reindex (~16 CPU-ms
    # a 1.5 MP photo, about as much as decode and model together: docs/performance.md). Off:
    # no keypoints, and the duplicates answers report exact copies only (``disabled``).
    duplicate_keypoints: Bool = True
    # Tags from the classifier at ingest and reindex (worker/model/tags.py): up to this many
    # ImageNet labels per image (0: no tags), those whose softmax score reaches
    # tags_min_score, with their WordNet parents. docs/quality.md "Tags" measures them.
    tags_top_k: Annotated[int, Field(ge=0, le=10)] = 3
    tags_min_score: Annotated[float, Field(ge=0, le=1)] = 0.1
    # "224": the tags' logits from a second pass of the same weights at 224 px, the side the
    # classifier was trained at, inside the same model; the vectors stay the same. The 320 px
    # default's own logits lose tag recall (tuxpaint 57% -> 35%); the second pass gives it
    # back for ~1.5x the model's CPU (~1.2x the ingest's per 1.5 MP photo, docs/performance.md).
    # A model version of its own (stored tags are not mixed).
    tags_pass: TagsPass = ""
    # The catalog's own metadata fields, their types and roles (filter, facet, group): JSON
    # ({"fields": {...}}), or the path of a JSON file holding it; empty: category, brand
    # (keywords), price (float), in_stock (bool). README "The catalog schema".
    catalog_schema: str = ""
    # catalog_schema, parsed (lookalike.schema.CatalogSchema): the ``catalog`` property.
    _catalog: CatalogSchema = PrivateAttr()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.model == CUSTOM_MODEL and self.custom_model_path is None:
            raise ValueError("LOOKALIKE_MODEL=custom needs LOOKALIKE_CUSTOM_MODEL_PATH")
        if self.model == CUSTOM_MODEL and (self.input_size or self.pooling):
            raise ValueError(
                "LOOKALIKE_INPUT_SIZE and LOOKALIKE_POOLING are for the shipped backbones; "
                "a custom model takes LOOKALIKE_CUSTOM_MODEL_INPUT_SIZE and pools as it was made"
            )
        if self.tags_pass and self.model == CUSTOM_MODEL:
            raise ValueError("LOOKALIKE_TAGS_PASS is for the shipped backbones")
        if self.tags_pass:
            side = get_backbone(self.model).resolve(self.input_size, self.pooling)[0]
            if side == int(self.tags_pass):
                raise ValueError(
                    f"LOOKALIKE_TAGS_PASS={self.tags_pass}: the model already runs at "
                    f"{side} px; leave it empty"
                )
        if 0 < self.input_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"LOOKALIKE_INPUT_SIZE: at least {MIN_INPUT_SIZE} pixels, or 0 for the "
                "backbone's own"
            )
        try:
            self._catalog = load_catalog_schema(self.catalog_schema)
        except SchemaError as exc:
            raise ValueError(f"LOOKALIKE_CATALOG_SCHEMA: {exc}") from None
        return self

    @property
    def catalog(self) -> CatalogSchema:
        return self._catalog

    @property
    def model_features(self) -> str:
        """The features the embedder reads: ``features`` for an EfficientNet-Lite backbone,
        ``pooled`` (its one output) for a user's own model."""
        return "pooled" if self.model == CUSTOM_MODEL else self.features

    def vector_size(self) -> int:
        """The collection's vector size for this configuration: a head's size, a user model's
        size (both read from their manifest in the model cache, so the API needs no
        TensorFlow), or the backbone's for its features."""
        if self.head:
            return schema.manifest_dim(
                schema.head_manifest_path(self.model_dir, self.head),
                "dim",
                f"head {self.head!r} (train it with `indexer train-head`)",
            )
        if self.model == CUSTOM_MODEL:
            assert self.custom_model_path is not None
            return schema.manifest_dim(
                schema.custom_manifest_path(self.model_dir, self.custom_model_path),
                "feature_dim",
                "the custom model (convert it with `python -m worker.model build --custom PATH`)",
            )
        dims = schema.MULTISCALE_DIMS if self.model_features == "multiscale" else schema.MODEL_DIMS
        return dims[self.model]

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


class IndexerSettings(_LookalikeSettings):
    """The indexer CLI's own variables (it is a client of the service: it reads none of the
    service's settings). Command-line options override them."""

    # The API's base URL (--api).
    api_url: str = "http://127.0.0.1:8000"
    # An API key, sent as X-API-Key (--api-key); empty: none.
    api_key: str = ""
    # Where jobs keep their resume state unless --state says (one SQLite file per service
    # and source); unset: $XDG_STATE_HOME/lookalike/indexer.
    indexer_state_dir: Path | None = None


def parse_api_keys(raw: str, name: str = "API keys") -> list[tuple[str | None, str]]:
    """(tenant or None for every tenant, key) of each entry of a comma-separated key list."""

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
