"""The pictures of an evaluation report (``indexer evaluate``): per-class precision as a bar
chart and a grid of example queries with their nearest neighbours, drawn with matplotlib
(the `eval` extra) when it is installed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from indexer.quality.results import COLOUR, MODEL, RANDOM, Evaluation
from lookalike.images import (
    ImageProblem,
    decode_image,
)

if TYPE_CHECKING:
    pass


def _thumbnail(path: Path, size: int = 112) -> np.ndarray:
    try:
        image = decode_image(path.read_bytes(), max_pixels=40_000_000)
    except (OSError, ImageProblem):
        return np.full((size, size, 3), 200, dtype=np.uint8)
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return np.asarray(canvas)


def pictures(evaluation: Evaluation, out_dir: Path, examples: int) -> dict[str, Path]:
    try:
        import matplotlib
    except ImportError:
        print(
            "indexer: matplotlib is not installed (pip install 'lookalike[eval]'): "
            "the report has no pictures",
            file=sys.stderr,
        )
        return {}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    labels = evaluation.labels
    k_mid = evaluation._k_mid
    metric = f"P@{k_mid}"
    model = evaluation.methods[MODEL]
    per_class = model.scores.per_class(labels, metric)
    if per_class:
        order = sorted(per_class, key=lambda c: per_class[c])
        others = [m for m in (COLOUR, RANDOM) if m in evaluation.methods]
        height = max(2.5, 0.22 * len(order) + 1.2)
        fig, ax = plt.subplots(figsize=(7, height))
        y = np.arange(len(order))
        bar = 0.8 / (1 + len(others))
        ax.barh(y, [per_class[c] for c in order], bar, label="model", color="#2b6cb0")
        for j, name in enumerate(others, 1):
            values = evaluation.methods[name].scores.per_class(labels, metric)
            color = "#dd8452" if name == COLOUR else "#aaaaaa"
            ax.barh(y - j * bar, [values.get(c, 0) for c in order], bar, label=name, color=color)
        counts = dict(zip(*np.unique(np.asarray(labels), return_counts=True), strict=True))
        ax.set_yticks(y - bar * len(others) / 2, [f"{c} ({counts[c]})" for c in order], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"{metric} (fraction of the {k_mid} nearest with the same label)")
        ax.set_title(f"Per-class {metric}: {evaluation.model['version']}", fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        paths["per_class"] = _save(fig, out_dir / "per_class.png", dpi=90)
        plt.close(fig)

    queries = _example_queries(evaluation, examples)
    if queries:
        shown = 5
        fig, axes = plt.subplots(
            len(queries), shown + 1, figsize=(1.5 * (shown + 1), 1.65 * len(queries))
        )
        axes = np.atleast_2d(axes)
        for row, query in enumerate(queries):
            cells = [(query, None)] + [
                (int(j), float(s))
                for j, s in zip(
                    model.neighbours[query, :shown], model.similarity[query, :shown], strict=True
                )
                if j >= 0
            ]
            for col in range(shown + 1):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if col >= len(cells):
                    ax.axis("off")
                    continue
                index, score = cells[col]
                ax.imshow(_thumbnail(evaluation.items[index].path))
                label = labels[index]
                if score is None:
                    colour, text = "#222222", f"query: {label}"
                else:
                    same = label == labels[query]
                    colour = "#2f9e44" if same else "#e03131"
                    text = f"{label} {score:.2f}"
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(3 if score is not None else 1)
                ax.set_title(text[:28], fontsize=6, color=colour)
        fig.tight_layout()
        paths["examples"] = _save(fig, out_dir / "examples.png", dpi=80)
        plt.close(fig)
    return paths


def _save(fig: Any, path: Path, dpi: int) -> Path:
    """The figure as a 256-colour PNG: a third of the size, no visible loss for charts."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)
    return path


def _example_queries(evaluation: Evaluation, count: int, seed: int = 0) -> list[int]:
    """One query from each of the ``count`` largest classes, picked at random (seeded)."""
    if count < 1:
        return []
    valid = evaluation.methods[MODEL].scores.valid
    labels = np.asarray(evaluation.labels)
    classes, counts = np.unique(labels[valid], return_counts=True)
    rng = np.random.default_rng(seed)
    picks = []
    for label in classes[np.argsort(-counts, kind="stable")][:count]:
        candidates = np.flatnonzero((labels == label) & valid)
        picks.append(int(rng.choice(candidates)))
    return picks


# --------------------------------------------------------------------------- command line
