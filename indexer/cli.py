"""`indexer` command: catalog ingestion jobs against a running lookalike API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexer.client import APIClient
from indexer.ingest import ingest
from indexer.sources import folder_items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="indexer", description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="base URL of the API")
    parser.add_argument("--tenant", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    ing = sub.add_parser("ingest", help="index every image below a folder")
    ing.add_argument("source", type=Path)
    ing.add_argument(
        "--no-folder-labels",
        action="store_true",
        help="do not take the category from the first sub-folder",
    )
    ing.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)

    if not args.source.is_dir():
        print(f"indexer: {args.source} is not a folder", file=sys.stderr)
        return 2
    client = APIClient(args.api, tenant=args.tenant)
    try:
        items = folder_items(args.source, labels_from_folders=not args.no_folder_labels)
        report = ingest(client, items)
    finally:
        client.close()
    summary = report.as_dict()
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    print(
        f"indexed {report.indexed} of {report.submitted} images in {report.seconds:.1f} s "
        f"({summary['images_per_second']} img/s); {len(report.failed)} failed"
    )
    for failure in report.failed:
        print(f"  failed {failure.get('id')}: {failure.get('code')}: {failure.get('message')}")
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
