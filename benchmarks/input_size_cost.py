"""What LOOKALIKE_INPUT_SIZE, LOOKALIKE_POOLING or LOOKALIKE_TAGS_PASS cost at ingest, in one run.

The ingest section of ``python -m benchmarks`` (``benchmarks/ingest_runs.py``) on the
catalog photos of ``benchmarks/photoset.py``, alternating another configuration and the
default: the other, the default, ``--rounds`` times, then the other again at the end, so the
machine's drift shows. The other is by default 224 px with average pooling (the default
before Lite0 at 320 px with GeM); with ``--tags-pass 224`` the default model with the tags'
second pass (plus ``--input-size`` / ``--pooling`` where given). CPU time per photo compares
on a shared machine; wall-clock rates ride its load.

    python -m benchmarks.input_size_cost --photos build/photoset --model-cache build/test-models \
        [--input-size 224] [--pooling avg] [--tags-pass 224] [--rounds 1] [--size 1.5mp]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from statistics import mean
from typing import Any

from benchmarks import photoset
from benchmarks.bench import REPO, cpu_name
from benchmarks.ingest_runs import ingest_runs
from lookalike.settings import POOLINGS, TAGS_PASSES

DEFAULT = "default"


def other_config(input_size: int | None, pooling: str | None, tags_pass: str) -> dict[str, str]:
    """The ``LOOKALIKE_*`` variables of the configuration measured against the default."""
    if not tags_pass:
        return {
            "LOOKALIKE_INPUT_SIZE": str(input_size or 224),
            "LOOKALIKE_POOLING": pooling or "avg",
        }
    env = {"LOOKALIKE_TAGS_PASS": tags_pass}
    if input_size:
        env["LOOKALIKE_INPUT_SIZE"] = str(input_size)
    if pooling:
        env["LOOKALIKE_POOLING"] = pooling
    return env


def label_of(env: dict[str, str]) -> str:
    return ", ".join(f"{key.removeprefix('LOOKALIKE_')}={value}" for key, value in env.items())


def model_cpu_ms(row: dict[str, Any]) -> float:
    """The model alone, beside the ingest: CPU ms per image, before and after it."""
    return float(row["model_cpu_before_ms"] + row["model_cpu_after_ms"]) / 2


def summary(rows: list[dict[str, Any]], label: str) -> dict[str, float]:
    """The other configuration over the default, means over their runs."""
    other = [r for r in rows if r["config"] == label]
    default = [r for r in rows if r["config"] == DEFAULT]

    def ratio(value: Any) -> float:
        return mean(value(r) for r in other) / mean(value(r) for r in default)

    return {
        "server_cpu": ratio(lambda r: r["server_cpu_ms"]),
        "embed_stage_cpu": ratio(lambda r: r["stage_cpu_ms"].get("embed", 0.0)),
        "model_only_cpu": ratio(model_cpu_ms),
        "rate": ratio(lambda r: r["rate"]),
        "model_only_rate": ratio(lambda r: (r["model_before"] + r["model_after"]) / 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input-size", type=int, default=None, help="of the other config (224 unless --tags-pass)"
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="of the other config (avg unless --tags-pass)",
    )
    parser.add_argument(
        "--tags-pass",
        choices=[p for p in TAGS_PASSES if p],
        default="",
        help="the other config: the default model with the tags' second pass (LOOKALIKE_TAGS_PASS)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="(other, default) pairs before the last other"
    )
    parser.add_argument("--photos", type=Path, default=photoset.DEFAULT_OUT)
    parser.add_argument("--size", default="1.5mp", choices=tuple(photoset.SIZES))
    parser.add_argument("--model-cache", type=Path, default=REPO / "build" / "test-models")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "input-size-cost-work")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "input-size-cost.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    # The whole set, as the benchmark builds it: a subset would rebuild the shared cache.
    folder = photoset.build(args.photos)[args.size]
    other = other_config(args.input_size, args.pooling, args.tags_pass)
    label = label_of(other)
    configs = [(label, other), (DEFAULT, {})] * args.rounds + [(label, other)]
    runs = ingest_runs(configs, folder, args.model_cache, args.work_dir)
    rows = [{**row, "config": name} for (name, _), row in zip(configs, runs, strict=True)]
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    base = mean(r["server_cpu_ms"] for r in rows if r["config"] == DEFAULT)
    print(
        "| config | ingest img/s | ingest CPU ms/photo (x default) | model-only CPU ms/img "
        "| stages CPU ms |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row["stage_cpu_ms"].items())
        print(
            f"| {row['config']} | {row['rate']:.1f} | {row['server_cpu_ms']:.1f} "
            f"({row['server_cpu_ms'] / base:.2f}x) | {model_cpu_ms(row):.1f} | {stages} |"
        )
    ratios = summary(rows, label)
    print(
        f"{label} / default, means over their runs: "
        + ", ".join(f"{name} {value:.2f}x" for name, value in ratios.items())
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "ratios": ratios, "load_at_end": os.getloadavg()}
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
