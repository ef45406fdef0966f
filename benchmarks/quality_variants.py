"""Zero-shot embedding variants, measured with the evaluation command's code path.

Each variant is a set of settings (model, framing, features, flip averaging); each is run
through ``indexer.quality.evaluate.evaluate`` (the worker's Embedder, a fresh qdrant-edge store per
method, searched with the item itself excluded) on each labelled set, with embeddings cached
per dataset and model version under ``build/quality/cache``. Prints one Markdown table per
metric (P@1, P@5, mAP@10) with a column per dataset, plus the paired difference of P@5 to
the first variant (± two standard errors over the queries), and writes everything to
``build/quality/variants.json`` and a report per variant and dataset.

    python -m indexer.quality.datasets tuxpaint && python -m indexer.quality.datasets openclipart
    python -m indexer.quality.datasets fashion-mnist && python -m indexer.quality.datasets shop
    python benchmarks/quality_variants.py --model-cache build/test-models [--only lite0,crop]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from indexer.quality.datasets import QUALITY_SETS, load_labelled
from indexer.quality.evaluate import evaluate, paired_difference, write_report
from indexer.quality.results import COLOUR, MODEL, RANDOM, Evaluation
from lookalike.settings import Settings

DATASETS = {
    **QUALITY_SETS,
    # Not used to choose anything (the multiscale layer was chosen on the three above): a
    # confirmation set of other images (python -m indexer.quality.datasets fashion-mnist --split
    # train --out build/datasets/fashion-mnist-train).
    "fashion-mnist-train": Path("build/datasets/fashion-mnist-train"),
}
DEFAULT_DATASETS = tuple(QUALITY_SETS)
LITE0 = "efficientnet-lite0"
# name -> settings overrides; the first is the reference for the paired differences.
VARIANTS: dict[str, dict[str, Any]] = {
    "lite0": {},
    "lite0 crop": {"preprocess": "crop"},
    "lite0 stretch": {"preprocess": "stretch"},
    "lite0 flip": {"tta_flip": True},
    "lite0 multiscale": {"features": "multiscale"},
    "lite0 multiscale flip": {"features": "multiscale", "tta_flip": True},
    "lite1": {"model": "efficientnet-lite1"},
    "lite2": {"model": "efficientnet-lite2"},
    "lite2 flip": {"model": "efficientnet-lite2", "tta_flip": True},
    "lite2 multiscale": {"model": "efficientnet-lite2", "features": "multiscale"},
}
METRICS = ("P@1", "P@5", "mAP@10")


def run(
    variants: dict[str, dict[str, Any]],
    datasets: dict[str, Path],
    base: Settings,
    out: Path,
) -> dict[str, dict[str, Evaluation]]:
    results: dict[str, dict[str, Evaluation]] = {}
    for dataset, path in datasets.items():
        items = load_labelled(path)
        results[dataset] = {}
        for i, (name, overrides) in enumerate(variants.items()):
            started = time.monotonic()
            print(f"{dataset} / {name}", file=sys.stderr)
            evaluation = evaluate(
                items,
                base.replace(**overrides),
                dataset=str(path),
                baselines=i == 0,
                cache_dir=out / "cache",
            )
            write_report(
                evaluation, out / dataset / name.replace(" ", "-"), title=f"{dataset}: {name}"
            )
            results[dataset][name] = evaluation
            print(f"  {time.monotonic() - started:.0f} s", file=sys.stderr)
    return results


def tables(results: dict[str, dict[str, Evaluation]]) -> str:
    datasets = list(results)
    names = list(next(iter(results.values())))
    lines = []
    header = " | ".join(f"{d} {m}" for d in datasets for m in METRICS)
    lines += [f"| variant | {header} |", "|---|" + "---|" * (len(datasets) * len(METRICS))]
    first = names[0]
    for label, method in ((RANDOM, RANDOM), (COLOUR, COLOUR)):
        cells = " | ".join(
            f"{results[d][first].methods[method].scores.summary[m]:.3f}"
            for d in datasets
            for m in METRICS
        )
        lines.append(f"| {label} (baseline) | {cells} |")
    for name in names:
        cells = " | ".join(
            f"{results[d][name].methods[MODEL].scores.summary[m]:.3f}"
            for d in datasets
            for m in METRICS
        )
        lines.append(f"| {name} | {cells} |")
    lines += ["", f"P@5 minus `{first}`, paired over queries, ± 2 standard errors:", ""]
    lines += [f"| variant | {' | '.join(datasets)} |", "|---|" + "---|" * len(datasets)]
    for name in names[1:]:
        cells = []
        for d in datasets:
            ref = results[d][first].methods[MODEL].scores.per_query["P@5"]
            got = results[d][name].methods[MODEL].scores.per_query["P@5"]
            mean, two_se = paired_difference(ref, got)
            cells.append(f"{mean:+.3f} ± {two_se:.3f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    sizes = ", ".join(
        f"{d}: {len(r[first].items)} images, "
        f"{int(r[first].methods[MODEL].scores.valid.sum())} queries"
        for d, r in results.items()
    )
    lines += ["", f"Sets: {sizes}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", type=Path, default=Path("data/models"))
    parser.add_argument("--out", type=Path, default=Path("build/quality"))
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    args = parser.parse_args()
    variants = VARIANTS
    if args.only:
        wanted = [v.strip() for v in args.only.split(",")]
        variants = {name: VARIANTS[name] for name in wanted}
    datasets = {d: DATASETS[d] for d in args.datasets.split(",")}
    # The reference: the embedding before this comparison (pooled head, whole image padded
    # onto white, no flip), whatever the defaults are now.
    base = Settings(
        model_cache=args.model_cache, model=LITE0, preprocess="resize", features="pooled"
    ).replace(tta_flip=False, head="")
    results = run(variants, datasets, base, args.out)
    text = tables(results)
    print(text)
    summary = {
        d: {
            name: {
                "version": e.model["version"],
                **{m: e.methods[MODEL].scores.summary[m] for m in e.methods[MODEL].scores.summary},
            }
            for name, e in r.items()
        }
        for d, r in results.items()
    }
    stem = "variants" if not args.only and args.datasets == ",".join(DEFAULT_DATASETS) else "extra"
    (args.out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
