"""``indexer train-head DATASET --name NAME``: a catalog-tuned embedding head, and its report.

1. Embed the labelled images with the configured backbone (the worker's Embedder; vectors
   cached per dataset and version with ``--cache-dir``).
2. Split them, stratified by label, into a training and a held-out part (30 %).
3. Train a head (:mod:`worker.model.heads`: ``classifier``, ``triplet``, ``standardise`` or
   ``lda``, the closed form for a few dozen labels a class)
   on the training part only, and save it into the model cache as a new model version
   (``<model cache>/heads/<name>.*``; select it with ``LOOKALIKE_HEAD=<name>``).
4. Load the saved head the way the worker does and score the held-out part through the
   vector store: P@k, R@k, mAP@k of the backbone's vectors and of the head's, each with the
   held-out images as queries and as the gallery. The report says whether the head beats the
   backbone's P@5 by the target (0.10), and if it does not, what the numbers suggest.

With ``--fit-all``, the head is then trained again on every labelled image and saved over
the evaluated one (a new version): the held-out numbers estimate its quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from indexer.quality.augment import augment_methods, parse_augmentations
from indexer.quality.datasets import LabelledImage, by_label, load_labelled, stratified_split
from indexer.quality.evaluate import (
    KS,
    embed_items,
    metrics_table,
    model_settings,
    score_vectors,
)
from indexer.quality.results import MODEL, Scores

if TYPE_CHECKING:
    from lookalike.settings import Settings

TARGET_GAIN = 0.10
BACKBONE = "backbone"
HEAD = "head"


@dataclass
class HeadReport:
    name: str
    kind: str
    version: str
    embedder_version: str
    base_version: str
    dim: int
    train_images: int
    test_images: int
    classes: int
    test: dict[str, Scores]
    train: dict[str, Scores]
    options: dict[str, Any]
    fit_all: bool
    seconds: dict[str, float]
    # The held-out images' labels, in the order of the scores' per-query values.
    test_labels: list[str]
    # Vectors without a label given to the head (None: none asked for), and how many of
    # them it trained on with a guessed label (pseudo-labels).
    unlabelled: int | None = None
    pseudo_labelled: int | None = None

    @property
    def gain(self) -> float:
        return self.test[HEAD].summary["P@5"] - self.test[BACKBONE].summary["P@5"]

    @property
    def meets_target(self) -> bool:
        return self.gain >= TARGET_GAIN

    def verdict(self) -> str:
        raw, head = self.test[BACKBONE].summary["P@5"], self.test[HEAD].summary["P@5"]
        numbers = f"held-out P@5 {raw:.3f} -> {head:.3f} ({self.gain:+.3f})"
        if self.meets_target:
            target = f"by at least {TARGET_GAIN:.2f}"
            return f"The {self.kind} head beats the backbone {target}: {numbers}."
        reasons = []
        if self.kind == "standardise":
            reasons.append(
                "a standardise head does not use the labels: it only rescales the features "
                "by the catalog's own statistics"
            )
        train_gain = self.train[HEAD].summary["P@5"] - self.train[BACKBONE].summary["P@5"]
        if raw > 1 - TARGET_GAIN - 0.05:
            reasons.append(f"the backbone alone already reaches P@5 {raw:.3f}, leaving little room")
        if train_gain - self.gain > 0.15:
            reasons.append(
                f"it overfits: on its own training images P@5 gains {train_gain:+.3f}, on "
                f"held-out images {self.gain:+.3f}"
            )
        per_class = self.train_images / max(self.classes, 1)
        if per_class < 30:
            reasons.append(
                f"there are few labelled images to learn from ({per_class:.0f} per class)"
            )
        weakest = sorted(self.test[HEAD].per_class(self.test_labels, "P@5").items(), key=_value)
        if not reasons and weakest:
            listed = ", ".join(f"{label} {value:.2f}" for label, value in weakest[:3])
            reasons.append(
                "the backbone's features do not separate some labels well enough for a small "
                f"head to pull them apart (lowest held-out P@5 with the head: {listed})"
            )
        return (
            f"The {self.kind} head does NOT beat the backbone by {TARGET_GAIN:.2f}: {numbers}. "
            f"Likely why: {'; '.join(reasons)}."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "head": {
                "name": self.name,
                "kind": self.kind,
                "version": self.version,
                "embedder_version": self.embedder_version,
                "base_version": self.base_version,
                "dim": self.dim,
                "fit_all": self.fit_all,
                "options": self.options,
            },
            "split": {
                "train_images": self.train_images,
                "test_images": self.test_images,
                "classes": self.classes,
                **(
                    {"unlabelled": self.unlabelled, "pseudo_labelled": self.pseudo_labelled}
                    if self.unlabelled is not None
                    else {}
                ),
            },
            "held_out": {k: _rounded(v.summary) for k, v in self.test.items()},
            "training_split": {k: _rounded(v.summary) for k, v in self.train.items()},
            "gain_p_at_5": round(self.gain, 4),
            "target_gain": TARGET_GAIN,
            "meets_target": self.meets_target,
            "verdict": self.verdict(),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def _value(item: tuple[str, float]) -> float:
    return item[1]


def _rounded(summary: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in summary.items()}


def train_and_evaluate(
    items: list[LabelledImage],
    settings: Settings,
    *,
    name: str,
    options: Any = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    fit_all: bool = False,
    cache_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
    augment: tuple[str, ...] = (),
) -> HeadReport:
    """Train head ``name`` on ``items``' labels, save it, and score it on a held-out split.

    ``augment`` (indexer/quality/augment.py): each training image's altered copies are
    embedded too and trained on with its label (the held-out images never are)."""
    from worker.model import get_embedder

    embedder = get_embedder(settings.replace(head=""))
    embedded = embed_items(
        items,
        {MODEL: embedder.embed},
        versions={MODEL: embedder.version},
        max_pixels=settings.max_image_pixels,
        cache_dir=cache_dir,
        progress=progress,
    )
    kept = [items[i] for i in embedded.ok]
    copies = None
    if augment:
        methods, versions = augment_methods(embedder.embed, embedder.version, augment)

        def copies(train: list[LabelledImage]) -> np.ndarray:
            done = embed_items(
                train,
                methods,
                versions=versions,
                max_pixels=settings.max_image_pixels,
                cache_dir=cache_dir,
                progress=progress,
            )
            if len(done.ok) != len(train):  # they decoded a moment ago
                raise ValueError(f"{len(train) - len(done.ok)} images no longer decode")
            return np.stack([done.vectors[kind] for kind in augment], axis=1)

    return fit_and_score(
        kept,
        embedded.vectors[MODEL],
        settings,
        name=name,
        base_model=embedder.name,
        base_version=embedder.version,
        training={"dataset_images": len(kept), **({"augment": list(augment)} if augment else {})},
        options=options,
        test_fraction=test_fraction,
        seed=seed,
        fit_all=fit_all,
        seconds={"embed": embedded.seconds},
        copies=copies,
    )


def fit_and_score(
    items: list[LabelledImage],
    vectors: np.ndarray,
    settings: Settings,
    *,
    name: str,
    base_model: str,
    base_version: str,
    training: dict[str, Any],
    options: Any = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    fit_all: bool = False,
    seconds: dict[str, float] | None = None,
    no_hold_out: str = "no label has 4 images or more: nothing to hold out",
    copies: Callable[[list[LabelledImage]], np.ndarray] | None = None,
    unlabelled: np.ndarray | None = None,
) -> HeadReport:
    """Train head ``name`` on backbone ``vectors`` (one row per item of ``items``) and their
    labels, save it into ``settings.model_dir``, and score it on a held-out split, whether
    the vectors were embedded here (:func:`train_and_evaluate`) or read from the catalog
    (indexer/quality/catalog_head.py). ``training`` goes into the manifest, with the split's
    figures and the options added; ``no_hold_out`` is the error when no label has 4 items.

    ``copies(items)``: (len(items), copies, dim) vectors of altered copies of those images,
    trained on with their labels (augmentation; the held-out ones are never asked for).
    ``unlabelled``: vectors of the catalog without a label, for the head to pseudo-label
    (:func:`worker.model.heads.pseudo_labelled`); the held-out split is never among them."""
    from worker.model.embedder import l2_normalise
    from worker.model.heads import (
        TrainOptions,
        check_name,
        load_head,
        resolve_kind,
        save_head,
        train_head,
        with_pseudo_labels,
    )

    check_name(name)
    options = options or TrainOptions(seed=seed)
    seconds = dict(seconds or {})
    position = {item.id: i for i, item in enumerate(items)}
    train_items, test_items = stratified_split(items, test_fraction=test_fraction, seed=seed)
    if not test_items:
        raise ValueError(no_hold_out)
    train_x = vectors[[position[i.id] for i in train_items]]
    test_x = vectors[[position[i.id] for i in test_items]]
    train_y = np.array([i.label for i in train_items])
    # "auto" becomes the kind for the training split's labels a class, saved and reported.
    options = resolve_kind(options, train_y)

    added: dict[str, int] = {}  # what the head trained on besides the labelled vectors

    def fit(fit_items: list[LabelledImage], x: np.ndarray, y: np.ndarray) -> Any:
        if copies is not None:
            started = time.monotonic()
            extra = copies(fit_items)
            seconds["augment"] = seconds.get("augment", 0.0) + time.monotonic() - started
            x = np.concatenate([x, extra.reshape(-1, x.shape[1])])
            y = np.concatenate([y, np.repeat(y, extra.shape[1])])
            added["augmented_copies"] = len(extra) * extra.shape[1]
        if unlabelled is not None:
            labelled = len(x)
            x, y = with_pseudo_labels(x, y, unlabelled, options)
            added["unlabelled_vectors"] = len(unlabelled)
            # The confident share of them, trained on with the label guessed for each.
            added["pseudo_labelled"] = len(x) - labelled
        return train_head(x, y, options)

    started = time.monotonic()
    model = fit(train_items, train_x, train_y)
    seconds["train"] = time.monotonic() - started - seconds.get("augment", 0.0)
    training = {
        **training,
        "train_images": len(train_items),
        "test_fraction": test_fraction,
        "seed": seed,
        "options": asdict(options),
        **added,
    }

    def save(model: Any, labels: list[str], extra: dict[str, Any]) -> Any:
        return save_head(
            model,
            name=name,
            kind=options.kind,
            model_dir=settings.model_dir,
            base_model=base_model,
            base_version=base_version,
            classes=labels,
            extra=extra,
        )

    files = save(model, sorted(set(train_y.tolist())), {"training": training})
    # Scored the way the worker computes it: the saved head, on the backbone's vectors.
    head = load_head(settings.model_dir, name, settings.runtime, settings.inference_threads)
    started = time.monotonic()
    test = score_vectors(
        test_items, {BACKBONE: test_x, HEAD: l2_normalise(head.apply(test_x))}, ks=KS
    )
    train = score_vectors(
        train_items, {BACKBONE: train_x, HEAD: l2_normalise(head.apply(train_x))}, ks=KS
    )
    seconds["evaluate"] = time.monotonic() - started
    evaluated_version = head.version
    if fit_all:
        started = time.monotonic()
        all_y = np.array([i.label for i in items])
        model = fit(items, vectors, all_y)
        training = {**training, "train_images": len(items), "fit_all": True, **added}
        extra = {"training": training, "evaluated_version": evaluated_version}
        files = save(model, sorted(set(all_y.tolist())), extra)
        seconds["train_all"] = time.monotonic() - started
    report = HeadReport(
        name=name,
        kind=options.kind,
        version=files.version,
        embedder_version=f"{base_version}:{files.version}",
        base_version=base_version,
        dim=files.dim,
        train_images=len(train_items),
        test_images=len(test_items),
        classes=len(by_label(items)),
        test={k: v[0] for k, v in test.items()},
        train={k: v[0] for k, v in train.items()},
        options=asdict(options),
        fit_all=fit_all,
        seconds=seconds,
        test_labels=[item.label for item in test_items],
        unlabelled=added.get("unlabelled_vectors"),
        pseudo_labelled=added.get("pseudo_labelled"),
    )
    # The manifest carries its own evaluation, for whoever picks the head later.
    manifest = json.loads(files.manifest.read_text())
    summary = report.as_dict()
    manifest["evaluation"] = {
        "held_out": summary["held_out"],
        "gain_p_at_5": summary["gain_p_at_5"],
        "meets_target": report.meets_target,
    }
    tmp = files.manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(files.manifest)
    return report


def train_options(args: argparse.Namespace) -> Any:
    """The head's training options from ``train-head``'s command line, whether it trains on
    a dataset or on the catalog (indexer/quality/catalog_head.py)."""
    from worker.model.heads import TrainOptions

    return TrainOptions(
        kind=args.kind,
        dim=args.dim,
        epochs=args.epochs,
        class_weights=not args.no_class_weights,
        seed=args.seed,
    )


def write_head_report(report: HeadReport, out_dir: Path, dataset: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    summary = report.as_dict()
    summary["dataset"] = dataset
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    names = {BACKBONE: f"backbone `{report.base_version}`", HEAD: f"**head** `{report.name}`"}
    lines = [
        f"# Head `{report.name}` ({report.kind})",
        "",
        f"Dataset `{dataset}`: {report.train_images} training and {report.test_images} held-out "
        f"images, {report.classes} classes. Saved as `{report.version}` "
        f"({report.dim}-d); the embedder version is `{report.embedder_version}`."
        + (
            f" Also given {report.unlabelled} items without a label: "
            f"{report.pseudo_labelled} of them trained on with the label the discriminant "
            "guesses (pseudo-labels; `--no-unlabelled` leaves them out)."
            if report.unlabelled is not None
            else ""
        )
        + (" Then trained again on all images (--fit-all)." if report.fit_all else ""),
        "",
        "## Held-out images (queries and gallery)",
        "",
        metrics_table(report.test, KS, names),
        "",
        report.verdict(),
        "",
        "## Training images (for comparison: a large gap to the held-out gain is overfitting)",
        "",
        metrics_table(report.train, KS, names),
        "",
        f"Options: `{json.dumps(report.options)}`",
        "",
        f"Serve it: `indexer reindex --head {report.name}` (a new version of the catalog; "
        "`indexer rollback` goes back), or `LOOKALIKE_HEAD` for a new catalog.",
        "",
    ]
    paths["markdown"].write_text("\n".join(lines))
    return paths


# --------------------------------------------------------------------------- command line


def add_train_head_parser(sub: Any) -> None:
    from indexer.quality.evaluate import add_model_options

    p = sub.add_parser(
        "train-head",
        help="train a catalog-tuned embedding head on labelled images (a new model version)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("dataset", type=Path, nargs="?", help="labelled folder, or .csv/.jsonl manifest")
    p.add_argument("--name", required=True, help="head name: lower-case letters, digits, '-'")
    p.add_argument(
        "--kind",
        choices=("auto", "classifier", "triplet", "standardise", "lda", "combined"),
        default="auto",
        help="auto (default): lda when the median class has fewer than 10 training images, "
        "else combined",
    )
    p.add_argument("--dim", type=int, default=256, help="size of the head's embedding")
    p.add_argument("--epochs", type=int, default=0, help="0: the kind's default")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-class-weights", action="store_true")
    p.add_argument(
        "--fit-all", action="store_true", help="after evaluating, train again on all images"
    )
    p.add_argument(
        "--augment",
        default="",
        metavar="flip,crop,zoom",
        help="also train on altered copies of each training image (each copy one more "
        "inference per image; not with --from-catalog)",
    )
    p.add_argument("--label-depth", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="report folder (build/heads/NAME)")
    p.add_argument("--cache-dir", type=Path, default=None, help="reuse embeddings kept here")
    add_model_options(p, head=False)


def run_train_head(args: argparse.Namespace) -> int:
    from worker.model.heads import HeadError, check_name

    if args.dataset is None:
        print("indexer train-head: give DATASET, or --from-catalog --label FIELD", file=sys.stderr)
        return 2
    if args.unlabelled:
        print(
            "indexer train-head: --unlabelled reads the catalog's items without a label: "
            "it needs --from-catalog",
            file=sys.stderr,
        )
        return 2
    try:
        check_name(args.name)
        augment = parse_augmentations(args.augment)
        settings = model_settings(args)
        items = load_labelled(args.dataset, label_depth=args.label_depth)
        report = train_and_evaluate(
            items,
            settings,
            name=args.name,
            options=train_options(args),
            test_fraction=args.test_fraction,
            seed=args.seed,
            fit_all=args.fit_all,
            cache_dir=args.cache_dir,
            augment=augment,
        )
    except (ValueError, HeadError, OSError) as exc:
        print(f"indexer train-head: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("build/heads") / args.name
    paths = write_head_report(report, out, str(args.dataset))
    print(report.verdict())
    print(f"saved head {report.version} in {settings.model_dir / 'heads'}")
    print(f"report: {paths['markdown']}")
    return 0
