"""Catalog-tuned heads on held-out images: ``indexer train-head``'s code, per set and kind.

For each labelled set and head kind, trains a head on 70 % of the images (stratified by
label) on top of the frozen default backbone, saves it as a model version in a model cache
of its own (``build/quality/models``, sharing the converted backbone), loads it back as the
worker would, and scores backbone and head on the held-out 30 % through the vector store.
Prints the table for docs/quality.md and writes each head's report under
``build/quality/heads/``.

    python benchmarks/quality_heads.py --model-cache build/test-models
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from indexer.quality.datasets import QUALITY_SETS, load_labelled
from indexer.quality.train_head import (
    BACKBONE,
    HEAD,
    HeadReport,
    train_and_evaluate,
    write_head_report,
)
from lookalike.settings import Settings
from worker.model.heads import TrainOptions

DATASETS = {
    **QUALITY_SETS,
    # Twice the labels (python -m indexer.quality.datasets fashion-mnist --per-class 600 --out ...).
    "fashion-mnist-6k": Path("build/datasets/fashion-mnist-6k"),
}
DEFAULT_DATASETS = tuple(QUALITY_SETS)
KINDS = ("standardise", "classifier", "triplet")
METRICS = ("P@1", "P@5", "mAP@10")


def private_cache(shared: Path, private: Path, model: str) -> Path:
    private.mkdir(parents=True, exist_ok=True)
    for path in shared.glob(f"{model}.*"):
        link = private / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", type=Path, default=Path("data/models"))
    parser.add_argument("--out", type=Path, default=Path("build/quality"))
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = Settings.from_env()  # the default backbone, or LOOKALIKE_* (e.g. FEATURES=pooled)
    models = private_cache(args.model_cache, args.out / "models", base.model)
    settings = base.replace(model_cache=models)
    rows: list[tuple[str, str, HeadReport]] = []
    for dataset in args.datasets.split(","):
        items = load_labelled(DATASETS[dataset])
        for kind in args.kinds.split(","):
            started = time.monotonic()
            print(f"{dataset} / {kind}", file=sys.stderr)
            report = train_and_evaluate(
                items,
                settings,
                name=f"{dataset}-{kind}",
                options=TrainOptions(kind=kind, seed=args.seed),
                seed=args.seed,
                cache_dir=args.out / "cache",
            )
            write_head_report(report, args.out / "heads" / f"{dataset}-{kind}", dataset)
            rows.append((dataset, kind, report))
            print(f"  {time.monotonic() - started:.0f} s: {report.verdict()}", file=sys.stderr)

    header = " | ".join(f"{m} backbone → head" for m in METRICS)
    lines = [
        f"| set | head | train / held-out images | {header} | P@5 gain | ≥ 0.10? |",
        "|---|---|---|" + "---|" * len(METRICS) + "---|---|",
    ]
    for dataset, kind, report in rows:
        cells = " | ".join(
            f"{report.test[BACKBONE].summary[m]:.3f} → {report.test[HEAD].summary[m]:.3f}"
            for m in METRICS
        )
        lines.append(
            f"| {dataset} | {kind} | {report.train_images} / {report.test_images} | {cells} | "
            f"{report.gain:+.3f} | {'yes' if report.meets_target else 'no'} |"
        )
    text = "\n".join(lines)
    print(text)
    stem = "heads" if args.datasets == ",".join(DEFAULT_DATASETS) else "heads-extra"
    (args.out / f"{stem}.md").write_text(text + "\n")
    summary = {f"{d}/{k}": r.as_dict() for d, k, r in rows}
    (args.out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
