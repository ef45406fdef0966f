"""The benchmark command runs end to end in its quick mode and writes its report.

Only that it completes and reports every section: timings are never asserted in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import NEEDS_FASHION_MNIST

REPO = Path(__file__).resolve().parents[2]

pytestmark = NEEDS_FASHION_MNIST


def test_quick_benchmark_writes_a_report(tmp_path: Path, model_cache_dir: Path) -> None:
    out = tmp_path / "bench"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--out",
            str(out),
            "--model-cache",
            str(model_cache_dir),
            "--sizes",
            "300",
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = (out / "performance.md").read_text()
    for heading in (
        "## Headline",
        "## 1. Model-only embedding throughput",
        "## 2. Decode + preprocessing alone",
        "## 3. End-to-end ingest",
        "## 4. Query latency, recall and memory by catalog size",
        "## 5. Similar-by-id under concurrent load",
    ):
        assert heading in report
    assert "GPU" in report
    for plot in ("perf-model.png", "perf-latency.png", "perf-memory.png"):
        assert (out / "img" / plot).stat().st_size > 1000
        assert f"img/{plot}" in report
    results = json.loads((out / "results.json").read_text())
    # The real path indexed every image, and the ANN search found the exact neighbours.
    assert results["ingest"][0]["indexed"] == results["ingest"][0]["images"] > 0
    assert results["ingest"][0]["failed"] == 0
    # The model-only rate measured around the ingest, for a ratio that does not ride drift.
    assert results["ingest"][0]["model_before"] > 0 and results["ingest"][0]["model_after"] > 0
    assert results["ingest"][0]["model_cpu_before_ms"] > 0
    assert results["ingest"][0]["model_cpu_after_ms"] > 0
    assert "with the model's CPU measured around it" in report
    assert "against model-only measured right before and after it" in report
    assert results["queries"][0]["recall10"] >= 0.9
    assert results["load"]["errors"] == 0
