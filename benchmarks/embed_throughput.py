"""Images per second of the two runtimes, Keras on TensorFlow and TFLite (XNNPACK).

Times model inference only (``Embedder.infer`` on pixels framed beforehand from real
photos), per batch size, after a warm-up call, in one process so both runtimes see the same
machine. Framing is timed separately: it runs once per image whatever the runtime.

    python benchmarks/embed_throughput.py [--model efficientnet-lite0] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from worker.model import load_embedder
from worker.model.embedder import Embedder

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def photos(n: int) -> list[Image.Image]:
    base = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    return [base[i % len(base)] for i in range(n)]


def infer_for(
    embedder: Embedder, pixels: np.ndarray, seconds: float, callers: int = 1
) -> tuple[int, float]:
    """Images done and seconds taken with ``callers`` threads calling ``embedder.infer`` at
    once for ``seconds`` (each at least once), as a worker's task threads do: each call takes
    one of the embedder's interpreters."""
    done = [0] * callers
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while True:
            embedder.infer(pixels)
            done[i] += len(pixels)
            if time.perf_counter() >= stop:
                return

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.perf_counter() - started


def images_per_second(
    embedder: Embedder, pixels: np.ndarray, seconds: float, callers: int = 1
) -> float:
    done, took = infer_for(embedder, pixels, seconds, callers)
    return done / took


def compare(
    embedders: dict[str, Embedder],
    pixels: np.ndarray,
    seconds: float,
    rounds: int,
    callers: dict[str, int] | None = None,
) -> dict[str, float]:
    """Median rate per set-up over rounds that alternate set-ups, so drift hits each;
    ``callers``: threads calling a set-up at once (default 1)."""
    callers = callers or {}
    for embedder in embedders.values():
        embedder.infer(pixels)  # warm-up: plans the graph for this batch shape
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(rounds):
        for name, embedder in embedders.items():
            rates[name].append(
                images_per_second(embedder, pixels, seconds / rounds, callers.get(name, 1))
            )
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=6.0, help="per runtime and batch size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    images = photos(max(args.batch_sizes))
    embedders = {
        runtime: load_embedder(
            args.model,
            args.cache_dir,
            runtime=runtime,
            batch_size=max(args.batch_sizes),
            threads=args.threads,
        )
        for runtime in ("keras", "tflite")
    }
    size = embedders["tflite"].input_size
    started = time.perf_counter()
    pixels = embedders["tflite"].pixels(images)
    framing = len(images) / (time.perf_counter() - started)

    import tensorflow as tf

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}"
    )
    print(
        f"model: {args.model} at {size}px; threads: keras {embedders['keras'].threads}, "
        f"tflite {embedders['tflite'].threads}; framing ('resize'): {framing:.0f} img/s"
    )
    print("\n| batch | keras (TF) img/s | tflite img/s | tflite / keras |")
    print("| --- | --- | --- | --- |")
    for batch in args.batch_sizes:
        rates = compare(embedders, pixels[:batch], args.seconds, args.rounds)
        print(
            f"| {batch} | {rates['keras']:.1f} | {rates['tflite']:.1f} | "
            f"{rates['tflite'] / rates['keras']:.2f} |"
        )


if __name__ == "__main__":
    main()
