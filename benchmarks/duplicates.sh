#!/usr/bin/env bash
# The near-duplicate and colour-variant measurements behind docs/indexer.md, from a fresh
# machine: the Debian image sets the evaluation set is built from, the converted model, then
# benchmarks/duplicate_threshold.py (about 3 minutes on 2 cores). Results in
# build/duplicates.json.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"

ensure_venv dev
apt_install tuxpaint-stamps-default openclipart-png dataset-fashion-mnist fonts-dejavu-core
CACHE="${LOOKALIKE_MODEL_CACHE:-data/models}"
"$VENV/bin/python" -m worker.model build --model efficientnet-lite0 --cache-dir "$CACHE"
mkdir -p build
"$VENV/bin/python" benchmarks/duplicate_threshold.py --cache-dir "$CACHE" \
  --json build/duplicates.json "$@"
