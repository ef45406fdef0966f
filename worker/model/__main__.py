"""``python -m worker.model build --model efficientnet-lite0 --cache-dir data/models``.

``--custom PATH`` converts a user's own Keras model (or, with ``--arch``, a weights file) the
way ``LOOKALIKE_MODEL=custom`` uses it (see worker/model/custom.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from lookalike.models import BACKBONES, DEFAULT_MODEL
from lookalike.settings import POOLINGS, TAGS_PASSES
from worker.model.cache import ModelFiles, build_model_cache
from worker.model.custom import ARCHITECTURES, INPUT_MODES, CustomModel, build_custom_cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.model")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build", help="convert the shipped weights to .keras and .tflite (skips if up to date)"
    )
    build.add_argument("--model", choices=sorted(BACKBONES), default=DEFAULT_MODEL)
    build.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--custom", type=Path, default=None, help="a user's Keras model file")
    build.add_argument("--arch", choices=sorted(ARCHITECTURES), default="")
    build.add_argument(
        "--input-size",
        type=int,
        default=0,
        help="pixels (0: the model's default; LOOKALIKE_INPUT_SIZE)",
    )
    build.add_argument(
        "--pooling", choices=POOLINGS, default="", help="default: the model's; LOOKALIKE_POOLING"
    )
    build.add_argument(
        "--tags-pass",
        choices=TAGS_PASSES,
        default="",
        help="the logits from a second pass at this side; LOOKALIKE_TAGS_PASS",
    )
    build.add_argument("--input-mode", choices=INPUT_MODES, default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    files: ModelFiles
    if args.custom is not None and (args.pooling or args.tags_pass):
        parser.error(
            "--pooling and --tags-pass are for the shipped backbones; a custom model pools as "
            "it was made"
        )
    if args.custom is not None:
        custom = CustomModel(args.custom.resolve(), args.arch, args.input_size, args.input_mode)
        files = build_custom_cache(custom, args.cache_dir, force=args.force)
    else:
        files = build_model_cache(
            args.model,
            args.cache_dir,
            force=args.force,
            input_size=args.input_size,
            pooling=args.pooling,
            tags_pass=args.tags_pass,
        )
    elapsed = time.monotonic() - started
    verb = "built" if files.built else "up to date:"
    print(f"{verb} {files.version} in {files.manifest.parent} ({elapsed:.1f}s)")
    for path in (files.keras, files.tflite, files.manifest):
        print(f"  {path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
