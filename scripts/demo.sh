#!/usr/bin/env bash
# The main job: set up, build the model cache, index a real labelled image set, serve the
# gallery and API on the embedded defaults (no Redis or Qdrant server needed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

HOST="${LOOKALIKE_DEMO_HOST:-127.0.0.1}"
PORT="${LOOKALIKE_DEMO_PORT:-8000}"
export LOOKALIKE_DATA_DIR="${LOOKALIKE_DATA_DIR:-$REPO_ROOT/data/demo}"
# The demo is the embedded default, whatever the shell has configured.
export LOOKALIKE_REDIS_URL="" LOOKALIKE_QDRANT_URL=""
DATASET=/usr/share/tuxpaint/stamps

ensure_venv worker
apt_install tuxpaint-stamps-default

log "building the model cache (once)"
"$VENV/bin/lookalike" build-model

# The service's log goes to a file (every line, each task at INFO; each task's result at
# DEBUG with LOOKALIKE_LOG_LEVEL=DEBUG); this terminal shows its warnings and errors only,
# the indexer's progress line and the gallery's URL.
mkdir -p "$LOOKALIKE_DATA_DIR"
SERVER_LOG="$LOOKALIKE_DATA_DIR/server.log"
: >"$SERVER_LOG"
log "starting the service on http://$HOST:$PORT/ (its log: $SERVER_LOG; warnings and errors shown here)"
"$VENV/bin/lookalike" serve --host "$HOST" --port "$PORT" >>"$SERVER_LOG" 2>&1 &
SERVER=$!
tail --pid="$SERVER" -n +1 -F "$SERVER_LOG" 2>/dev/null | grep --line-buffered -E ' (WARNING|ERROR|CRITICAL) |^Traceback|^configuration error' >&2 &
SHOWN=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; kill $SHOWN 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 120); do
  curl -fs "http://$HOST:$PORT/readyz" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "the server exited; its log: $SERVER_LOG" >&2; tail -n 20 "$SERVER_LOG" >&2; exit 1; }
  sleep 0.5
done

log "indexing $DATASET (tuxpaint stamps: about 800 real photos and drawings in 17 categories)"
"$VENV/bin/indexer" --api "http://$HOST:$PORT" ingest "$DATASET" --report "$LOOKALIKE_DATA_DIR/ingest-report.json" || \
  log "some images were refused; see $LOOKALIKE_DATA_DIR/ingest-report.json"

cat <<MSG

  The catalog is indexed. Open the gallery:   http://$HOST:$PORT/
  The service's log: $SERVER_LOG   The ingest report: $LOOKALIKE_DATA_DIR/ingest-report.json
  Click an item to see the items that look most like it, or search by photo.
  API examples:
    curl http://$HOST:$PORT/v1/items?limit=3
    curl http://$HOST:$PORT/v1/items/ITEM_ID/similar?limit=5
    curl -F image=@photo.jpg http://$HOST:$PORT/v1/search

  Press Ctrl-C to stop.
MSG
wait $SERVER
