"""Tags of the 320 px default: ways to give the classifier back what it had at 224 px, and
their cost (issue 23; docs/quality.md "Tags").

The classifier was trained at 224 px; the default runs Lite0 at 320 px and its tags find far
fewer images. Candidates, each on the labelled sets of ``indexer evaluate-tags`` (tuxpaint,
Fashion-MNIST test) with ``top_k=3, min_score=0.1``:

- ``224 px``: the shipped model at its own side (PIL-framed at 224): the target;
- ``320 px shared``: the default's logits, from the average of its own 320 px head;
- (a) a per-channel affine map of the 320 px average (or GeM) head onto the 224 px average,
  fitted on UNLABELLED images disjoint from the evaluation ones (Fashion-MNIST train,
  openclipart, scikit-image photos): moment matching (2 x 1280 numbers) or each channel's
  least-squares line; it folds into the classifier's weights, so it costs nothing;
- (b) a second pass inside the same model: the 320 px pixels resized in the graph (bilinear)
  to 224 px and run through the same weights, logits from it;
- (c) a branch: the 320 px pass's map after stage k resized to the 224 px geometry and run
  through the remaining blocks again (k = 2, 3), logits from it.

Each variant is a TFLite model (XNNPACK, one thread) built from the shipped weights; its CPU
time per image is measured on the tuxpaint run (process CPU: compares on a shared machine).
The models of (b) and (c) hold the logits' path alone (Keras keeps what the output needs):
(b)'s cost is the embedding's plus its own; (c)'s shares the stages before the branch.

    python -m indexer.quality.datasets fashion-mnist
    python -m benchmarks.tags_side [--per-class 100] [--pool-size 1000]  # -> build/tags-side.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.quality.datasets import (
    TUXPAINT_STAMPS,
    LabelledImage,
    export_fashion_mnist,
    load_labelled,
    openclipart_manifest,
)
from indexer.quality.tag_quality import EXPECTED, tag_scores
from lookalike.images import DECODE_SCALED, ImageProblem, decode_as
from lookalike.schema import TAGS_FIELD

REPO = Path(__file__).resolve().parent.parent
SIZE, TRAINED = 320, 224
BRANCH_STAGES = (2, 3)
# A pool image this close (cosine of the GeM vectors) to an evaluation image is left out.
NEAR_DUPLICATE = 0.9
TOP_K, MIN_SCORE = 3, 0.1
MAX_PIXELS = 40_000_000
SKIMAGE_PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "rocket", "horse")


def _models(work: Path) -> dict[str, Path]:
    """TFLite files of the variants, built once into ``work``: ``shared`` (outputs the 320 px
    head's average, its GeM, the logits), ``pass224`` and ``branch<k>`` (logits), and
    ``trained`` (the 224 px model: average and logits)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    from lookalike.models import get_backbone
    from worker.model import efficientnet_lite as el
    from worker.model.cache import weights_file
    from worker.model.pth import load_state_dict

    backbone = get_backbone("efficientnet-lite0")
    state = load_state_dict(weights_file(backbone))
    full = el.build(backbone, SIZE, "gem")
    el.load_weights(full, backbone, state)
    blocks = el.blocks(backbone)

    def rest(x: Any, size: int, start: int, tag: str) -> Any:
        """Blocks ``start``.. and the head on ``x`` (side ``size``), the full model's layers
        shared; logits of the map's average."""

        def conv_bn(x: Any, name: str, stride: int, kernel: int, act: bool) -> Any:
            nonlocal size
            pad = el.same_padding(size, kernel, stride)
            if pad != (0, 0):
                x = layers.ZeroPadding2D((pad, pad), name=f"{tag}_{name}_pad")(x)
            x = full.get_layer(f"{name}_bn")(full.get_layer(f"{name}_conv")(x))
            size = math.ceil(size / stride)
            return layers.ReLU(max_value=6.0, name=f"{tag}_{name}_relu6")(x) if act else x

        for b in blocks[start:]:
            name, shortcut = f"block{b.index}", x
            if b.expand != 1:
                x = conv_bn(x, f"{name}_expand", 1, 1, True)
            x = conv_bn(x, f"{name}_dw", b.stride, b.kernel, True)
            x = conv_bn(x, f"{name}_project", 1, 1, False)
            if b.residual:
                x = layers.Add(name=f"{tag}_{name}_add")([x, shortcut])
        x = conv_bn(x, "head", 1, 1, True)
        return full.get_layer("logits")(layers.GlobalAveragePooling2D(name=f"{tag}_avg")(x))

    def block_output(index: int) -> Any:
        try:
            return full.get_layer(f"block{index}_add").output
        except ValueError:
            return full.get_layer(f"block{index}_project_bn").output

    variants: dict[str, Any] = {
        "shared": {
            "logits": full.get_layer("logits").output,
            "avg": full.get_layer("head_average").output,
            "gem": full.get_layer("features").output,
        }
    }
    pixels = layers.Resizing(TRAINED, TRAINED, interpolation="bilinear")(full.inputs[0])
    normalised = full.get_layer("normalise")(pixels)
    pad = el.same_padding(TRAINED, 3, 2)
    stem = full.get_layer("stem_bn")(
        full.get_layer("stem_conv")(layers.ZeroPadding2D((pad, pad))(normalised))
    )
    stem = layers.ReLU(max_value=6.0)(stem)
    variants["pass224"] = {"logits": rest(stem, TRAINED // 2, 0, "p224")}
    for stage in BRANCH_STAGES:
        end = el.stage_ends(backbone)[stage].index
        tap = block_output(end)
        stride = SIZE // int(tap.shape[1])
        side = math.ceil(TRAINED / stride)
        resized = layers.Resizing(side, side, interpolation="bilinear")(tap)
        variants[f"branch{stage}"] = {"logits": rest(resized, side, end + 1, f"b{stage}")}
    trained = el.build(backbone, TRAINED, "avg")
    el.load_weights(trained, backbone, state)
    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, outputs in [*variants.items(), ("trained", None)]:
        path = work / f"{name}.tflite"
        paths[name] = path
        if path.exists():
            continue
        model = (
            keras.Model(
                trained.inputs,
                {
                    "avg": trained.get_layer("features").output,
                    "logits": trained.get_layer("logits").output,
                },
            )
            if outputs is None
            else keras.Model(full.inputs, outputs)
        )
        model.export(str(path), format="litert", verbose=False)
        print(f"  built {path}", file=sys.stderr, flush=True)
    return paths


def _decoded(items: Sequence[LabelledImage]) -> tuple[list[Any], list[str]]:
    images, labels = [], []
    for item in items:
        try:
            data = item.path.read_bytes()
            images.append(decode_as(data, DECODE_SCALED, max_pixels=MAX_PIXELS, input_size=SIZE))
        except (OSError, ImageProblem):
            continue
        labels.append(item.label)
    return images, labels


def _run(path: Path, images: list[Any], size: int) -> tuple[dict[str, np.ndarray], float]:
    """The model's outputs for the images framed at ``size``, and its CPU ms per image."""
    from worker.model.preprocess import preprocess
    from worker.model.runners import TFLiteRunner

    runner = TFLiteRunner(path, threads=1)
    parts: dict[str, list[np.ndarray]] = {}
    cpu = 0.0
    for start in range(0, len(images), 32):
        pixels = preprocess(images[start : start + 32], size).astype(np.float32)
        began = time.process_time()
        out = runner.run(pixels)
        cpu += time.process_time() - began
        for key, value in out.items():
            parts.setdefault(key, []).append(value.astype(np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}, 1000 * cpu / max(1, len(images))


def _scores(logits: np.ndarray, labels: list[str], expect: str) -> dict[str, Any]:
    from worker.model.tags import tag_payloads

    found = [set(p.get(TAGS_FIELD, [])) for p in tag_payloads(logits, TOP_K, MIN_SCORE)]
    rows = tag_scores(found, labels, EXPECTED[expect])
    precision = [r["precision"] for r in rows if r["precision"] is not None]
    recall = [r["recall"] for r in rows if r["recall"] is not None]
    return {
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "tags_per_item": sum(map(len, found)) / max(1, len(found)),
        "rows": {r["tag"]: [r["precision"], r["recall"]] for r in rows},
    }


def _affine_fits(pool_320: dict[str, np.ndarray], pool_224: np.ndarray) -> dict[str, Any]:
    """Per-channel maps of a 320 px pooled head onto the 224 px average, from the pool."""
    fits: dict[str, Any] = {}
    target_mean, target_std = pool_224.mean(0), pool_224.std(0)
    for source in ("avg", "gem"):
        x = pool_320[source]
        scale = target_std / x.std(0)
        fits[f"(a) moment matching, {source}"] = (source, scale, target_mean - scale * x.mean(0))
        centred = x - x.mean(0)
        slope = (centred * (pool_224 - target_mean)).sum(0) / (centred**2).sum(0)
        fits[f"(a) per-channel least squares, {source}"] = (
            source,
            slope,
            target_mean - slope * x.mean(0),
        )
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuxpaint", type=Path, default=TUXPAINT_STAMPS)
    parser.add_argument("--fashion-mnist", type=Path, default=REPO / "build/datasets/fashion-mnist")
    parser.add_argument("--per-class", type=int, default=0, help="Fashion-MNIST sample (0: all)")
    parser.add_argument("--pool-size", type=int, default=1000, help="unlabelled fit images")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build/tags-side")
    parser.add_argument("--out", type=Path, default=REPO / "build/tags-side.json")
    parser.add_argument("--table-of", type=Path, default=None, help="print a saved run's table")
    args = parser.parse_args(argv)
    if args.table_of is not None:
        print(table(json.loads(args.table_of.read_text())))
        return 0

    from lookalike.models import get_backbone
    from worker.model.cache import weights_file
    from worker.model.efficientnet_lite import keras_weights
    from worker.model.pth import load_state_dict

    backbone = get_backbone("efficientnet-lite0")
    weight, bias = keras_weights(backbone, load_state_dict(weights_file(backbone)))["logits"]
    weight, bias = weight.astype(np.float64), bias.astype(np.float64)
    paths = _models(args.work_dir)

    fashion = load_labelled(args.fashion_mnist)
    if args.per_class:
        by: dict[str, list[LabelledImage]] = {}
        for item in fashion:
            by.setdefault(item.label, []).append(item)
        fashion = [i for items in by.values() for i in items[: args.per_class]]
    sets = {"tuxpaint": load_labelled(args.tuxpaint, label_depth=2), "fashion-mnist": fashion}
    results: dict[str, Any] = {"sets": {}, "cpu_ms_per_image": {}}
    runs: dict[str, dict[str, Any]] = {}
    for set_name, items in sets.items():
        images, labels = _decoded(items)
        print(f"  {set_name}: {len(images)} images", file=sys.stderr, flush=True)
        run: dict[str, Any] = {"labels": labels}
        run["trained"], _ = _run(paths["trained"], images, TRAINED)
        for name in ("shared", "pass224", *(f"branch{k}" for k in BRANCH_STAGES)):
            run[name], cpu = _run(paths[name], images, SIZE)
            if set_name == "tuxpaint":
                results["cpu_ms_per_image"][name] = cpu
        runs[set_name] = run

    # The unlabelled pool: Fashion-MNIST's train split (the evaluation has its test split),
    # openclipart and scikit-image photos, less every image that is (nearly) one of the
    # evaluation images: tuxpaint's stamps include some openclipart drawings.
    rng = random.Random(0)
    train = export_fashion_mnist(
        args.work_dir / "fashion-mnist-train", per_class=args.pool_size // 20, split="train"
    )
    pool = load_labelled(train)
    clip = load_labelled(openclipart_manifest(args.work_dir / "openclipart.csv"))
    pool += rng.sample(clip, min(len(clip), args.pool_size // 2))
    photos = args.work_dir / "skimage" / "photo"
    photos.mkdir(parents=True, exist_ok=True)
    import skimage.data
    from PIL import Image

    for name in SKIMAGE_PHOTOS:
        if not (photos / f"{name}.png").exists():
            Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(photos / f"{name}.png")
    pool += load_labelled(photos.parent)
    pool_images, _ = _decoded(pool)
    shared_pool, _ = _run(paths["shared"], pool_images, SIZE)
    evaluated = np.concatenate([run["shared"]["gem"] for run in runs.values()])
    evaluated /= np.linalg.norm(evaluated, axis=1, keepdims=True)
    own = shared_pool["gem"] / np.linalg.norm(shared_pool["gem"], axis=1, keepdims=True)
    keep = (own @ evaluated.T).max(axis=1) < NEAR_DUPLICATE
    results["pool_dropped_as_near_duplicates"] = int((~keep).sum())
    pool_images = [image for image, kept in zip(pool_images, keep, strict=True) if kept]
    shared_pool = {key: value[keep] for key, value in shared_pool.items()}
    print(f"  pool: {len(pool_images)} unlabelled images", file=sys.stderr, flush=True)
    trained_pool, _ = _run(paths["trained"], pool_images, TRAINED)
    fits = _affine_fits(shared_pool, trained_pool["avg"])

    for set_name, run in runs.items():
        labels = run["labels"]
        shared = run["shared"]
        rows: dict[str, Any] = {}
        rows["224 px (the shipped model)"] = _scores(run["trained"]["logits"], labels, set_name)
        rows["320 px shared (the default now)"] = _scores(shared["logits"], labels, set_name)
        rows["320 px GeM head into the classifier"] = _scores(
            shared["gem"] @ weight + bias, labels, set_name
        )
        for fit_name, (source, scale, shift) in fits.items():
            logits = (scale * shared[source] + shift) @ weight + bias
            rows[fit_name] = _scores(logits, labels, set_name)
        rows["(b) second pass at 224 px in the graph"] = _scores(
            run["pass224"]["logits"], labels, set_name
        )
        for k in BRANCH_STAGES:
            rows[f"(c) branch after stage {k} at the 224 px geometry"] = _scores(
                run[f"branch{k}"]["logits"], labels, set_name
            )
        results["sets"][set_name] = {"images": len(labels), "rows": rows}
    results["pool_images"] = len(pool_images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    sets = list(results["sets"])
    lines = [
        "| candidate | "
        + " | ".join(f"{s}: precision / recall" for s in sets)
        + " | Fashion-MNIST `clothing` | model CPU ms/image (one thread) |",
        "| --- | " + " | ".join("---" for _ in sets) + " | --- | --- |",
    ]
    cpu = results["cpu_ms_per_image"]
    base = cpu["shared"]
    for name in results["sets"][sets[0]]["rows"]:
        cells = []
        for s in sets:
            r = results["sets"][s]["rows"][name]
            cells.append(f"{100 * r['precision']:.0f}% / {100 * r['recall']:.0f}%")
        clothing = results["sets"]["fashion-mnist"]["rows"][name]["rows"]["clothing"]
        cells.append(f"{100 * (clothing[0] or 0):.0f}% / {100 * clothing[1]:.0f}%")
        if name.startswith("224"):
            cells.append("-")
        elif name.startswith("(b)"):
            # Its model holds the 224 px pass alone: the embedding's 320 px pass comes on top.
            extra = cpu["pass224"]
            cells.append(f"{base:.1f} + {extra:.1f} ({(base + extra) / base:.2f}x)")
        elif name.startswith("(c)"):
            # Stages up to k at 320 px (the embedding's own) and the rest at 224 px: what
            # it adds to the embedding is this less those stages, not measured apart.
            cells.append(f"{cpu[f'branch{name.split()[4]}']:.1f} for the branch's model alone")
        else:
            cells.append(f"{base:.1f} (1.00x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
