"""``python -m worker.model build --model efficientnet-lite0 --cache-dir data/models``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from worker.model.cache import build_model_cache
from worker.model.efficientnet_lite import VARIANTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.model")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build", help="convert the shipped weights to .keras and .tflite (skips if up to date)"
    )
    build.add_argument("--model", choices=sorted(VARIANTS), default="efficientnet-lite0")
    build.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    files = build_model_cache(args.model, args.cache_dir, force=args.force)
    elapsed = time.monotonic() - started
    verb = "built" if files.built else "up to date:"
    print(f"{verb} {files.version} in {files.manifest.parent} ({elapsed:.1f}s)")
    for path in (files.keras, files.tflite, files.manifest):
        print(f"  {path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
