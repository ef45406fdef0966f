"""Choosing the default backbone and features on the four sets, with the cost (#23 point 2).

One forward pass per image and candidate backbone/input size gives every pooling variant at
once: the head's activation map (1280 channels, ReLU6) and the sixth stage's output (the
part "multiscale" adds) are read from the worker's Keras model and pooled here by
generalised-mean (GeM) pooling, ``mean(x ** p) ** (1 / p)``, for p in a grid (p = 1 is the
average pooling the service runs). From those:

- ``pooled``: the head, averaged (``LOOKALIKE_FEATURES=pooled``);
- ``multiscale``: the averaged head ⊕ the averaged stage 6, each part at unit length (today's
  default with Lite0 at 224 px);
- ``gem3`` / ``multiscale gem3``: the head GeM-pooled at p = 3 (alone, or ⊕ stage 6 averaged);
- ``gem fit`` / ``multiscale gem fit``: p fitted on each set **without labels**: the p whose
  vectors best find an image again from a crop of it (a random 60-85 % of its side, the
  product moved and enlarged in the frame: what differs between two shop photos of a kind),
  over 128 images of the set, by mean reciprocal rank among all the set's images;
- ``multiscale gem3 both``: stage 6 GeM-pooled too (its signed output clamped at 0, as GeM
  does).

Images are decoded as the worker decodes a new catalog (shrink-on-load for the candidate's
input size) and framed by ``resize`` (pad onto white); neighbours are exact cosine
neighbours, the image itself excluded, scored by ``indexer.quality.evaluate``'s
``retrieval_metrics`` (``lite0@224 multiscale`` reproduces ``indexer evaluate``'s numbers).
P@5 differences are paired over the queries, ± two standard errors, against the reference
(today's default). Pooled arrays are cached per set and candidate under
``--out/cache``; a second run embeds nothing.

The model-only cost of each candidate is measured in the same run: Keras (TensorFlow)
images per second at batch 32, rounds alternating between candidates, reported as a ratio to
the reference's backbone (the pooling variants cost the same forward pass).

    python benchmarks/quality_default.py --model-cache build/test-models \
        [--candidates lite0@224,lite0@320,lite1@240,lite2@260] [--datasets shop]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer.quality.datasets import QUALITY_SETS, LabelledImage, load_labelled
from indexer.quality.evaluate import _dataset_key, paired_difference, retrieval_metrics
from lookalike.images import DECODE_SCALED, ImageProblem, decode_as
from lookalike.models import get_backbone
from lookalike.settings import Settings
from worker.model.cache import build_model_cache
from worker.model.embedder import l2_normalise
from worker.model.preprocess import preprocess

P_GRID = (1.0, 2.0, 3.0, 4.0, 6.0)
STAGE6_P = (1.0, 3.0)
FIT_IMAGES = 128
BATCH = 32
REFERENCE = ("lite0@224", "multiscale")
# GeM of values near zero: clamp as the GeM paper does, so x ** (1 / p) stays finite.
EPS = 1e-6


@dataclass(frozen=True)
class Candidate:
    name: str  # "lite0@224"
    model: str  # "efficientnet-lite0"
    size: int

    @classmethod
    def parse(cls, text: str) -> Candidate:
        short, _, size = text.partition("@")
        model = f"efficientnet-{short}"
        native = get_backbone(model).input_size
        return cls(f"{short}@{size or native}", model, int(size or native))


def probe_model(candidate: Candidate, cache_dir: Path) -> Any:
    """The worker's Keras model (at ``candidate.size``) with two outputs: the head's
    activation map and stage 6's output map, before their global averages."""
    import keras

    from worker.model import efficientnet_lite

    backbone = get_backbone(candidate.model)
    # The model as its weights ship (their own side, average pooling): every pooling is
    # computed here from the maps.
    files = build_model_cache(
        candidate.model, cache_dir, tflite=False, input_size=backbone.input_size, pooling="avg"
    )
    model = keras.saving.load_model(files.keras, compile=False)
    if candidate.size != backbone.input_size:
        # Convolutions do not depend on the input size: the same weights at another size.
        from dataclasses import replace

        resized = efficientnet_lite.build(replace(backbone, input_size=candidate.size))
        for layer in resized.layers:
            if layer.weights:
                layer.set_weights(model.get_layer(layer.name).get_weights())
        model = resized
    return keras.Model(
        model.inputs,
        [model.get_layer("features").input, model.get_layer("stage6").input],
    )


def gem(maps: np.ndarray, p: float) -> np.ndarray:
    """(n, h, w, c) -> (n, c) generalised mean over the positions."""
    if p == 1.0:
        return maps.mean(axis=(1, 2))
    clamped = np.maximum(maps, EPS, dtype=np.float32)
    return np.power(np.power(clamped, p).mean(axis=(1, 2)), 1.0 / p)


def pooled_arrays(model: Any, pixels: np.ndarray) -> dict[str, np.ndarray]:
    head, stage6 = model.predict_on_batch(pixels.astype(np.float32))
    head, stage6 = np.asarray(head), np.asarray(stage6)
    out = {f"head{p:g}": gem(head, p) for p in P_GRID}
    out.update({f"stage6_{p:g}": gem(stage6, p) for p in STAGE6_P})
    return out


def crop_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    side = rng.uniform(0.6, 0.85)
    cw, ch = max(1, int(w * side)), max(1, int(h * side))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return image.crop((x, y, x + cw, y + ch))


def embed_set(
    items: list[LabelledImage], candidate: Candidate, cache_dir: Path, out: Path
) -> dict[str, np.ndarray]:
    """Pooled arrays of every image (key ``head3`` ...) and of the crops (``crop_head3`` ...),
    with ``ok`` (indexes of the images that decoded) and ``fit`` (indexes into ok)."""
    path = out / f"{_dataset_key(items)}-{candidate.name}-{DECODE_SCALED}.npz"
    if path.exists():
        with np.load(path) as data:
            return dict(data)
    model = probe_model(candidate, cache_dir)
    max_pixels = Settings().max_image_pixels
    rng = np.random.default_rng(0)
    fit = set(rng.choice(len(items), size=min(FIT_IMAGES, len(items)), replace=False).tolist())
    parts: dict[str, list[np.ndarray]] = {}
    ok: list[int] = []
    fit_ok: list[int] = []
    started = time.monotonic()
    for start in range(0, len(items), BATCH):
        batch, crops = [], []
        for i in range(start, min(start + BATCH, len(items))):
            try:
                data = items[i].path.read_bytes()
                image = decode_as(
                    data, DECODE_SCALED, max_pixels=max_pixels, input_size=candidate.size
                )
            except (OSError, ImageProblem):
                continue
            if i in fit:
                fit_ok.append(len(ok))
                crops.append(crop_view(image, rng))
            ok.append(i)
            batch.append(image)
        for prefix, images in (("", batch), ("crop_", crops)):
            if images:
                arrays = pooled_arrays(model, preprocess(images, candidate.size, "resize"))
                for key, array in arrays.items():
                    parts.setdefault(prefix + key, []).append(array)
        done = min(start + BATCH, len(items))
        rate = done / max(time.monotonic() - started, 1e-9)
        print(
            f"\r  {candidate.name}: {done}/{len(items)} ({rate:.1f} img/s)", end="", file=sys.stderr
        )
    print(file=sys.stderr)
    arrays = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    arrays["ok"] = np.array(ok, dtype=np.int64)
    arrays["fit"] = np.array(fit_ok, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return arrays


def head_vectors(arrays: dict[str, np.ndarray], p: float, prefix: str = "") -> np.ndarray:
    return l2_normalise(arrays[f"{prefix}head{p:g}"])


def multiscale(
    arrays: dict[str, np.ndarray], p: float, stage6_p: float = 1.0, prefix: str = ""
) -> np.ndarray:
    head = head_vectors(arrays, p, prefix)
    stage6 = l2_normalise(arrays[f"{prefix}stage6_{stage6_p:g}"])
    return l2_normalise(np.concatenate([head, stage6], axis=1))


def fit_p(arrays: dict[str, np.ndarray], *, with_stage6: bool) -> tuple[float, dict[str, float]]:
    """The p of the grid whose crops find their own image best (mean reciprocal rank), and
    the MRR of each p: no labels are read."""
    mrr: dict[str, float] = {}
    fit = arrays["fit"]
    for p in P_GRID:
        if with_stage6:
            base, crops = multiscale(arrays, p), multiscale(arrays, p, prefix="crop_")
        else:
            base, crops = head_vectors(arrays, p), head_vectors(arrays, p, "crop_")
        sims = crops @ base.T
        own = sims[np.arange(len(fit)), fit]
        ranks = 1 + (sims > own[:, None]).sum(axis=1)
        mrr[f"{p:g}"] = float((1.0 / ranks).mean())
    best = max(P_GRID, key=lambda p: (mrr[f"{p:g}"], -p))
    return best, mrr


def neighbours(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def variants(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p_head, mrr_head = fit_p(arrays, with_stage6=False)
    p_multi, mrr_multi = fit_p(arrays, with_stage6=True)
    out = {
        "pooled": head_vectors(arrays, 1.0),
        "multiscale": multiscale(arrays, 1.0),
        "gem3": head_vectors(arrays, 3.0),
        "multiscale gem3": multiscale(arrays, 3.0),
        "gem fit": head_vectors(arrays, p_head),
        "multiscale gem fit": multiscale(arrays, p_multi),
        "multiscale gem3 both": multiscale(arrays, 3.0, 3.0),
    }
    for p in P_GRID:  # every p, to see how well the fit chose
        out[f"gem{p:g} (grid)"] = head_vectors(arrays, p)
        out[f"multiscale gem{p:g} (grid)"] = multiscale(arrays, p)
    fitted = {
        "gem fit": p_head,
        "multiscale gem fit": p_multi,
        "mrr": mrr_head,
        "mrr multiscale": mrr_multi,
    }
    return out, fitted


def model_cost(
    candidates: list[Candidate], cache_dir: Path, seconds: float, rounds: int
) -> dict[str, float]:
    """Keras images per second at batch 32, median of alternating rounds."""
    models = {c.name: probe_model(c, cache_dir) for c in candidates}
    rates: dict[str, list[float]] = {c.name: [] for c in candidates}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for c in candidates:
            pixels = rng.integers(0, 256, (BATCH, c.size, c.size, 3)).astype(np.float32)
            models[c.name].predict_on_batch(pixels)  # warm
            n, started = 0, time.monotonic()
            while time.monotonic() - started < seconds:
                models[c.name].predict_on_batch(pixels)
                n += BATCH
            rates[c.name].append(n / (time.monotonic() - started))
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", type=Path, default=Path("data/models"))
    parser.add_argument("--out", type=Path, default=Path("build/quality/default"))
    parser.add_argument("--candidates", default="lite0@224,lite0@320,lite1@240,lite2@260")
    parser.add_argument("--datasets", default=",".join(QUALITY_SETS))
    parser.add_argument(
        "--datasets-root",
        type=Path,
        default=Path("."),
        help="folder the sets' build/datasets/... paths are relative to",
    )
    parser.add_argument(
        "--versus",
        default="",
        help="also compare every variant with this one (e.g. 'lite0@320 multiscale gem3')",
    )
    parser.add_argument("--cost-seconds", type=float, default=5.0)
    parser.add_argument("--cost-rounds", type=int, default=3, help="0: no cost measurement")
    args = parser.parse_args()
    candidates = [Candidate.parse(c) for c in args.candidates.split(",")]
    datasets = {d: args.datasets_root / QUALITY_SETS[d] for d in args.datasets.split(",")}
    results: dict[str, Any] = {"sets": {}, "fitted_p": {}}
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for dataset, path in datasets.items():
        items = load_labelled(path)
        per_query[dataset] = {}
        results["sets"][dataset] = {}
        results["fitted_p"][dataset] = {}
        for candidate in candidates:
            print(f"{dataset} / {candidate.name}", file=sys.stderr)
            arrays = embed_set(items, candidate, args.model_cache, args.out / "cache")
            labels = [items[i].label for i in arrays["ok"]]
            vectors, fitted = variants(arrays)
            results["fitted_p"][dataset][candidate.name] = fitted
            for name, v in vectors.items():
                scores = retrieval_metrics(labels, neighbours(v))
                key = f"{candidate.name} {name}"
                per_query[dataset][key] = scores.per_query["P@5"]
                summary = {m: scores.summary[m] for m in ("P@1", "P@5", "P@10", "mAP@10")}
                p5 = scores.per_query["P@5"]
                p5 = p5[~np.isnan(p5)]
                summary["P@5 se"] = float(p5.std(ddof=1) / np.sqrt(len(p5)))
                results["sets"][dataset][key] = summary
    reference = " ".join(REFERENCE)
    results["paired"] = {
        d: {
            key: paired_difference(values[reference], got)
            for key, got in values.items()
            if key != reference
        }
        for d, values in per_query.items()
        if reference in values
    }
    if args.versus:
        results["versus"] = {
            "variant": args.versus,
            **{
                d: {
                    key: paired_difference(values[args.versus], got)
                    for key, got in values.items()
                    if key != args.versus and "(grid)" not in key
                }
                for d, values in per_query.items()
            },
        }
    print("model cost (Keras, batch 32)", file=sys.stderr)
    results["model_img_s"] = (
        model_cost(candidates, args.model_cache, args.cost_seconds, args.cost_rounds)
        if args.cost_rounds > 0
        else {}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results, candidates)
    (args.out / "default.md").write_text(text + "\n")
    print(text)


def table(results: dict[str, Any], candidates: list[Candidate]) -> str:
    sets = list(results["sets"])
    reference = " ".join(REFERENCE)
    base_rate = results["model_img_s"].get(REFERENCE[0])
    lines = [
        "| candidate | "
        + " | ".join(f"{d} P@5 (Δ ± 2 SE)" for d in sets)
        + " | model img/s (x ref) |",
        "|---|" + "---|" * (len(sets) + 1),
    ]
    keys = [k for k in results["sets"][sets[0]] if "(grid)" not in k]
    for key in keys:
        cells = []
        for d in sets:
            s = results["sets"][d].get(key)
            if s is None:
                cells.append("")
                continue
            cell = f"{s['P@5']:.3f} ± {s['P@5 se']:.3f}"
            if key != reference and key in results["paired"].get(d, {}):
                mean, two_se = results["paired"][d][key]
                cell += f" ({mean:+.3f} ± {two_se:.3f})"
            cells.append(cell)
        name = key.split(" ")[0]
        rate = results["model_img_s"].get(name)
        cost = f"{rate:.1f} ({rate / base_rate:.2f}x)" if rate and base_rate else ""
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {cost} |")
    versus = results.get("versus")
    if versus:
        lines += ["", f"P@5 minus `{versus['variant']}`, paired, ± 2 standard errors:", ""]
        lines += ["| variant | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
        for key in keys:
            if key == versus["variant"]:
                continue
            cells = [f"{versus[d][key][0]:+.3f} ± {versus[d][key][1]:.3f}" for d in sets]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "GeM p fitted without labels (head alone / multiscale), per set:", ""]
    for d in sets:
        fitted = results["fitted_p"][d]
        lines.append(
            f"- {d}: "
            + ", ".join(
                f"{c} p={f['gem fit']:g}/{f['multiscale gem fit']:g}" for c, f in fitted.items()
            )
        )
    lines += ["", "P@5 of the head GeM-pooled at each p of the grid (alone / multiscale):", ""]
    for d in sets:
        for c in candidates:
            grid = ", ".join(
                f"p={p:g} {results['sets'][d][f'{c.name} gem{p:g} (grid)']['P@5']:.3f}"
                f"/{results['sets'][d][f'{c.name} multiscale gem{p:g} (grid)']['P@5']:.3f}"
                for p in P_GRID
            )
            lines.append(f"- {d} {c.name}: {grid}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
