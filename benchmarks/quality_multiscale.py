"""Which layers to concatenate for "multi-scale" features? An exploration, in numpy.

Runs the converted EfficientNet-Lite (Keras) with extra outputs: the global average of the
last block of stages 3-7 (strides 8 to 32) and of the head, on labelled sets framed the
default way, and scores exact cosine k-NN (P@5, same label among the 5 nearest, itself
excluded) for the pooled head alone and for concatenations of per-block L2-normalised
features with a few weightings. The combination that wins is then built into the model
(``LOOKALIKE_FEATURES=multiscale``) and measured through the real path by
``benchmarks/quality_variants.py``; this script only chooses it.

    python -m indexer.quality.datasets fashion-mnist
    python -m indexer.quality.datasets openclipart
    python -m indexer.quality.datasets tuxpaint
    python -m indexer.quality.datasets shop
    python benchmarks/quality_multiscale.py --cache-dir build/test-models
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from indexer.quality.datasets import QUALITY_SETS, load_labelled
from lookalike.images import ImageProblem, decode_image
from lookalike.models import get_backbone
from worker.model import efficientnet_lite
from worker.model.cache import build_model_cache
from worker.model.embedder import l2_normalise
from worker.model.files import import_tensorflow
from worker.model.preprocess import preprocess

DATASETS = QUALITY_SETS


def stage_ends(model: str) -> dict[str, str]:
    """Output name -> Keras layer name: the last block of stages 3-7, and the head."""
    variant = get_backbone(model)
    out = {}
    for stage, block in efficientnet_lite.stage_ends(variant).items():
        if stage >= 3:
            suffix = "add" if block.residual else "project_bn"
            out[f"s{stage}"] = f"block{block.index}_{suffix}"
    last = efficientnet_lite.blocks(variant)[-1]
    out["s7x"] = f"block{last.index}_expand_relu6"
    out["head"] = "head_relu6"
    return out


def extract(model: str, cache_dir: Path, dataset: Path, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        with np.load(cache) as data:
            return {k: data[k] for k in data.files}
    import_tensorflow()
    import keras

    files = build_model_cache(model, cache_dir)
    net = keras.saving.load_model(files.keras, compile=False)
    layers = stage_ends(model)
    outputs = {
        name: keras.layers.GlobalAveragePooling2D()(net.get_layer(layer).output)
        for name, layer in layers.items()
    }
    probe = keras.Model(net.inputs, outputs)
    items = load_labelled(dataset)
    feats: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    kept = []
    for start in range(0, len(items), 64):
        images = []
        for item in items[start : start + 64]:
            try:
                images.append(decode_image(item.path.read_bytes(), max_pixels=40_000_000))
            except ImageProblem:
                continue  # as the evaluation does: an image the service refuses is left out
            kept.append(item)
        pixels = preprocess(images, files.input_size, "pad").astype(np.float32)
        out = probe.predict_on_batch(pixels)
        for name in layers:
            feats[name].append(np.asarray(out[name]))
    result = {name: np.concatenate(parts) for name, parts in feats.items()}
    result["labels"] = np.array([item.label for item in kept])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **result)  # type: ignore[arg-type]
    return result


def p_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--out", type=Path, default=Path("build/quality/multiscale"))
    args = parser.parse_args()

    feats = {
        name: extract(args.model, args.cache_dir, path, args.out / f"{name}-{args.model}.npz")
        for name, path in DATASETS.items()
        if path.exists()
    }
    names = [n for n in stage_ends(args.model) if n != "head"]
    combos: list[tuple[str, dict[str, float]]] = [("head (pooled)", {"head": 1.0})]
    for n in names:
        combos.append((f"{n} alone", {n: 1.0}))
    for r in (1, 2, 3):
        for subset in itertools.combinations(names, r):
            for w in (0.5, 1.0):
                parts = {"head": 1.0, **dict.fromkeys(subset, w)}
                combos.append((f"head + {w:g}x({'+'.join(subset)})", parts))
    header = " | ".join(feats)
    print(f"| features | {header} | mean |")
    print("| --- |" + " --- |" * (len(feats) + 1))
    for label, parts in combos:
        scores = []
        for data in feats.values():
            blocks = [w * l2_normalise(data[n]) for n, w in parts.items()]
            scores.append(p_at_k(l2_normalise(np.concatenate(blocks, axis=1)), data["labels"]))
        cells = " | ".join(f"{s:.3f}" for s in scores)
        print(f"| {label} | {cells} | {np.mean(scores):.3f} |")


if __name__ == "__main__":
    main()
