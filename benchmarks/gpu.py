"""The GPU column of the performance report: ``python -m benchmarks.gpu``.

The service's GPU path is its Keras runtime (``LOOKALIKE_RUNTIME=keras``, batches of 128 or
more). Keras 3 runs the same model file on TensorFlow or, where no TensorFlow GPU build is
installed, on JAX (``KERAS_BACKEND=jax``, this benchmark's default). One run measures, on the
machine's first GPU:

1. parity: the model on this backend and device against the PyTorch reference outputs
   (tests/data/reference), as the worker runs it, in float32 and in mixed bfloat16;
2. model-only throughput, batch 1 to 512: through the worker's own runner (float32 pixels
   from host memory, NumPy out: the ingest limit), and the network alone on pixels already
   on the GPU, in float32 and mixed bfloat16;
3. end-to-end ingest through the real path (``indexer ingest`` → API → broker → worker →
   qdrant-edge, section 3 of ``python -m benchmarks``) with the worker's model on the GPU,
   and its ratio to (2) at the worker's batch size: realistic catalog photos first
   (benchmarks/photoset.py, ``--photos`` per size at 0.5, 1.5 and 4 MP, decoded
   shrink-on-load by the worker's task threads on the CPU while the GPU runs the model),
   then Fashion-MNIST and the tuxpaint photos. With a GPU the model is no longer the limit:
   the per-stage CPU figures say what is (decode, API, indexer), and the worker's task
   threads (``BATCHxTHREADS``) are how many batches decode at once beside the model.

It runs on a CPU too (slowly, with the smallest settings via ``--quick``), which is how its
code is tested. ``--data`` names a folder with the Fashion-MNIST files and the tuxpaint stamps
where Debian's packages are not installed: ``python -m benchmarks.gpu_bundle`` packs it, and
the wheels such a machine lacks, for a GPU machine with no network.

    KERAS_BACKEND=jax python -m benchmarks.gpu --out build/bench-gpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Before JAX starts: the benchmark and the server it starts share the GPU, so neither may
# take most of its memory up front (JAX's default).
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

from benchmarks import bench, photoset

# The PyTorch reference of each model, named as the model cache names its files (the
# default's: efficientnet-lite0-320-gem.npz).
REFERENCE_DIR = bench.REPO / "tests" / "data" / "reference"
MODEL = "efficientnet-lite0"


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "no GPU"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "no GPU"


def machine() -> dict[str, Any]:
    import keras

    info = {
        "gpu": gpu_name(),
        "cpu": bench.cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["device"] = str(jax.devices()[0])
    return info


# ----------------------------------------------------------------------------- models


def bf16_twin(model: Any, files: Any) -> Any:
    """The same network and weights (``files``: the model cache's, at its input size and
    pooling) under Keras's mixed bfloat16 policy (variables float32, arithmetic bfloat16)."""
    import keras

    from worker.model import efficientnet_lite

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        twin = efficientnet_lite.build(files.model, files.input_size, files.pooling)
    finally:
        keras.config.set_dtype_policy(previous)
    twin.set_weights(model.get_weights())
    return twin


def as_f32(out: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v).astype(np.float32) for k, v in out.items()}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def parity(runner: Any, twin: Any, reference: Path) -> dict[str, Any]:
    with np.load(reference) as data:
        ref = {k: data[k] for k in data.files}
    rows = {}
    outs = {
        "float32": runner.run(ref["images"]),
        "mixed_bfloat16": as_f32(twin.predict_on_batch(ref["images"].astype(np.float32))),
    }
    for name, out in outs.items():
        rows[name] = {
            "features_max_abs": float(np.abs(out["features"] - ref["features"]).max()),
            "logits_max_abs": float(np.abs(out["logits"] - ref["logits"]).max()),
            "features_min_cosine": float(cosine(out["features"], ref["features"]).min()),
            "top1_agrees": bool((out["logits"].argmax(1) == ref["logits"].argmax(1)).all()),
            "images": len(ref["images"]),
        }
        print(f"  parity {name}: {rows[name]}", flush=True)
    return rows


def rate(call: Any, n: int, seconds: float) -> float:
    """Images/s of ``call()`` (``n`` images a call, finished when it returns), after two
    warm-up calls (the first compiles), over at least ``seconds`` and three calls."""
    call()
    call()
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        call()
        calls += 1
    return n * calls / (time.perf_counter() - started)


def device_call(model: Any, pixels: np.ndarray) -> Any:
    """The network alone on pixels already on the device: one compiled call, waited for."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable: Any, fixed: Any, x: Any) -> Any:
        out, _ = model.stateless_call(trainable, fixed, x, training=False)
        return out

    x = jax.device_put(pixels)
    return lambda: jax.block_until_ready(forward(trainable, fixed, x))


def model_only(
    runner: Any, twin: Any, pixels: np.ndarray, batches: list[int], seconds: float
) -> list[dict[str, Any]]:
    import keras

    rows = []
    for batch in batches:
        x = np.ascontiguousarray(pixels[np.arange(batch) % len(pixels)], dtype=np.float32)
        row: dict[str, Any] = {"batch": batch}
        row["runner"] = rate(lambda x=x: runner.run(x), batch, seconds)
        if twin is not None and keras.backend.backend() == "jax":
            row["device_f32"] = rate(device_call(runner._model, x), batch, seconds)
            row["device_bf16"] = rate(device_call(twin, x), batch, seconds)
        rows.append(row)
        print(f"  model batch {batch}: {row}", flush=True)
    return rows


# ----------------------------------------------------------------------------- main


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# GPU column",
        "",
        f"Started {report['started']}; GPU: {m['gpu']}; CPU: {m['cpu']}, {m['cpus']} CPUs; "
        f"Python {m['python']}, Keras {m['keras']} on {m['backend']}"
        + (f" {m['jax']} ({m['device']})" if "jax" in m else "")
        + ". `python -m benchmarks.gpu`.",
        "",
        "## 1. Parity with the PyTorch reference (float64), "
        f"{next(iter(report['parity'].values()))['images']} photos",
        "",
        "| precision | features max abs | logits max abs | features min cosine | top-1 agrees |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in report["parity"].items():
        lines.append(
            f"| {name} | {r['features_max_abs']:.1e} | {r['logits_max_abs']:.1e} | "
            f"{r['features_min_cosine']:.6f} | {r['top1_agrees']} |"
        )
    lines += [
        "",
        "## 2. Model-only throughput (images/s)",
        "",
        "*runner*: the worker's own call (`KerasRunner.run`: float32 pixels from host memory, "
        "NumPy out), the ingest limit. *on device*: the network alone on pixels already on "
        "the GPU.",
        "",
        "| batch | runner, float32 | on device, float32 | on device, mixed bfloat16 |",
        "| --- | --- | --- | --- |",
    ]
    for r in report["model"]:
        lines.append(
            f"| {r['batch']} | {r['runner']:.0f} | {r.get('device_f32', float('nan')):.0f} | "
            f"{r.get('device_bf16', float('nan')):.0f} |"
        )
    lines += [
        "",
        "## 3. End-to-end ingest, worker on the GPU",
        "",
        "`indexer ingest` → API → in-memory broker → embedded worker (Keras runtime) → "
        "qdrant-edge, as section 3 of `python -m benchmarks`. Ratio: the job's images/s over "
        "the runner's at the worker's batch size. *decode*: the worker's task threads' CPU ms "
        "per image decoding (shrink-on-load) and signing; *peak RSS*: the server's.",
        "",
        "| source | worker | images | s | images/s | steady | model-only | ratio | "
        "server CPU ms/img | decode CPU ms/img | indexer CPU ms/img | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["ingest"]:
        decode = r.get("stage_cpu_ms", {}).get("decode", float("nan"))
        lines.append(
            f"| {r['source']} | {r['config']} | {r['indexed']}/{r['images']} | "
            f"{r['seconds']:.1f} | {r['rate']:.0f} | {r['steady_rate']:.0f} | "
            f"{r['model_only']:.0f} | {r['rate'] / r['model_only']:.3f} | "
            f"{r['server_cpu_ms']:.2f} | {decode:.2f} | {r['indexer_cpu_ms']:.2f} | "
            f"{r.get('rss_peak_mib', float('nan')):.0f} |"
        )
    lines += ["", *report["notes"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--out", type=Path, default=bench.REPO / "build" / "bench-gpu")
    parser.add_argument("--model-cache", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=bench.REPO / "build" / "bench-gpu-work")
    parser.add_argument("--data", type=Path, default=None, help="Fashion-MNIST + stamps folder")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256, 512])
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size and path")
    parser.add_argument("--images", type=int, default=3000, help="Fashion-MNIST images ingested")
    parser.add_argument("--stamps", type=int, default=802, help="tuxpaint photos ingested")
    parser.add_argument(
        "--photos", type=int, default=400, help="realistic catalog photos per size (0: none)"
    )
    parser.add_argument(
        "--worker",
        nargs="+",
        default=["128x2", "128x4"],
        help="worker set-ups to ingest with, BATCHxTHREADS: images per task and per model "
        "call, and the embedded worker's task threads",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run, on a CPU too")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.seconds, args.images = [1, 4], 0.2, 24
        args.stamps = min(args.stamps, 3)
        args.photos = min(args.photos, 4)
        args.worker = ["4x2"]
    if args.data:
        bench.FASHION = args.data / bench.FASHION.name
        bench.FASHION_LABELS = args.data / bench.FASHION_LABELS.name
        bench.STAMPS = args.data / "stamps"
        photoset.STAMPS = args.data / "stamps"

    from worker.model import build_model_cache
    from worker.model.runners import KerasRunner

    cache = args.model_cache or Path(
        os.environ.get("LOOKALIKE_TEST_MODEL_CACHE", bench.REPO / "build" / "test-models")
    )
    files = build_model_cache(MODEL, cache, tflite=False)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "notes": [],
    }
    print(f"machine: {report['machine']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (args.out / "gpu.json").write_text(json.dumps(report, indent=1, default=str))

    runner = KerasRunner(files.keras)
    twin = bf16_twin(runner._model, files)
    print("1. parity", flush=True)
    # The model the service runs by default (Lite0 at 320 px, GeM), against its reference.
    report["parity"] = parity(runner, twin, REFERENCE_DIR / f"{files.keras.stem}.npz")
    save()

    print("2. model-only throughput", flush=True)
    images, _ = bench.fashion_mnist(max(args.batches))
    from worker.model.preprocess import preprocess

    pixels = preprocess(
        [Image.fromarray(a).convert("RGB") for a in images], files.input_size, "resize"
    )
    report["model"] = model_only(runner, twin, pixels, args.batches, args.seconds)
    save()
    del runner, twin

    print("3. end-to-end ingest", flush=True)
    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sources: dict[str, Path] = {}
    if args.photos:
        built = photoset.build(
            work / "photos", per_size=args.photos, sizes=("1.5mp",) if args.quick else ()
        )
        for name, folder in built.items():
            w, h = photoset.SIZES[name]
            sources[f"catalog photos {w}x{h} ({len(photoset.image_files(folder))})"] = folder
    sources[f"Fashion-MNIST ({args.images})"] = bench.write_fashion_folder(work / "f", args.images)
    if args.stamps:
        sources[f"tuxpaint photos ({args.stamps})"] = bench.write_stamp_folder(
            work / "s", args.stamps
        )
    runner_rate = {r["batch"]: r["runner"] for r in report["model"]}
    report["ingest"] = []
    try:
        for i, setup in enumerate(args.worker):
            batch, threads = (int(v) for v in setup.split("x"))
            # The runner's rate at this batch size; measured now if section 2 did not.
            if batch not in runner_rate:
                extra = model_only(KerasRunner(files.keras), None, pixels, [batch], args.seconds)
                runner_rate[batch] = extra[0]["runner"]
            env = {
                "LOOKALIKE_RUNTIME": "keras",
                "LOOKALIKE_EMBED_BATCH_SIZE": str(batch),
                "LOOKALIKE_EMBEDDED_WORKER_THREADS": str(threads),
                "KERAS_BACKEND": os.environ["KERAS_BACKEND"],
            }
            result = bench.Report(quick=args.quick)
            runs = work / f"run-{i}"
            runs.mkdir()
            bench.bench_ingest(result, runs, cache, sources, env, ("--batch-size", str(batch)))
            for row in result.ingest:
                row["config"] = f"batch {batch}, {threads} task threads"
                row["model_only"] = runner_rate[batch]
                report["ingest"].append(row)
            save()
    finally:
        # The servers' logs, for a run on a machine that is gone when it ends.
        for log in work.rglob("server-*.log"):
            shutil.copyfile(log, args.out / f"{log.parent.parent.name}-{log.name}")
        shutil.rmtree(work, ignore_errors=True)
    text = render(report)
    (args.out / "gpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
