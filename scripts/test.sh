#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then lints, type-checks and tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_venv dev
# Real labelled photos (tuxpaint) and product images (Fashion-MNIST) for the tests; Redis for
# the multi-process tests; Debian's Chromium for the gallery's browser test (tests/e2e/test_gallery_browser.py).
apt_install tuxpaint-stamps-default dataset-fashion-mnist chromium
ensure_redis

log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
log "mypy"
"$VENV/bin/mypy"
log "import-linter (the layers and no import cycles: pyproject.toml [tool.importlinter])"
"$VENV/bin/lint-imports" --no-cache
log "pytest"
"$VENV/bin/python" -m pytest "$@"
