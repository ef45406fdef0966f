"""How good are the neighbours? ``indexer evaluate DATASET`` on a labelled folder or manifest.

Every image is embedded with the worker's own :class:`worker.model.Embedder` (the settings
pick the model, framing, variants and head, as they do in the service), stored in a fresh
qdrant-edge shard through :mod:`lookalike.store`, and searched back by its vector with
itself excluded, as ``GET /v1/items/{id}/similar`` does. A neighbour is relevant when it
has the query's label. For each k (1, 5, 10 by default), averaged over the queries whose
label has at least one other image:

- **P@k**, precision: the fraction of the k nearest that are relevant;
- **R@k**, recall: the fraction of the query's relevant images found among the k nearest;
- **mAP@k**: mean of AP@k = (1 / min(k, R)) * sum over relevant ranks i <= k of P@i, R being
  the number of relevant images; 1.0 means the first min(k, R) neighbours are all relevant.

Two baselines go through the same store and the same metrics, so a reader knows what the
numbers mean: a **colour histogram** (8x8x8 RGB bins, square-rooted: what "looks alike"
means without a network) and **random** vectors (chance; its expectation is also given
exactly). The report (Markdown + JSON) has a per-class chart and a grid of example queries.

Evaluation runs in-process (no service needed): it imports the worker's model code, so it
needs the ``worker`` extra, and ``matplotlib`` (the ``eval`` extra) for the pictures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from PIL import Image

from indexer.quality import report_pictures
from indexer.quality.datasets import LabelledImage
from indexer.quality.results import COLOUR, MODEL, RANDOM, Evaluation, MethodResult, Scores
from lookalike.images import (
    DECODE_FULL,
    DECODE_SCALED,
    ImageProblem,
    decode_as,
)
from lookalike.schema import point_id
from lookalike.store import Search, StoredItem, VectorStore

if TYPE_CHECKING:
    from lookalike.settings import Settings

KS = (1, 5, 10)
STORES = ("edge", "memory")
# Bump when the colour histogram changes: cached histograms carry it in their key.
COLOUR_VERSION = "rgb8x8x8-sqrt-v1"
_BATCH = 64


# --------------------------------------------------------------------------- metrics


def retrieval_metrics(
    labels: Sequence[str], neighbours: np.ndarray, ks: Sequence[int] = KS
) -> Scores:
    """P@k, R@k and mAP@k of ``neighbours`` (n, >= max k) indexes into ``labels``, -1 = none.

    Row i lists the nearest images to image i, best first, i itself excluded.
    """
    labels_arr = np.asarray(labels)
    n = len(labels_arr)
    k_max = max(ks)
    if neighbours.shape != (n, neighbours.shape[1]) or neighbours.shape[1] < k_max:
        raise ValueError(f"neighbours must be (n, >= {k_max}), got {neighbours.shape}")
    _, inverse, counts = np.unique(labels_arr, return_inverse=True, return_counts=True)
    relevant_total = counts[inverse] - 1  # other images with the query's label
    valid = relevant_total > 0
    found = neighbours[:, :k_max]
    relevant = (found >= 0) & (labels_arr[np.maximum(found, 0)] == labels_arr[:, None])
    hits_so_far = np.cumsum(relevant, axis=1)
    precision_at_rank = hits_so_far / np.arange(1, k_max + 1)
    per_query: dict[str, np.ndarray] = {}
    safe_total = np.maximum(relevant_total, 1)
    for k in ks:
        hits = hits_so_far[:, k - 1]
        ap = (precision_at_rank[:, :k] * relevant[:, :k]).sum(axis=1) / np.minimum(k, safe_total)
        for name, values in (
            (f"P@{k}", hits / k),
            (f"R@{k}", hits / safe_total),
            (f"mAP@{k}", ap),
        ):
            per_query[name] = np.where(valid, values, np.nan)
    summary = {
        name: float(np.nanmean(values)) if valid.any() else float("nan")
        for name, values in per_query.items()
    }
    return Scores(summary, per_query, valid)


def paired_difference(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Mean of ``other`` - ``reference`` (per-query values of one metric) over the queries
    valid in both, and two standard errors of it."""
    mask = ~np.isnan(reference) & ~np.isnan(other)
    diff = other[mask] - reference[mask]
    return float(diff.mean()), float(2 * diff.std(ddof=1) / np.sqrt(len(diff)))


def chance_precision(labels: Sequence[str]) -> float:
    """Expected P@k of a random ranking (any k): mean over valid queries of R / (n - 1)."""
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    others = counts[inverse] - 1
    valid = others > 0
    if not valid.any() or len(labels) < 2:
        return float("nan")
    return float((others[valid] / (len(labels) - 1)).mean())


# --------------------------------------------------------------------------- the store path


@contextmanager
def evaluation_store(kind: str, name: str, root: Path) -> Iterator[VectorStore]:
    """A fresh, empty collection: a qdrant-edge shard under ``root`` (the embedded default)
    or qdrant-client's local mode (``"memory"``)."""
    from lookalike.store import ClientStore, EdgeStore

    store: VectorStore
    if kind == "edge":
        store = EdgeStore(root / name, "evaluation")
    elif kind == "memory":
        from qdrant_client import QdrantClient

        store = ClientStore(QdrantClient(":memory:"), "evaluation")
    else:
        raise ValueError(f"unknown store {kind!r}; choose one of {', '.join(STORES)}")
    try:
        yield store
    finally:
        store.close()


def rank_in_store(
    store: VectorStore,
    ids: Sequence[str],
    labels: Sequence[str],
    vectors: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Index ``vectors`` in ``store``, then search each one back with itself excluded.

    Returns (neighbours (n, k) int indexes, -1 where fewer hits; scores (n, k) cosine).
    """
    store.ensure_collection(int(vectors.shape[1]))
    pids = [point_id(item_id) for item_id in ids]
    for start in range(0, len(ids), 256):
        store.upsert(
            [
                StoredItem(
                    pids[i],
                    {"item_id": ids[i], "metadata": {"category": labels[i]}},
                    vectors[i],
                )
                for i in range(start, min(start + 256, len(ids)))
            ]
        )
    index = {item_id: i for i, item_id in enumerate(ids)}
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    scores = np.full((len(ids), k), np.nan, dtype=np.float32)
    for start in range(0, len(ids), 128):
        stop = min(start + 128, len(ids))
        searches = [Search(vectors[i], limit=k, exclude_ids=[pids[i]]) for i in range(start, stop)]
        for row, hits in enumerate(store.query_batch(searches), start):
            for rank, hit in enumerate(hits[:k]):
                neighbours[row, rank] = index[hit.payload["item_id"]]
                scores[row, rank] = hit.score
    return neighbours, scores


# --------------------------------------------------------------------------- vectors


def colour_histogram(images: Sequence[Image.Image], bins: int = 8) -> np.ndarray:
    """(n, bins**3) square-rooted joint RGB histograms of 64x64 thumbnails.

    The square root makes cosine similarity the Hellinger (Bhattacharyya) affinity of the
    two colour distributions. Images come flattened onto white, as the model sees them.
    """
    out = np.empty((len(images), bins**3), dtype=np.float32)
    for i, image in enumerate(images):
        pixels = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
        quantised = (pixels.astype(np.int64) * bins) // 256
        codes = (quantised[..., 0] * bins + quantised[..., 1]) * bins + quantised[..., 2]
        counts = np.bincount(codes.ravel(), minlength=bins**3)
        out[i] = np.sqrt(counts / counts.sum())
    return out


def random_vectors(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _dataset_key(items: Sequence[LabelledImage]) -> str:
    digest = hashlib.sha256()
    for item in items:
        try:
            stat = item.path.stat()
            digest.update(f"{item.id}\t{item.path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{item.id}\t{item.path}\tmissing\n".encode())
    return digest.hexdigest()[:16]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


@dataclass
class Embedded:
    """Vectors per method for the images that decoded; failures by item id."""

    ok: list[int]
    vectors: dict[str, np.ndarray]
    failed: dict[str, str] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0


def embed_items(
    items: Sequence[LabelledImage],
    methods: dict[str, Callable[[Sequence[Image.Image]], np.ndarray]],
    *,
    versions: dict[str, str],
    max_pixels: int,
    cache_dir: Path | None = None,
    progress: TextIO | None = None,
    decode: str = DECODE_FULL,
    input_size: int = 0,
) -> Embedded:
    """Decode each image once and run every method on it, ``_BATCH`` images at a time.

    ``versions`` names what each method computes (an embedder's version): with
    ``cache_dir``, vectors are kept there per dataset and version and reused.
    ``decode``: as the worker decodes a catalog of that mode for a model of ``input_size``
    (lookalike/images.py decode_as): ``DECODE_SCALED`` shrink-on-load, ``DECODE_FULL`` in full.
    """
    if decode != DECODE_FULL:
        versions = {name: f"{v}:{DECODE_SCALED}" for name, v in versions.items()}
    started = time.monotonic()
    key = _dataset_key(items)
    cached: dict[str, np.ndarray] = {}
    cache_files: dict[str, Path] = {}
    ok_cached: list[int] | None = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for name in methods:
            path = cache_dir / f"{key}-{_safe(versions[name])}.npz"
            cache_files[name] = path
            if path.exists():
                with np.load(path) as data:
                    cached[name] = data["vectors"]
                    ok_cached = [int(i) for i in data["ok"]]
    todo = {name: fn for name, fn in methods.items() if name not in cached}
    ok: list[int] = []
    failed: dict[str, str] = {}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in todo}
    if todo:
        for start in range(0, len(items), _BATCH):
            batch: list[Image.Image] = []
            for i in range(start, min(start + _BATCH, len(items))):
                try:
                    data = items[i].path.read_bytes()
                    image = decode_as(data, decode, max_pixels=max_pixels, input_size=input_size)
                except (OSError, ImageProblem) as exc:
                    failed[items[i].id] = str(exc)
                    continue
                ok.append(i)
                batch.append(image)
            if batch:
                for name, fn in todo.items():
                    parts[name].append(fn(batch))
            if progress is not None:
                done = min(start + _BATCH, len(items))
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"\r  embedded {done}/{len(items)} ({rate:.0f} img/s)", end="", file=progress)
        if progress is not None:
            print(file=progress)
    elif ok_cached is not None:
        ok = ok_cached
    if ok_cached is not None and ok != ok_cached:
        # The cache and this run disagree on which images decode: trust neither cache.
        raise RuntimeError("cached vectors do not match the images; delete the cache")
    vectors = dict(cached)
    for name, chunks in parts.items():
        width = 0 if not chunks else chunks[0].shape[1]
        vectors[name] = np.concatenate(chunks) if chunks else np.empty((0, width), np.float32)
        if name in cache_files:
            np.savez(cache_files[name], vectors=vectors[name], ok=np.array(ok, dtype=np.int64))
    failed_ids = {items[i].id for i in range(len(items))} - {items[i].id for i in ok}
    for item_id in failed_ids:
        failed.setdefault(item_id, "could not be decoded (cached run)")
    return Embedded(ok, vectors, failed, sorted(cached), time.monotonic() - started)


# --------------------------------------------------------------------------- evaluation


def model_description(embedder: Any) -> dict[str, Any]:
    return {
        "name": embedder.name,
        "version": embedder.version,
        "runtime": embedder.runtime,
        "dim": embedder.dim,
        "input_size": embedder.input_size,
    }


def evaluate(
    items: Sequence[LabelledImage],
    settings: Settings,
    *,
    dataset: str = "",
    ks: Sequence[int] = KS,
    baselines: bool = True,
    store: str = "edge",
    cache_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
    decode: str = DECODE_SCALED,
) -> Evaluation:
    """Embed ``items`` with the embedder ``settings`` describe and score its neighbours.

    ``decode``: decode the images as a new catalog's worker does (``scaled-1``,
    shrink-on-load) or in full (``full``, as catalogs indexed before it)."""
    from worker.model import get_embedder

    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise ValueError("k must be positive")
    seconds: dict[str, float] = {}
    started = time.monotonic()
    embedder = get_embedder(settings)
    seconds["load_model"] = time.monotonic() - started
    methods: dict[str, Callable[[Sequence[Image.Image]], np.ndarray]] = {MODEL: embedder.embed}
    versions = {MODEL: embedder.version}
    if baselines:
        methods[COLOUR] = colour_histogram
        versions[COLOUR] = COLOUR_VERSION
    embedded = embed_items(
        items,
        methods,
        versions=versions,
        max_pixels=settings.max_image_pixels,
        cache_dir=cache_dir,
        progress=progress,
        decode=decode,
        input_size=embedder.input_size,
    )
    seconds["embed"] = embedded.seconds
    kept = [items[i] for i in embedded.ok]
    vectors = dict(embedded.vectors)
    if baselines:
        vectors[RANDOM] = random_vectors(len(kept))
    descriptions = {
        MODEL: f"{embedder.version} ({embedder.dim}-d)",
        COLOUR: "colour histogram, 8x8x8 RGB bins, square-rooted (512-d)",
        RANDOM: "random vectors (64-d, seed 0)",
    }
    started = time.monotonic()
    results = score_vectors(kept, vectors, ks=ks, store=store)
    seconds["index_and_search"] = time.monotonic() - started
    return Evaluation(
        dataset=dataset,
        items=kept,
        methods={
            name: MethodResult(name, descriptions.get(name, name), *result)
            for name, result in results.items()
        },
        model=model_description(embedder),
        ks=ks,
        chance=chance_precision([item.label for item in kept]),
        failed=embedded.failed,
        store=store,
        seconds=seconds,
    )


def score_vectors(
    items: Sequence[LabelledImage],
    vectors: dict[str, np.ndarray],
    *,
    ks: Sequence[int] = KS,
    store: str = "edge",
) -> dict[str, tuple[Scores, np.ndarray, np.ndarray]]:
    """Per method: (scores, neighbours, similarities), each through a fresh store."""
    ids = [item.id for item in items]
    labels = [item.label for item in items]
    out = {}
    with tempfile.TemporaryDirectory(prefix="lookalike-eval-") as tmp:
        for name, method_vectors in vectors.items():
            with evaluation_store(store, _safe(name), Path(tmp)) as vector_store:
                neighbours, sims = rank_in_store(vector_store, ids, labels, method_vectors, max(ks))
            out[name] = (retrieval_metrics(labels, neighbours, ks), neighbours, sims)
    return out


# --------------------------------------------------------------------------- the report


def metrics_table(methods: dict[str, Scores], ks: Sequence[int], names: dict[str, str]) -> str:
    columns = [f"{m}@{k}" for m in ("P", "R", "mAP") for k in ks]
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for key, scores in methods.items():
        cells = " | ".join(f"{scores.summary[c]:.3f}" for c in columns)
        lines.append(f"| {names.get(key, key)} | {cells} |")
    return "\n".join(lines)


def write_report(
    evaluation: Evaluation, out_dir: Path, *, examples: int = 8, title: str | None = None
) -> dict[str, Path]:
    """``report.md``, ``report.json``, ``per_class.png`` and ``examples.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = evaluation.as_dict()
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    pictures = report_pictures.pictures(evaluation, out_dir, examples)
    paths.update(pictures)

    k_mid = evaluation._k_mid
    names = {MODEL: f"**model** `{evaluation.model['version']}`", COLOUR: "colour histogram"}
    data = summary["dataset"]
    lines = [
        f"# {title or 'Retrieval quality'}",
        "",
        f"Dataset `{evaluation.dataset}`: {data['images']} images in {data['classes']} "
        f"classes; {data['queries']} queries (images whose label has another image)."
        + (f" {len(evaluation.failed)} images could not be read." if evaluation.failed else ""),
        f"Model: `{evaluation.model['version']}` ({evaluation.model['dim']}-d, "
        f"{evaluation.model['runtime']}), searched in a fresh {evaluation.store} store.",
        "",
        metrics_table({n: m.scores for n, m in evaluation.methods.items()}, evaluation.ks, names),
        "",
        f"Chance (expected P@k of a random ranking): {evaluation.chance:.3f}.",
        "",
        "P@k: fraction of the k nearest images with the query's label. R@k: fraction of the "
        "query's same-label images found among the k nearest. mAP@k: mean average precision "
        "at k, normalised by min(k, number of same-label images).",
        "",
    ]
    if "per_class" in pictures:
        lines += [f"![per-class P@{k_mid}](per_class.png)", ""]
    if "examples" in pictures:
        lines += [
            "![example queries](examples.png)",
            "",
            "Each row: a query (left) and its 5 nearest images; green frame = same label.",
            "",
        ]
    per_class = summary["per_class"]
    method_names = list(evaluation.methods)
    lines += [
        f"## Per class (P@{k_mid})",
        "",
        "| class | images | " + " | ".join(method_names) + " |",
        "| --- | --- |" + " --- |" * len(method_names),
    ]
    for label, row in sorted(per_class.items(), key=lambda kv: -kv[1]["images"]):
        cells = " | ".join("-" if row[m] is None else f"{row[m]:.3f}" for m in method_names)
        lines.append(f"| {label} | {row['images']} | {cells} |")
    paths["markdown"].write_text("\n".join(lines) + "\n")
    return paths


def add_model_options(parser: argparse.ArgumentParser, *, head: bool = True) -> None:
    """Flags that override the embedder's settings (else LOOKALIKE_* variables, defaults)."""
    from lookalike.models import MODELS
    from lookalike.settings import FEATURES, POOLINGS, PREPROCESS_MODES, RUNTIMES

    group = parser.add_argument_group("model (default: the LOOKALIKE_* settings)")
    group.add_argument("--model", choices=MODELS, default=None)
    group.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None)
    group.add_argument("--features", choices=FEATURES, default=None)
    group.add_argument(
        "--input-size", type=int, default=None, help="pixels (0: the model's default)"
    )
    group.add_argument("--pooling", choices=POOLINGS, default=None, help="of the head")
    group.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the image's and its mirror image's features",
    )
    if head:
        group.add_argument("--head", default=None, help="a trained head's name ('' for none)")
    group.add_argument("--runtime", choices=RUNTIMES, default=None)
    group.add_argument("--model-cache", type=Path, default=None, help="converted models")
    group.add_argument("--batch-size", dest="embed_batch_size", type=int, default=None)


def model_settings(args: argparse.Namespace) -> Settings:
    from lookalike.settings import Settings

    names = ("model", "preprocess", "features", "input_size", "pooling", "tta_flip", "head")
    overrides = {
        name: getattr(args, name)
        for name in (*names, "runtime", "model_cache", "embed_batch_size")
        if getattr(args, name, None) is not None
    }
    return Settings.from_env(**overrides)


def add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure retrieval quality on labelled images (P@k, R@k, mAP@k + baselines)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("dataset", type=Path, help="labelled folder, or .csv/.jsonl manifest")
    p.add_argument("--label-depth", type=int, default=1, help="folder levels in a label")
    p.add_argument("-k", type=int, nargs="+", default=list(KS), help="cut-offs (1 5 10)")
    p.add_argument("--out", type=Path, default=None, help="report folder (build/evaluation/…)")
    p.add_argument("--per-class", type=int, default=0, help="sample at most this many a class")
    p.add_argument("--seed", type=int, default=0, help="for --per-class")
    p.add_argument("--no-baselines", action="store_true", help="skip colour and random")
    p.add_argument("--store", choices=STORES, default="edge")
    p.add_argument("--examples", type=int, default=8, help="example queries in the picture")
    p.add_argument("--cache-dir", type=Path, default=None, help="reuse embeddings kept here")
    p.add_argument(
        "--decode",
        choices=(DECODE_SCALED, DECODE_FULL),
        default=DECODE_SCALED,
        help="decode shrink-on-load as the worker does for a new catalog (default), or in "
        "full as for a catalog indexed before it",
    )
    add_model_options(p)


def run_evaluate(args: argparse.Namespace) -> int:
    from indexer.quality.datasets import DatasetError, load_labelled, stratified_sample

    try:
        settings = model_settings(args)
        items = load_labelled(args.dataset, label_depth=args.label_depth)
        if args.per_class:
            items = stratified_sample(items, per_class=args.per_class, seed=args.seed)
        evaluation = evaluate(
            items,
            settings,
            dataset=str(args.dataset),
            ks=args.k,
            baselines=not args.no_baselines,
            store=args.store,
            cache_dir=args.cache_dir,
            decode=args.decode,
        )
    except (DatasetError, ValueError, OSError, LookupError) as exc:
        print(f"indexer evaluate: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("build/evaluation") / _safe(args.dataset.stem or "dataset")
    paths = write_report(evaluation, out, examples=args.examples)
    names = {MODEL: f"model {evaluation.model['version']}"}
    scores = {n: m.scores for n, m in evaluation.methods.items()}
    print(metrics_table(scores, evaluation.ks, names))
    model = evaluation.methods[MODEL].scores
    errors = ", ".join(
        f"P@{k} {model.summary[f'P@{k}']:.3f} ± {model.standard_error(f'P@{k}'):.3f}"
        for k in evaluation.ks
    )
    print(f"model: {errors} (± one standard error over the queries)")
    print(f"chance P@k: {evaluation.chance:.3f}; report: {paths['markdown']}")
    return 0
