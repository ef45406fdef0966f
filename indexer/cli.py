"""`indexer` command: catalog ingestion jobs against a running lookalike API.

    indexer ingest SOURCE            a folder, or a .csv / .jsonl manifest; resumable
    indexer duplicates               groups of exact copies, near-duplicates, colour variants
    indexer reindex --model NAME     re-embed the catalog with another model, then switch
    indexer reindex --head NAME      ... with a trained head on the backbone's vectors
    indexer rollback                 serve the previous version again
    indexer versions                 the catalog's versions (--commit, --abort)

The API's address is --api or $LOOKALIKE_API_URL; an API key, --api-key or
$LOOKALIKE_API_KEY (sent as X-API-Key). See docs/indexer.md.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from indexer.client import APIClient, APIClientError
from indexer.duplicate_report import duplicate_report
from indexer.ingest import IngestOptions, ingest
from indexer.reindex_job import ReindexJob, ReindexOptions
from indexer.sources import SourceError, count_items, open_source
from indexer.state import JobState, default_state_path
from lookalike.settings import IndexerSettings
from lookalike.store.versions import parse_label

EXIT_FAILED_ITEMS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _fraction(raw: str) -> float:
    value = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("give a fraction from 0 to 1, or a percentage")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="indexer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings = IndexerSettings.from_env()
    parser.add_argument(
        "--api",
        default=settings.api_url,
        help="base URL of the API (default: $LOOKALIKE_API_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=settings.api_key,
        help="API key, sent as X-API-Key (default: $LOOKALIKE_API_KEY)",
    )
    parser.add_argument("--tenant", default=None, help="the tenant to act for (X-Tenant)")
    parser.set_defaults(state_dir=settings.indexer_state_dir)
    sub = parser.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="index a folder or a CSV/JSONL manifest (resumable)")
    ing.add_argument("source", type=Path, help="a folder of images, or a .csv/.jsonl manifest")
    ing.add_argument(
        "--no-folder-labels",
        action="store_true",
        help="do not take the category from the first sub-folder",
    )
    ing.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    ing.add_argument(
        "--state",
        type=Path,
        default=None,
        help="the job's state file (default: one per API and source under "
        "$LOOKALIKE_INDEXER_STATE_DIR or ~/.local/state/lookalike/indexer)",
    )
    ing.add_argument(
        "--sync",
        action="store_true",
        help="also delete from the index the items the source no longer lists",
    )
    ing.add_argument(
        "--max-delete",
        type=_fraction,
        default=0.5,
        help="--sync refuses to delete more than this fraction of a tenant's items "
        "(default 0.5; e.g. 0.9 or 90%%)",
    )
    ing.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        help="a manifest's paths must lie below this folder (default: the manifest's folder)",
    )
    ing.add_argument(
        "--allow-any-path",
        action="store_true",
        help="let a manifest name files anywhere (a manifest you wrote yourself)",
    )
    ing.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="fetch URLs on private, loopback and link-local hosts (a trusted internal source)",
    )
    ing.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    ing.add_argument("--batch-size", type=int, default=32, help="items per worker task")
    ing.add_argument(
        "--max-pending", type=int, default=8, help="tasks queued at the service at once"
    )
    ing.add_argument("--workers", type=int, default=4, help="threads reading and uploading")
    ing.add_argument(
        "--no-duplicates", action="store_true", help="skip the duplicates part of the report"
    )
    ing.add_argument("--threshold", type=float, default=None, help="near-duplicate threshold")
    ing.add_argument(
        "--job", default=None, help="label of the tasks on the jobs page (default: ingest:SOURCE)"
    )

    dup = sub.add_parser(
        "duplicates", help="groups of exact copies, near-duplicates, colour variants"
    )
    dup.add_argument("--threshold", type=float, default=None, help="near-duplicate threshold")
    dup.add_argument("--report", type=Path, default=None, help="write the JSON report here")

    rei = sub.add_parser("reindex", help="re-embed the catalog with another model, then switch")
    rei.add_argument(
        "--model",
        default=None,
        help="e.g. efficientnet-lite1 (default with --head: the active one's)",
    )
    rei.add_argument(
        "--head",
        default="",
        help="a head trained with `indexer train-head`, in the workers' model cache: embed "
        "with it on the model's vectors; 'none': the model's own vectors, even where the "
        "service's LOOKALIKE_HEAD names a head",
    )
    rei.add_argument("--no-switch", action="store_true", help="build and verify, do not switch")
    rei.add_argument(
        "--allow-missing",
        action="store_true",
        help="switch even if some items could not be re-embedded (they leave the catalog)",
    )
    rei.add_argument("--page-size", type=int, default=64, help="items per worker task")
    rei.add_argument("--max-pending", type=int, default=4, help="tasks queued at once")
    rei.add_argument("--state", type=Path, default=None, help="the job's state file")
    rei.add_argument("--report", type=Path, default=None, help="write the JSON report here")

    sub.add_parser("rollback", help="serve the previous version of the catalog again")
    ver = sub.add_parser("versions", help="the catalog's versions")
    group = ver.add_mutually_exclusive_group()
    group.add_argument(
        "--commit", action="store_true", help="drop the previous version (no rollback after)"
    )
    group.add_argument(
        "--abort", action="store_true", help="drop the version a reindex is building"
    )
    # --- retrieval quality (issue #5): offline, in-process, no API needed --------------------
    from indexer.quality.catalog_head import add_catalog_options, run_catalog_head
    from indexer.quality.evaluate import add_evaluate_parser, run_evaluate
    from indexer.quality.tag_quality import add_evaluate_tags_parser, run_evaluate_tags
    from indexer.quality.train_head import add_train_head_parser, run_train_head

    add_evaluate_parser(sub)
    add_evaluate_tags_parser(sub)
    add_train_head_parser(sub)
    add_catalog_options(sub.choices["train-head"])
    # ------------------------------------------------------------------------------------------
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return run_evaluate(args)
    if args.command == "train-head":
        return run_catalog_head(args) if args.from_catalog else run_train_head(args)
    if args.command == "evaluate-tags":
        return run_evaluate_tags(args)

    # Killed politely (SIGTERM, e.g. by a scheduler): stop like Ctrl-C, state saved.
    signal.signal(signal.SIGTERM, _interrupt)
    client = APIClient(args.api, tenant=args.tenant, api_key=args.api_key)
    try:
        if args.command == "ingest":
            return _ingest(args, client)
        if args.command == "duplicates":
            return _duplicates(args, client)
        if args.command == "reindex":
            return _reindex(args, client)
        return _versions(args, client)
    except APIClientError as exc:
        print(f"indexer: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _write(path: Path | None, body: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False))


def _ingest(args: argparse.Namespace, client: APIClient) -> int:
    source = args.source.resolve()
    try:
        items = open_source(
            source,
            labels_from_folders=not args.no_folder_labels,
            base=args.base_dir,
            allow_outside=args.allow_any_path,
            schema=client.catalog_schema(),
        )
        total = count_items(source)
    except SourceError as exc:
        print(f"indexer: {exc}", file=sys.stderr)
        return EXIT_ERROR
    state_path = args.state or default_state_path(
        args.api, f"{args.tenant or ''}:{source}", state_dir=args.state_dir
    )
    options = IngestOptions(
        batch_size=args.batch_size,
        max_pending=args.max_pending,
        workers=args.workers,
        sync=args.sync,
        max_delete_fraction=args.max_delete,
        dry_run=args.dry_run,
        duplicates=not args.no_duplicates,
        duplicate_threshold=args.threshold,
        job=args.job or _job_label(source),
        allow_private_urls=args.allow_private_urls,
    )
    state = JobState(state_path)
    try:
        report = ingest(
            client, items, state=state, options=options, total=total, source=str(source)
        )
    finally:
        state.close()
    _write(args.report, {**report.as_dict(), "state": str(state_path)})
    print(report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    if report.error:
        return EXIT_ERROR
    return EXIT_FAILED_ITEMS if report.failed else 0


def _job_label(source: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._:@+=-]+", "-", source.name).strip("-.") or "source"
    return f"ingest:{name}"[:64]


def _duplicates(args: argparse.Namespace, client: APIClient) -> int:
    report = duplicate_report(client, threshold=args.threshold, tenant=args.tenant)
    _write(args.report, report.as_dict())
    print(report.summary())
    return 0


def _reindex(args: argparse.Namespace, client: APIClient) -> int:
    state_path = args.state or default_state_path(
        args.api, "catalog", kind="reindex", state_dir=args.state_dir
    )
    options = ReindexOptions(
        page_size=args.page_size,
        max_pending=args.max_pending,
        switch=not args.no_switch,
        allow_missing=args.allow_missing,
    )
    model = args.model
    if model is None:
        if not args.head:
            print("indexer reindex: give --model, --head, or both", file=sys.stderr)
            return EXIT_ERROR
        # The backbone of the version served now: a head on the vectors it makes already.
        active = client.reindex().get("active") or {}
        named = parse_label(str(active.get("model", "")))
        if named is None:
            print(
                "indexer reindex: the active version's model is unknown: give --model",
                file=sys.stderr,
            )
            return EXIT_ERROR
        model = named.model
    report = ReindexJob(client, state_path, options).run(model, args.head)
    _write(args.report, report.as_dict())
    print(report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_ERROR if report.error else 0


def _versions(args: argparse.Namespace, client: APIClient) -> int:
    collection = client.reindex()["collection"]
    if args.command == "rollback":
        status = client.reindex("rollback", collection=collection)
    elif getattr(args, "commit", False):
        status = client.reindex("commit", collection=collection)
    elif getattr(args, "abort", False):
        status = client.reindex("abort", collection=collection)
    else:
        status = client.reindex()
    for role in ("active", "previous", "next"):
        version = status.get(role)
        if version:
            name, model, count = version["name"], version["model"], version["count"]
            print(f"{role:9s} {name}  model {model}  {count} items")
        else:
            print(f"{role:9s} -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
