"""What an explanation costs the worker: ``python -m benchmarks.explain_cost [--pairs N]``.

For N composite photos (1600x800 JPEG, 1.3 MP: two tuxpaint stamps side by side, as the
region tests build them) against a catalog item each, in this process on a temporary data
folder: the worker's ``explain`` (decode both images, two model calls through the
tensor-keeping TFLite interpreter, the heatmaps and their PNGs) beside ``embed_query`` of the
same photo (decode, one model call with XNNPACK). Median wall and CPU milliseconds (this
process; the first explanation, which loads the interpreter, is reported apart).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--model-cache", type=Path, default=REPO / "build" / "test-models")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests"))
    from lookalike.images import sha256_hex
    from lookalike.settings import Settings
    from support import composite, labelled_images
    from worker import pipeline
    from worker.resources import WorkerRuntime

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), model_cache=args.model_cache)
        runtime = WorkerRuntime(settings)
        paths = [p for _, p in labelled_images(args.pairs, ("animals", "vehicles"))]
        half = len(paths) // 2
        pairs = list(zip(paths[:half], paths[half:], strict=False))[: args.pairs]
        runtime.embedder.embed([])  # load the embedding model outside the timings
        timings: dict[str, list[tuple[float, float]]] = {"explain": [], "embed_query": []}
        first = None
        for left, right in pairs:
            photo, _ = composite(left, right)
            data = right.read_bytes()
            sha = sha256_hex(data)
            runtime.blobs.put(sha, data)
            for name, call in (
                ("explain", lambda: pipeline.explain(runtime, {"image": photo}, sha)),  # noqa: B023
                ("embed_query", lambda: pipeline.embed_query(runtime, photo)),  # noqa: B023
            ):
                wall, cpu = time.perf_counter(), time.process_time()
                out = call()
                spent = (1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu))
                assert "error" not in out, out
                if name == "explain" and first is None:
                    first = spent
                    continue
                timings[name].append(spent)
        runtime.close()
    print(f"{len(pairs)} composite photos (1600x800 JPEG) against a catalog stamp each")
    assert first is not None
    print(f"first explain (loads the interpreter): {first[0]:.0f} ms wall, {first[1]:.0f} ms CPU")
    for name, spent in timings.items():
        wall = statistics.median(s[0] for s in spent)
        cpu = statistics.median(s[1] for s in spent)
        print(f"{name:12s} median {wall:6.1f} ms wall, {cpu:6.1f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
