"""`lookalike` command: serve the API (embedded default or API-only), build the model cache."""

from __future__ import annotations

import argparse
import os
import sys

from lookalike.logs import configure_logging
from lookalike.settings import Settings, SettingsError
from lookalike.topology import api_topology_problem


def default_http_threads() -> int:
    """waitress threads when ``--threads`` is not given: twice the cores, at least 4. More
    threads than that only take turns at the GIL: on 2 cores, similar-by-id under load from
    8 clients ran 5-7 % faster with 4 threads than with 8 (docs/performance.md). A thread
    waiting for a search by photo's embedding holds its place, so a server whose callers
    wait on slow requests wants more (the API image sets 16)."""
    return max(4, 2 * (os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API (and, with no Redis configured, a worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="HTTP server threads (default: twice the cores, at least 4)",
    )
    build = sub.add_parser("build-model", help="convert the pretrained weights into the cache")
    build.add_argument("--model", default=None, help="default: LOOKALIKE_MODEL")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    # LOOKALIKE_LOG_FORMAT=json: one JSON object per line, with each request's id.
    configure_logging(settings)

    if args.command == "build-model":
        from worker.model import build_model_cache

        files = build_model_cache(
            args.model or settings.model,
            settings.model_dir,
            input_size=settings.input_size,
            pooling=settings.pooling,
            tags_pass=settings.tags_pass,
        )
        print(f"model cache ready: {files}")
        return 0

    # A layout that cannot work stops here, saying what to set, instead of answering /readyz
    # and then failing every ingest and search by photo (lookalike/topology.py).
    problem = api_topology_problem(settings)
    if problem is not None:
        print(f"configuration error: {problem}", file=sys.stderr)
        return 2

    from waitress import serve as waitress_serve

    if settings.embedded_broker:
        from launcher.embedded import start_embedded

        service = start_embedded(settings)
        app = service.app
        mode = f"embedded (in-process worker, qdrant-edge at {settings.qdrant_path})"
    else:
        from api import create_app

        service = None
        app = create_app(settings)
        mode = "API only (workers consume from Redis)"
    print(f"lookalike serving on http://{args.host}:{args.port}/  [{mode}]", flush=True)
    try:
        threads = args.threads or default_http_threads()
        waitress_serve(app, host=args.host, port=args.port, threads=threads)
    finally:
        if service is not None:
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
