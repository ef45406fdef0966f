#!/usr/bin/env bash
# Everything behind docs/quality.md, from a fresh machine: the labelled Debian image sets,
# the converted models, the zero-shot variants, the catalog-tuned heads and their learning
# curve (about 65 minutes on 2 cores). Results under build/quality/.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"

ensure_venv dev
apt_install tuxpaint-stamps-default openclipart-png dataset-fashion-mnist
PY="$VENV/bin/python"
CACHE="${LOOKALIKE_MODEL_CACHE:-data/models}"

for model in efficientnet-lite0 efficientnet-lite1 efficientnet-lite2; do
  "$PY" -m worker.model build --model "$model" --cache-dir "$CACHE"
done
"$PY" -m indexer.quality.datasets tuxpaint
"$PY" -m indexer.quality.datasets openclipart
"$PY" -m indexer.quality.datasets fashion-mnist
"$PY" -m indexer.quality.datasets fashion-mnist --split train --out build/datasets/fashion-mnist-train
"$PY" -m indexer.quality.datasets fashion-mnist --per-class 600 --out build/datasets/fashion-mnist-6k
"$PY" -m indexer.quality.datasets shop

log "choosing the multiscale layer"
"$PY" benchmarks/quality_multiscale.py --cache-dir "$CACHE"
log "zero-shot variants"
"$PY" benchmarks/quality_variants.py --model-cache "$CACHE"
"$PY" benchmarks/quality_variants.py --model-cache "$CACHE" --datasets fashion-mnist-train \
  --only "lite0,lite0 multiscale,lite0 flip,lite1"
log "catalog-tuned heads"
"$PY" benchmarks/quality_heads.py --model-cache "$CACHE" --seed 1
"$PY" benchmarks/quality_heads.py --model-cache "$CACHE" --seed 1 --datasets fashion-mnist-6k \
  --kinds classifier,triplet
log "heads against labelled images per class"
"$PY" benchmarks/quality_learning_curve.py --model-cache "$CACHE" --seeds 3
