"""Which framing of an image gives better neighbours: centre crop or the whole image?

Embeds Debian's ``tuxpaint-stamps-default`` raster stamps (photos and drawings, transparent
PNGs flattened onto white) with each preprocessing method and scores exact cosine k-NN:

- P@k: mean fraction of a query's k nearest neighbours (itself excluded) sharing its label,
  the label being the stamp's top-level category folder (animals, food, vehicles, ...);
- 1-NN: fraction of queries whose nearest neighbour shares its label.

    apt-get install -y tuxpaint-stamps-default
    python benchmarks/preprocess_eval.py [--model efficientnet-lite0] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from worker.model import load_embedder
from worker.model.embedder import l2_normalise
from worker.model.preprocess import RESIZE_METHOD, preprocess

STAMPS = Path("/usr/share/tuxpaint/stamps")
METHODS = ("crop", "stretch", "pad")


def load_stamps(root: Path) -> tuple[list[Image.Image], np.ndarray]:
    paths = sorted(root.glob("*/**/*.png"))
    if not paths:
        raise SystemExit(f"no PNG stamps under {root}: apt-get install -y tuxpaint-stamps-default")
    images, labels = [], []
    for path in paths:
        with Image.open(path) as img:
            img.load()
            images.append(img.copy())
        labels.append(path.relative_to(root).parts[0])
    return images, np.array(labels)


def knn_hits(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n, k) bool: does the query's i-th nearest neighbour (self excluded) share its label."""
    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return labels[nearest] == labels[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stamps", type=Path, default=STAMPS)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--runtime", default="tflite", choices=("tflite", "keras"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()

    images, labels = load_stamps(args.stamps)
    categories, counts = np.unique(labels, return_counts=True)
    print(
        f"{len(images)} stamps in {len(categories)} categories "
        f"(largest {counts.max()}, smallest {counts.min()})"
    )
    embedder = load_embedder(args.model, args.cache_dir, runtime=args.runtime, threads=args.threads)
    print(
        f"model {embedder.version.rsplit(':', 1)[0]}, runtime {embedder.runtime}, "
        f"{embedder.threads} threads; 'resize' is currently '{RESIZE_METHOD}'"
    )
    print(f"\n| method | P@{args.k} | 1-NN | P@{args.k} - crop (± 2 SE, paired) | seconds |")
    print("| --- | --- | --- | --- | --- |")
    baseline: np.ndarray | None = None
    for method in METHODS:
        started = time.monotonic()
        pixels = preprocess(images, embedder.input_size, method)
        features = embedder.infer(pixels)["features"]
        hits = knn_hits(l2_normalise(features), labels, args.k)
        per_query = hits.mean(axis=1)
        if baseline is None:
            baseline = per_query
        diff = per_query - baseline
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        print(
            f"| {method} | {per_query.mean():.3f} | {hits[:, 0].mean():.3f} | "
            f"{diff.mean():+.3f} ± {2 * se:.3f} | {time.monotonic() - started:.0f} |"
        )
    chance = float(((counts * (counts - 1)).sum()) / (len(labels) * (len(labels) - 1)))
    print(f"\nchance level (random neighbour shares the label): {chance:.3f}")


if __name__ == "__main__":
    main()
