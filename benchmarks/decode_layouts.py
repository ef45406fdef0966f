"""Decode beside inference: ``python -m benchmarks.decode_layouts [--threads 1 2 4]``.

In one process, as a worker runs its tasks, on the realistic 1.5 MP and 4 MP photos
(benchmarks/photoset.py): images/s from the files' bytes to stored-ready vectors, for

- ``model only``: the worker's model on already framed pixels, with ``T`` threads each
  calling its own interpreter (the embedded worker's set-up), the ceiling;
- ``T task threads``: ``T`` threads each taking a worker batch (decode with shrink-on-load
  as worker/pipeline.py does, then frame and embed), as the embedded worker's thread pool
  and ``--pool threads --concurrency T`` run tasks: one thread's decode overlaps another's
  inference, since Pillow's decoder and resampler and TFLite's invoke release the GIL;
- ``T task threads + decode pool``: the same with the decoding of each batch handed to a
  pool of ``T`` threads (decode of the next batch runs while this one is embedded).

The ratio to model-only and the CPU ms per image (all threads) say what an N-core worker
does: with ``T = N`` task threads, images/s ≈ N x 1000 / (decode + frame + model CPU ms),
as long as the GIL-held part (Python between the C calls) stays small.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import photoset
from lookalike.images import decode_scaled
from lookalike.settings import Settings

LIMIT = 40_000_000


def cpu_s() -> float:
    return time.process_time()


def run_layout(
    embedder: object, datas: list[bytes], threads: int, batch: int, pool: bool, seconds: float
) -> tuple[float, float]:
    """(images/s, CPU ms per image) of ``threads`` task threads for about ``seconds``."""
    side = embedder.input_size  # type: ignore[attr-defined]
    batches = [datas[i : i + batch] for i in range(0, len(datas), batch)]
    decoder = ThreadPoolExecutor(max_workers=threads) if pool else None
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def decode(data: bytes) -> object:
        return decode_scaled(data, max_pixels=LIMIT, side=side)

    def task(t: int) -> None:
        k = t
        while time.perf_counter() < stop:
            chunk = batches[k % len(batches)]
            k += threads
            if decoder is not None:
                images = list(decoder.map(decode, chunk))
            else:
                images = [decode(d) for d in chunk]
            embedder.embed(images)  # type: ignore[attr-defined]
            done[t] += len(chunk)

    began_wall, began_cpu = time.perf_counter(), cpu_s()
    workers = [threading.Thread(target=task, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - began_wall, cpu_s() - began_cpu
    if decoder is not None:
        decoder.shutdown()
    n = sum(done)
    return n / wall, cpu * 1000 / n


def model_only(embedder: object, pixels: np.ndarray, threads: int, seconds: float) -> float:
    from benchmarks.embed_throughput import infer_for

    n, took = infer_for(embedder, pixels, seconds, threads)  # type: ignore[arg-type]
    return n / took


def main(argv: list[str] | None = None) -> int:
    from worker.model import get_embedder

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode_layouts", description=__doc__
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=32, help="items per task")
    parser.add_argument("--per-size", type=int, default=400)
    parser.add_argument("--sizes", nargs="+", default=["1.5mp", "4mp"])
    parser.add_argument("--model-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    folders = photoset.build(per_size=args.per_size)
    settings = Settings.from_env()
    if args.model_cache is not None:
        settings = settings.replace(model_cache=args.model_cache)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| photos | layout | img/s | model-only img/s | ratio | CPU ms/image |")
    print("| --- | --- | --: | --: | --: | --: |")
    for size in args.sizes:
        datas = [p.read_bytes() for p in photoset.image_files(folders[size])[:160]]
        for threads in args.threads:
            embedder = get_embedder(settings, threads)
            side = embedder.input_size
            pixels = embedder.pixels(
                [decode_scaled(d, max_pixels=LIMIT, side=side) for d in datas[:32]]
            )
            ceiling = model_only(embedder, pixels, threads, args.seconds / 2)
            for pool in (False, True):
                rate, cpu = run_layout(embedder, datas, threads, args.batch, pool, args.seconds)
                label = f"{threads} task threads" + (" + decode pool" if pool else "")
                print(
                    f"| {size} | {label} | {rate:.1f} | {ceiling:.1f} | {rate / ceiling:.2f} "
                    f"| {cpu:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
