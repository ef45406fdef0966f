"""The run loop of the ingest cost comparisons (benchmarks/backbone_cost.py,
benchmarks/input_size_cost.py): the ingest section of ``python -m benchmarks``
(``benchmarks.bench.bench_ingest``: ``lookalike serve`` in a child process, ``indexer
ingest`` of a folder, the worker's model-only rate measured in this process right before
and after) once per configuration, in order, on one folder of photos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from benchmarks.bench import Report, bench_ingest, default_http_threads


def ingest_runs(
    configs: list[tuple[str, dict[str, str]]], folder: Path, model_cache: Path, work_dir: Path
) -> list[dict[str, Any]]:
    """``bench_ingest``'s row for each (name, ``LOOKALIKE_*`` variables) of ``configs``: the
    service runs with those variables, and without those the other configurations set."""
    variables = {key for _, env in configs for key in env}
    rows: list[dict[str, Any]] = []
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        for name, env in configs:
            # Both the server (a child) and the adjacent model-only rate read the settings
            # from the environment.
            for key in variables:
                os.environ.pop(key, None)
            os.environ.update(env)
            report = Report(quick=False)
            bench_ingest(
                report,
                work_dir / f"{len(rows)}",
                model_cache,
                {name: folder},
                env=env,
                adjacent_model=True,
                server_threads=default_http_threads(),
            )
            rows.append(report.ingest[0])
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return rows
