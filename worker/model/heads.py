"""Catalog-tuned embedding heads: small Keras models applied after the backbone's vectors.

A head maps the backbone's L2-normalised vectors (what ``Embedder.embed`` returns without a
head) to new vectors, trained on a catalog's own labels:

- ``classifier``: an MLP trained to predict the label, with class weights for imbalanced
  catalogs; its middle layer, scaled to unit length, becomes the embedding. The softmax on
  top is a *normalised* one (cosine similarity to one learnt direction per class, times a
  scale; Zhai & Wu 2018, "Classification is a strong baseline for deep metric learning"),
  with label smoothing: on held-out images it beat a plain softmax bottleneck on all three
  sets of docs/quality.md (by 0.02-0.04 P@5);
- ``triplet``: an MLP whose unit-length output is trained with a batch-hard triplet loss,
  so that images of one label come closer than images of different labels by a margin;
- ``standardise``: no labels, no training: each feature is centred and scaled by the
  catalog's own mean and standard deviation (the "standardise features" remedy);
- ``lda``: no training loop, a closed form for few labels: the backbone vector, centred, next
  to its linear discriminant coordinates (the directions that separate the class means
  relative to the spread within classes, from the within-class covariance shrunk towards a
  multiple of the identity by Ledoit and Wolf's estimate), each part at unit length. The
  cosine of two such vectors is the mean of the backbone's cosine and the discriminant one,
  so the backbone's look-alikes still count where the labels are too few to say much.
- ``combined``: the lda head's two parts next to ``members`` classifier heads trained with
  different seeds (their embeddings side by side, as one unit-length part): the cosine of
  two such vectors is the mean of the backbone's, the discriminant one and the classifiers'
  mean cosine. An ensemble of the two kinds, for 10-30 labelled images a class.

``indexer train-head`` defaults to ``auto`` (:func:`resolve_kind`): ``lda`` when the median
class has fewer than 10 labelled training images, else ``combined``.

Heads live in the model cache, ``<model cache>/heads/<name>.{keras,tflite,json}`` (written by
``indexer train-head``); the worker runs the ``.tflite`` file (or the ``.keras`` one on the
Keras runtime), like the backbone. The manifest names the backbone version the head was
trained on, and a head refuses to run on vectors of another backbone version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.schema import head_manifest_path
from lookalike.settings import HEAD_NAME, NO_HEAD
from worker.model.files import import_tensorflow, locked, sha256_file
from worker.model.tags import softmax

HEAD_FORMAT = 1
KINDS = ("classifier", "triplet", "standardise", "lda", "combined")
DEFAULT_EPOCHS = {"classifier": 60, "triplet": 40, "standardise": 0, "lda": 0, "combined": 60}
# ``auto``: ``lda`` when the labels give fewer than this many images to the median class,
# else ``combined`` (the learning curve of docs/quality.md: at 5 a class lda ahead of both,
# from 10 a class combined ahead of or level with lda and the classifier on three sets of
# four, fashion-mnist's lda ahead at 10).
AUTO = "auto"
AUTO_LDA_BELOW = 10
INPUT_NAME = "vectors"
OUTPUT_NAME = "embedding"
SELF_CHECK_TOLERANCE = 1e-4


class HeadError(ValueError):
    """A head that cannot be trained, saved or loaded."""


def check_name(name: str) -> str:
    if not HEAD_NAME.match(name):
        raise HeadError(
            f"head name {name!r}: 1-32 lower-case letters, digits and '-', a letter or digit first"
        )
    if name == NO_HEAD:
        raise HeadError(f"head name {name!r}: it means no head to `indexer reindex --head`")
    return name


@dataclass(frozen=True)
class HeadFiles:
    name: str
    kind: str
    keras: Path
    tflite: Path
    manifest: Path
    # The backbone embedder version the head takes vectors of (``Embedder.version``).
    base_version: str
    input_dim: int
    dim: int
    # "head-<name>-<first 12 hex of the .keras file's sha256>": changes with every training.
    version: str

    @classmethod
    def read(cls, model_dir: Path, name: str, *, verify: bool = True) -> HeadFiles:
        path = head_manifest_path(model_dir, check_name(name))
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HeadError(
                f"head {name!r}: no readable manifest at {path} (train it with "
                f"`indexer train-head`): {exc}"
            ) from None
        if manifest.get("format") != HEAD_FORMAT:
            raise HeadError(f"head {name!r}: manifest format {manifest.get('format')} unknown")
        files = {k: path.parent / v["name"] for k, v in manifest["files"].items()}
        if verify:
            for key, entry in manifest["files"].items():
                if not files[key].is_file() or sha256_file(files[key]) != entry["sha256"]:
                    raise HeadError(f"head {name!r}: {files[key]} is missing or damaged")
        return cls(
            name=name,
            kind=manifest["kind"],
            keras=files["keras"],
            tflite=files["tflite"],
            manifest=path,
            base_version=manifest["base"]["version"],
            input_dim=int(manifest["input_dim"]),
            dim=int(manifest["dim"]),
            version=manifest["version"],
        )


class Head:
    """A loaded head: ``apply`` maps (n, input_dim) vectors to (n, dim) vectors."""

    def __init__(self, files: HeadFiles, runtime: str = "tflite", threads: int = 0) -> None:
        from worker.model.runners import KerasRunner, TFLiteRunner

        self.files = files
        self.name = files.name
        self.dim = files.dim
        self.input_dim = files.input_dim
        self.base_version = files.base_version
        self.version = files.version
        # One thread: a head is a few small matrix products, not worth a thread pool.
        self._runner: Any = (
            KerasRunner(files.keras, threads)
            if runtime == "keras"
            else TFLiteRunner(files.tflite, threads=1)
        )

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.ndim != 2 or vectors.shape[1] != self.input_dim:
            raise ValueError(f"head {self.name!r} takes (n, {self.input_dim}), got {vectors.shape}")
        if len(vectors) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._runner.run(vectors.astype(np.float32))[OUTPUT_NAME]


def load_head(model_dir: Path, name: str, runtime: str = "tflite", threads: int = 0) -> Head:
    return Head(HeadFiles.read(Path(model_dir), name), runtime, threads)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainOptions:
    kind: str = "classifier"
    # Size of the embedding the head outputs.
    dim: int = 256
    hidden: int = 512
    epochs: int = 0  # 0: the kind's default
    dropout: float = 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # classifier: weigh each class by n / (classes * its count), so small classes count.
    class_weights: bool = True
    # classifier: logits = scale * cosine(embedding, class direction).
    scale: float = 8.0
    label_smoothing: float = 0.1
    # triplet: batches of `classes_per_batch` labels x `per_class` images; the margin is
    # between squared distances of unit vectors (0..4).
    margin: float = 0.2
    classes_per_batch: int = 16
    per_class: int = 4
    # lda: how far the within-class covariance is shrunk towards a multiple of the identity
    # (0..1); negative: Ledoit and Wolf's estimate from the training vectors.
    shrinkage: float = -1.0
    # lda: the weight of the centred backbone vector next to the unit-length discriminant
    # coordinates (0: the discriminant coordinates alone).
    backbone_weight: float = 1.0

    # combined: how many classifier heads (seeds) it trains, and the weight of their part
    # next to the lda head's two.
    members: int = 3
    classifier_weight: float = 1.0
    # With unlabelled vectors (train_head's ``unlabelled``): the share of them, the most
    # confident of each class the lda head's nearest class mean gives them, trained on with
    # that class as their label next to the labelled ones (one round of self-training).
    pseudo_labels: float = 0.5
    seed: int = 0

    def epochs_for_kind(self) -> int:
        return self.epochs or DEFAULT_EPOCHS[self.kind]


def _keras() -> Any:
    import_tensorflow()
    import keras

    return keras


def _normaliser(keras: Any, x: np.ndarray) -> Any:
    """A frozen Normalization layer with the catalog's mean and variance."""
    layer = keras.layers.Normalization(
        axis=-1,
        mean=x.mean(axis=0),
        variance=np.maximum(x.var(axis=0), 1e-12),
        name="standardise",
    )
    return layer


def resolve_kind(options: TrainOptions, labels: np.ndarray | None) -> TrainOptions:
    """``options`` with kind ``auto`` replaced by the kind for this many labels a class."""
    if options.kind != AUTO:
        return options
    if labels is None:
        raise HeadError("an auto head needs labels")
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    few = float(np.median(counts)) < AUTO_LDA_BELOW
    return replace(options, kind="lda" if few else "combined")


def train_head(
    x: np.ndarray,
    labels: np.ndarray | None,
    options: TrainOptions,
    unlabelled: np.ndarray | None = None,
) -> Any:
    """The head's embedding model (a ``keras.Model`` from ``vectors`` to ``embedding``).

    ``x`` is (n, input_dim) backbone vectors, ``labels`` (n,) strings (unused by
    ``standardise``). Kind ``auto`` picks one by the labels (:func:`resolve_kind`).
    ``unlabelled`` (m, input_dim): vectors of the same catalog without a label, some of which
    are pseudo-labelled (:func:`pseudo_labelled`, ``options.pseudo_labels``) and trained on.
    """
    options = resolve_kind(options, labels)
    if options.kind not in KINDS:
        raise HeadError(f"unknown head kind {options.kind!r}; choose one of {', '.join(KINDS)}")
    keras = _keras()
    keras.utils.set_random_seed(options.seed)
    x = np.asarray(x, dtype=np.float32)
    inputs = keras.Input((x.shape[1],), name=INPUT_NAME)
    if options.kind == "standardise":
        standardised = _normaliser(keras, x)(inputs)
        return keras.Model(inputs, {OUTPUT_NAME: standardised}, name="head")
    if labels is None:
        raise HeadError(f"a {options.kind} head needs labels")
    if unlabelled is not None:
        x, labels = with_pseudo_labels(x, labels, unlabelled, options)
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise HeadError("training a head needs at least two labels")
    if options.kind == "lda":
        return _lda_model(keras, inputs, fit_lda(x, y, options.shrinkage), options)
    if options.kind == "classifier":
        return _classifier(keras, x, y, len(classes), options, options.seed, name="head")
    if options.kind == "combined":
        return _combined(keras, x, y, len(classes), options)
    standardised = _normaliser(keras, x)(inputs)
    hidden = keras.layers.Dropout(options.dropout / 2, seed=options.seed)(standardised)
    hidden = keras.layers.Dense(options.hidden, activation="relu", name="hidden")(hidden)
    hidden = keras.layers.Dropout(options.dropout, seed=options.seed)(hidden)
    optimizer = keras.optimizers.AdamW(options.learning_rate, weight_decay=options.weight_decay)
    epochs = options.epochs_for_kind()
    # triplet
    embedding = keras.layers.Dense(options.dim, name="project")(hidden)
    embedding = keras.layers.UnitNormalization(name=OUTPUT_NAME)(embedding)
    model = keras.Model(inputs, embedding)
    model.compile(optimizer=optimizer, loss=_batch_hard_triplet_loss(keras, options.margin))
    batches = _balanced_batches(y, options)
    steps = max(1, len(y) // (options.classes_per_batch * options.per_class))
    model.fit(
        ((x[index], y[index]) for index in batches),
        steps_per_epoch=steps,
        epochs=epochs,
        shuffle=False,  # the batches are drawn at random already
        verbose=0,
    )
    return keras.Model(inputs, {OUTPUT_NAME: embedding}, name="head")


def with_pseudo_labels(
    x: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, options: TrainOptions
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``labels`` with the ``options.pseudo_labels`` share of ``unlabelled`` added,
    each with the label :func:`pseudo_labelled` guesses for it (``len(result) - len(x)`` of
    them). Unchanged for a kind that does not use labels, with no unlabelled vector, or with
    fewer than two labels (nothing to guess from)."""
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    if options.kind == "standardise" or len(classes) < 2:
        return x, labels
    if not len(unlabelled) or options.pseudo_labels <= 0:
        return x, labels
    unlabelled = np.asarray(unlabelled, dtype=np.float32)
    chosen, guessed = pseudo_labelled(x, y, unlabelled, options.pseudo_labels, options)
    return np.concatenate([x, unlabelled[chosen]]), np.concatenate([labels, classes[guessed]])


def pseudo_labelled(
    x: np.ndarray, y: np.ndarray, unlabelled: np.ndarray, share: float, options: TrainOptions
) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``unlabelled``, their guessed class): the lda head's nearest class mean
    in discriminant coordinates (the shared-covariance Gaussian's most likely class) for each
    unlabelled vector, and of those given each class, the ``share`` most confident (by that
    Gaussian's posterior), so every class keeps its share of the guesses."""
    lda = fit_lda(x, y, options.shrinkage)
    labelled, z = lda.apply(x), lda.apply(unlabelled)
    means = np.stack([labelled[y == c].mean(axis=0) for c in range(int(y.max()) + 1)])
    # -|z - mean|^2 / 2 without the (m, classes, dims) array; |z|^2 cancels in the posterior.
    posterior = softmax(z @ means.T - 0.5 * (means**2).sum(axis=1))
    guess, confidence = posterior.argmax(axis=1), posterior.max(axis=1)
    chosen = []
    for c in range(len(means)):
        given = np.flatnonzero(guess == c)
        chosen.append(given[np.argsort(-confidence[given])][: round(share * len(given))])
    kept = np.sort(np.concatenate(chosen)).astype(np.int64)
    return kept, guess[kept]


@dataclass(frozen=True)
class Discriminant:
    """``(x - mean) @ projection``: a vector's linear discriminant coordinates."""

    mean: np.ndarray  # (input_dim,)
    projection: np.ndarray  # (input_dim, classes - 1)
    shrinkage: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.projection


def fit_lda(x: np.ndarray, y: np.ndarray, shrinkage: float = -1.0) -> Discriminant:
    """Shrinkage LDA of ``x`` (n, d) with integer labels ``y`` (n,), in closed form.

    The within-class covariance ``S`` (of each vector less its class mean) becomes
    ``(1 - a) S + a (trace S / d) I``, with ``a`` = ``shrinkage``, or Ledoit and Wolf's
    estimate when it is negative; the projection whitens by it and keeps the ``classes - 1``
    directions along which the whitened class means spread. With fewer vectors than
    dimensions (the few-labels case) everything is computed in the span of the vectors: one
    thin SVD of (n, d), no d x d matrix to invert.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    classes = int(y.max()) + 1
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    means = np.stack([centred[y == c].mean(axis=0) for c in range(classes)])
    within = centred - means[y]
    n, d = within.shape
    if shrinkage < 0:
        shrinkage = ledoit_wolf_shrinkage(within)
    shrinkage = float(np.clip(shrinkage, 1e-3, 1.0))
    _, singular, basis = np.linalg.svd(within, full_matrices=False)
    kept = singular > 1e-8 * max(float(singular.max(initial=0.0)), 1e-30)
    basis, singular = basis[kept], singular[kept]
    scale = float((singular**2).sum()) / n / d or 1.0  # trace S / d
    # S^-1/2 = basis.T diag(eigen^-1/2) basis + iso (I - basis.T basis)
    inverse_root = 1.0 / np.sqrt((1 - shrinkage) * singular**2 / n + shrinkage * scale)
    iso = 1.0 / np.sqrt(shrinkage * scale)

    def whiten(v: np.ndarray) -> np.ndarray:
        inside = v @ basis.T
        return (inside * inverse_root) @ basis + iso * (v - inside @ basis)

    spread = whiten(means) * np.sqrt(counts / n)[:, None]
    _, _, directions = np.linalg.svd(spread, full_matrices=False)
    # whiten is symmetric: (v @ W) @ D.T == v @ (W @ D.T), so the projection is W @ D.T.
    projection = whiten(directions[: classes - 1]).T
    return Discriminant(mean.astype(np.float32), projection.astype(np.float32), shrinkage)


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """Ledoit and Wolf's (2004) shrinkage intensity towards ``(trace S / d) I`` for the
    covariance ``S`` of already centred rows, computed through the (n, n) Gram matrix."""
    n, d = centred.shape
    gram = centred @ centred.T
    trace = float(np.trace(gram)) / n
    mu = trace / d
    trace_squared = float((gram**2).sum()) / n**2
    delta = (trace_squared - 2 * mu * trace + mu**2 * d) / d
    norms = (centred**2).sum(axis=1)
    beta = (float((norms**2).sum()) / n - trace_squared) / (n * d)
    return float(min(beta, delta) / delta) if delta > 0 else 1.0


def _lda_parts(keras: Any, inputs: Any, lda: Discriminant, options: TrainOptions) -> list[Any]:
    """[w * unit(x - mean)] (where w > 0), then unit(discriminant coordinates): Dense layers
    and normalisations only, so they save and export like the other heads."""
    centred = keras.layers.Normalization(
        axis=-1, mean=lda.mean, variance=np.ones_like(lda.mean), name="centre"
    )(inputs)
    project = keras.layers.Dense(lda.projection.shape[1], use_bias=False, name="discriminant")
    parts = [keras.layers.UnitNormalization(name="discriminant_unit")(project(centred))]
    project.set_weights([lda.projection])
    if options.backbone_weight > 0:
        backbone = keras.layers.UnitNormalization(name="backbone_unit")(centred)
        backbone = keras.layers.Rescaling(options.backbone_weight, name="backbone_weight")(backbone)
        parts.insert(0, backbone)
    return parts


def _joined(keras: Any, inputs: Any, parts: list[Any]) -> Any:
    joined = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="join")(parts)
    embedding = keras.layers.UnitNormalization(name=OUTPUT_NAME)(joined)
    return keras.Model(inputs, {OUTPUT_NAME: embedding}, name="head")


def _lda_model(keras: Any, inputs: Any, lda: Discriminant, options: TrainOptions) -> Any:
    """[w * unit(x - mean), unit(discriminant coordinates)] at unit length."""
    return _joined(keras, inputs, _lda_parts(keras, inputs, lda, options))


def _classifier(
    keras: Any,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    options: TrainOptions,
    seed: int,
    *,
    name: str,
) -> Any:
    """The classifier kind's embedding model, trained with ``seed``: standardised input,
    dropout, a ReLU layer, dropout, the unit-length middle layer. The normalised softmax on
    top only trains it and is not saved (so its custom layer needs no registration)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],), name=INPUT_NAME)
    standardised = _normaliser(keras, x)(inputs)
    hidden = keras.layers.Dropout(options.dropout / 2, seed=seed)(standardised)
    hidden = keras.layers.Dense(options.hidden, activation="relu", name="hidden")(hidden)
    hidden = keras.layers.Dropout(options.dropout, seed=seed)(hidden)
    embedding = keras.layers.Dense(options.dim, name="project")(hidden)
    embedding = keras.layers.UnitNormalization(name=OUTPUT_NAME)(embedding)
    logits = _cosine_classes(keras, classes, options.scale)(embedding)
    probabilities = keras.layers.Activation("softmax", name="classes")(logits)
    trainer = keras.Model(inputs, probabilities)
    optimizer = keras.optimizers.AdamW(options.learning_rate, weight_decay=options.weight_decay)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing)
    trainer.compile(optimizer=optimizer, loss=loss)
    weights = None
    if options.class_weights:
        counts = np.bincount(y, minlength=classes)
        weights = {i: len(y) / (classes * c) for i, c in enumerate(counts)}
    trainer.fit(
        x,
        keras.utils.to_categorical(y, classes),
        batch_size=64,
        epochs=options.epochs or DEFAULT_EPOCHS["classifier"],
        class_weight=weights,
        shuffle=True,
        verbose=0,
    )
    return keras.Model(inputs, {OUTPUT_NAME: embedding}, name=name)


def _combined(keras: Any, x: np.ndarray, y: np.ndarray, classes: int, options: TrainOptions) -> Any:
    """The lda head's parts (the centred backbone vector, the discriminant coordinates) next
    to ``members`` classifier heads trained with different seeds, their embeddings side by
    side scaled to one unit-length part of weight ``classifier_weight``: the cosine of two
    such vectors is a weighted mean of the backbone's, the discriminant one and the
    classifiers' mean cosine."""
    inputs = keras.Input((x.shape[1],), name=INPUT_NAME)
    parts = _lda_parts(keras, inputs, fit_lda(x, y, options.shrinkage), options)
    members = [
        _classifier(keras, x, y, classes, options, options.seed + 1000 * i, name=f"classifier_{i}")
        for i in range(max(1, options.members))
    ]
    embeddings = [member(inputs)[OUTPUT_NAME] for member in members]
    ensemble = (
        embeddings[0]
        if len(embeddings) == 1
        else keras.layers.Concatenate(name="classifiers")(embeddings)
    )
    weight = options.classifier_weight / np.sqrt(len(embeddings))
    parts.append(keras.layers.Rescaling(weight, name="classifier_weight")(ensemble))
    return _joined(keras, inputs, parts)


def _cosine_classes(keras: Any, classes: int, scale: float) -> Any:
    """A layer: ``scale`` times the cosine of unit-length inputs to one direction per class."""
    ops = keras.ops

    class CosineClasses(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.directions = self.add_weight(
                shape=(input_shape[-1], classes), initializer="glorot_uniform", name="directions"
            )

        def call(self, inputs: Any) -> Any:
            norms = ops.sqrt(ops.sum(ops.square(self.directions), axis=0, keepdims=True))
            return scale * ops.matmul(inputs, self.directions / (norms + 1e-12))

    return CosineClasses(name="cosine_classes")


def _balanced_batches(y: np.ndarray, options: TrainOptions) -> Iterator[np.ndarray]:
    """Endless index batches of `classes_per_batch` labels x `per_class` images each."""
    rng = np.random.default_rng(options.seed)
    members = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    members = [m for m in members if len(m) >= 2]
    per_batch = min(options.classes_per_batch, len(members))
    while True:
        chosen = rng.choice(len(members), per_batch, replace=False)
        parts = [
            rng.choice(members[c], options.per_class, replace=len(members[c]) < options.per_class)
            for c in chosen
        ]
        yield np.concatenate(parts)


def _batch_hard_triplet_loss(keras: Any, margin: float) -> Any:
    """For each anchor: its farthest same-label image and nearest other-label image in the
    batch (squared distance of unit vectors); hinge on their difference plus ``margin``."""
    ops = keras.ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        distances = ops.maximum(2.0 - 2.0 * ops.matmul(y_pred, ops.transpose(y_pred)), 0.0)
        same = ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1))
        n = ops.shape(labels)[0]
        eye = ops.cast(ops.eye(n), "bool")
        positive = ops.logical_and(same, ops.logical_not(eye))
        hardest_positive = ops.max(ops.where(positive, distances, 0.0), axis=1)
        hardest_negative = ops.min(ops.where(same, 4.0 + distances, distances), axis=1)
        return ops.mean(ops.relu(hardest_positive - hardest_negative + margin))

    return loss


# --------------------------------------------------------------------------- saving


def save_head(
    model: Any,
    *,
    name: str,
    kind: str,
    model_dir: Path,
    base_model: str,
    base_version: str,
    classes: list[str],
    extra: dict[str, Any] | None = None,
) -> HeadFiles:
    """Write the head's ``.keras``, ``.tflite`` and manifest into ``model_dir/heads``.

    Replaces a head of the same name (its vectors are not comparable with the new one's:
    the version changes with the file). Files are staged and renamed, manifest last.
    """
    check_name(name)
    keras = _keras()
    manifest_path = head_manifest_path(Path(model_dir), name)
    folder = manifest_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    keras_path, tflite_path = folder / f"{name}.keras", folder / f"{name}.tflite"
    input_dim = int(model.inputs[0].shape[-1])
    dim = int(model.outputs[0].shape[-1])
    with locked(folder / f".{name}.lock"):
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
        try:
            staged_keras, staged_tflite = staging / keras_path.name, staging / tflite_path.name
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                model.save(staged_keras)
            model.export(str(staged_tflite), format="litert", verbose=False)
            max_diff = _self_check(model, staged_tflite, input_dim)
            if max_diff > SELF_CHECK_TOLERANCE:
                raise HeadError(f"head {name}: TFLite differs from Keras by {max_diff:.2e}")
            keras_sha = sha256_file(staged_keras)
            manifest = {
                "format": HEAD_FORMAT,
                "name": name,
                "kind": kind,
                "version": f"head-{name}-{keras_sha[:12]}",
                "base": {"model": base_model, "version": base_version},
                "input_dim": input_dim,
                "dim": dim,
                "classes": classes,
                "files": {
                    "keras": {"name": keras_path.name, "sha256": keras_sha},
                    "tflite": {"name": tflite_path.name, "sha256": sha256_file(staged_tflite)},
                },
                "built_with": {"keras": keras.__version__},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "keras_vs_tflite_max_abs_diff": max_diff,
                **(extra or {}),
            }
            os.replace(staged_keras, keras_path)
            os.replace(staged_tflite, tflite_path)
            staged_manifest = staging / manifest_path.name
            staged_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(staged_manifest, manifest_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return HeadFiles.read(Path(model_dir), name)


def _self_check(model: Any, tflite_path: Path, input_dim: int) -> float:
    from worker.model.runners import TFLiteRunner

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4, input_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # Called directly, not predict_on_batch: no tf.function traced per saved head.
    expected = np.asarray(model(vectors, training=False)[OUTPUT_NAME])
    got = TFLiteRunner(tflite_path, threads=1).run(vectors)[OUTPUT_NAME]
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(expected - got).max() / scale)
