"""The GPU column's benchmark runs end to end in its quick mode, here on the CPU and Keras's
TensorFlow backend (CI has neither a GPU nor JAX), on the data folder ``benchmarks.gpu_bundle``
packs for a machine with no network: its parity check holds and every image of its ingest is
indexed. Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import NEEDS_FASHION_MNIST

REPO = Path(__file__).resolve().parents[2]

pytestmark = NEEDS_FASHION_MNIST


def test_quick_gpu_benchmark_writes_its_column(tmp_path: Path, model_cache_dir: Path) -> None:
    from benchmarks import bench, gpu_bundle

    data = tmp_path / "data"
    gpu_bundle.copy_data(data)
    assert len(list((data / "stamps").rglob("*.png"))) == len(bench.stamp_paths()[::3])
    out = tmp_path / "gpu"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu",
            "--quick",
            "--out",
            str(out),
            "--model-cache",
            str(model_cache_dir),
            "--work-dir",
            str(tmp_path / "work"),
            "--data",
            str(data),
            "--stamps",
            "3",
        ],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = (out / "gpu.md").read_text()
    for heading in ("## 1. Parity", "## 2. Model-only throughput", "## 3. End-to-end ingest"):
        assert heading in report
    results = json.loads((out / "gpu.json").read_text())
    assert results["machine"]["backend"] == "tensorflow"
    f32 = results["parity"]["float32"]
    assert f32["features_max_abs"] <= 1e-4 and f32["top1_agrees"]
    assert results["parity"]["mixed_bfloat16"]["features_min_cosine"] > 0.99
    assert [r["batch"] for r in results["model"]] == [1, 4]
    assert all(r["runner"] > 0 for r in results["model"])
    photos, fashion, stamps = results["ingest"]
    # Realistic catalog photos first: 1.5 MP JPEG/WebP/PNG, decoded shrink-on-load.
    assert photos["source"].startswith("catalog photos 1224x1224")
    assert photos["indexed"] == photos["images"] == 4 and photos["failed"] == 0
    assert photos["stage_cpu_ms"]["decode"] > 0
    assert fashion["indexed"] == fashion["images"] == 24 and fashion["failed"] == 0
    assert stamps["indexed"] == stamps["images"] == 3 and stamps["failed"] == 0
