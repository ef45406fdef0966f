"""What LOOKALIKE_INPUT_SIZE and LOOKALIKE_POOLING cost at ingest, in one run.

The ingest section of ``python -m benchmarks`` (``benchmarks/ingest_runs.py``) on the
catalog photos of ``benchmarks/photoset.py``, for another input size and pooling (by default
224 px with average pooling: the default before Lite0 at 320 px with GeM), then for the
default, then the other again at the end, so the machine's drift shows. CPU time per photo
compares on a shared machine; wall-clock rates ride its load.

    python -m benchmarks.input_size_cost --photos build/photoset --model-cache build/test-models \
        [--input-size 224] [--pooling avg] [--size 1.5mp]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks import photoset
from benchmarks.bench import REPO, cpu_name
from benchmarks.ingest_runs import ingest_runs
from lookalike.settings import POOLINGS

VARIABLES = ("LOOKALIKE_INPUT_SIZE", "LOOKALIKE_POOLING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=224, help="of the other config")
    parser.add_argument("--pooling", choices=POOLINGS, default="avg", help="of the other config")
    parser.add_argument("--photos", type=Path, default=photoset.DEFAULT_OUT)
    parser.add_argument("--size", default="1.5mp", choices=tuple(photoset.SIZES))
    parser.add_argument("--model-cache", type=Path, default=REPO / "build" / "test-models")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "input-size-cost-work")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "input-size-cost.json")
    args = parser.parse_args(argv)
    # The whole set, as the benchmark builds it: a subset would rebuild the shared cache.
    folder = photoset.build(args.photos)[args.size]
    other = dict(zip(VARIABLES, (str(args.input_size), args.pooling), strict=True))
    label = f"{args.input_size} px, {args.pooling}"
    configs = [(label, other), ("default", {}), (label, other)]
    runs = ingest_runs(configs, folder, args.model_cache, args.work_dir)
    rows = [{**row, "config": name} for (name, _), row in zip(configs, runs, strict=True)]
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    base = (rows[0]["server_cpu_ms"] + rows[2]["server_cpu_ms"]) / 2
    print(f"| config | ingest CPU ms/photo (x {label}) | model-only CPU ms/img | stages CPU ms |")
    print("|---|---|---|---|")
    for row in rows:
        model_cpu = (row["model_cpu_before_ms"] + row["model_cpu_after_ms"]) / 2
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row["stage_cpu_ms"].items())
        print(
            f"| {row['config']} | {row['server_cpu_ms']:.1f} ({row['server_cpu_ms'] / base:.2f}x)"
            f" | {model_cpu:.1f} | {stages} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
