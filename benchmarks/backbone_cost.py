"""What each backbone the service can run costs at ingest, in one run (#23 point 2).

For each ``LOOKALIKE_MODEL`` (features as configured, multiscale by default), the ingest
section of ``python -m benchmarks`` (``benchmarks/ingest_runs.py``) on the realistic catalog
photos of ``benchmarks/photoset.py``. The first model is measured again at the end, so the machine's
drift over the run shows; costs are reported as ratios to it.

    python -m benchmarks.backbone_cost --photos build/photoset --model-cache build/test-models \
        [--models efficientnet-lite0,efficientnet-lite1,efficientnet-lite2] [--size 1.5mp]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks import photoset
from benchmarks.bench import REPO, cpu_name
from benchmarks.ingest_runs import ingest_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="efficientnet-lite0,efficientnet-lite1,efficientnet-lite2"
    )
    parser.add_argument("--photos", type=Path, default=photoset.DEFAULT_OUT)
    parser.add_argument("--size", default="1.5mp", choices=tuple(photoset.SIZES))
    parser.add_argument("--model-cache", type=Path, default=REPO / "build" / "test-models")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "backbone-cost-work")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "backbone-cost.json")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    # The whole set, as the benchmark builds it: a subset would rebuild the shared cache.
    folder = photoset.build(args.photos)[args.size]
    w, h = photoset.SIZES[args.size]
    order = [*models, models[0]]
    configs = [(f"{model} {w}x{h}", {"LOOKALIKE_MODEL": model}) for model in order]
    rows = ingest_runs(configs, folder, args.model_cache, args.work_dir)
    for model, row in zip(order, rows, strict=True):
        row["model"] = model
        row["model_only"] = (row["model_before"] + row["model_after"]) / 2
    first = rows[0]
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    # Wall-clock rates ride the machine's load; CPU time per image is what compares on a
    # shared machine (the server's whole process tree, and the model alone around it).
    cpu0 = first["server_cpu_ms"]
    model_cpu0 = (first["model_cpu_before_ms"] + first["model_cpu_after_ms"]) / 2
    print(
        "| model | ingest img/s (x first) | ingest CPU ms/img (x first) "
        "| model-only img/s (x first) | model-only CPU ms/img (x first) |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        model_cpu = (row["model_cpu_before_ms"] + row["model_cpu_after_ms"]) / 2
        print(
            f"| {row['model']} | {row['rate']:.2f} ({row['rate'] / first['rate']:.2f}x) | "
            f"{row['server_cpu_ms']:.1f} ({row['server_cpu_ms'] / cpu0:.2f}x) | "
            f"{row['model_only']:.1f} ({row['model_only'] / first['model_only']:.2f}x) | "
            f"{model_cpu:.1f} ({model_cpu / model_cpu0:.2f}x) |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
