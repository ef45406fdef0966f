"""``indexer train-head --from-catalog --label FIELD --name NAME``: a head trained on the
catalog's own labels, from the vectors the service already stores.

1. Page through ``GET /v1/vectors?field=FIELD``: the active version's vectors (every
   tenant), each with its item's value of that keyword field of the catalog schema (e.g.
   ``category``). Items without a value are counted, and read too (unless
   ``--no-unlabelled``; a random sample of ``--unlabelled-max`` where there are more): the
   head pseudo-labels the confident share of them and trains on it (worker/model/heads.py
   ``with_pseudo_labels``). No image is read or embedded again, and nothing is exported.
2. Refuse vectors of several embedder versions (an upgrade not finished), or of a version
   embedded with a head already: a head is trained on a backbone's own vectors, and runs on
   them (worker/model/heads.py refuses vectors of another backbone version).
3. Then what ``indexer train-head DATASET`` does with the vectors it embeds
   (indexer/quality/train_head.py): a split stratified by label (30 % held out; a label
   with fewer than 4 items stays in training whole), train the head on the training part,
   save it into the model cache the service's workers read (``--model-cache``, default
   ``$LOOKALIKE_MODEL_CACHE``), load it back as the worker does, and score the backbone's
   and the head's vectors of the held-out items (P@k, R@k, mAP@k).
4. ``indexer reindex --head NAME`` serves it: a new version embedded with the backbone and
   the head; ``indexer rollback`` goes back.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from indexer.client import APIClient, APIClientError
from indexer.quality.datasets import LabelledImage
from indexer.quality.train_head import (
    HeadReport,
    fit_and_score,
    train_options,
    write_head_report,
)
from lookalike.store.versions import HEAD_SEPARATOR, parse_label

if TYPE_CHECKING:
    from lookalike.settings import Settings

PAGE_SIZE = 100
# At most this many of the items without a value are kept for pseudo-labels (a random
# sample of them): 59 MB of 1472-d vectors. The learning curve measured up to 2000
# unlabelled items beside 100 labelled ones (docs/quality.md).
UNLABELLED_MAX = 10_000


class CatalogHeadError(ValueError):
    """The catalog's vectors cannot train a head (or this name would break a version)."""


@dataclass
class CatalogVectors:
    """The active version's vectors that have a value of ``field``, and what made them."""

    field: str
    # "<tenant>:<item id>": unique across tenants.
    ids: list[str]
    labels: list[str]
    vectors: np.ndarray
    model: str
    model_version: str
    skipped: int
    version: str | None
    # The items without a value (read only when asked for): for pseudo-labels; a random
    # sample of them where there were more than the fetch's ``unlabelled_max``.
    unlabelled: np.ndarray | None = None


def fetch_vectors(
    client: APIClient,
    field: str,
    *,
    page_size: int = PAGE_SIZE,
    progress: TextIO | None = None,
    unlabelled: bool = False,
    unlabelled_max: int = UNLABELLED_MAX,
    seed: int = 0,
) -> CatalogVectors:
    """Every stored vector with a value of ``field`` (GET /v1/vectors, page by page), and
    with ``unlabelled`` those of the items without one too: all of them, or a uniform
    random sample of ``unlabelled_max`` (reservoir sampling, seeded) where there are more."""
    cursor: str | None = None
    rows: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []  # rows' vectors, float32 as soon as they are read
    bare: list[np.ndarray] = []
    bare_seen = 0
    sample = random.Random(seed)
    made_by: Counter[tuple[str, str]] = Counter()
    skipped = 0
    version = None
    while True:
        params: dict[str, Any] = {"field": field, "limit": page_size}
        if cursor:
            params["cursor"] = cursor
        if unlabelled:
            params["unlabelled"] = "true"
        page = client.get("/v1/vectors", **params)
        for row in page["items"]:
            made_by[row["model"], row["model_version"]] += 1
            vector = np.asarray(row.pop("vector"), dtype=np.float32)
            if row["value"] is not None:
                rows.append(row)
                vectors.append(vector)
                continue
            bare_seen += 1
            if len(bare) < unlabelled_max:
                bare.append(vector)
            elif (slot := sample.randrange(bare_seen)) < unlabelled_max:
                bare[slot] = vector
        skipped += int(page["skipped"]) + sum(row["value"] is None for row in page["items"])
        version = page.get("version")
        cursor = page.get("next_cursor")
        if progress is not None:
            print(f"\r{len(rows)} vectors read, {skipped} skipped", end="", file=progress)
        if not cursor:
            break
    if progress is not None:
        print(file=progress)
    if not rows:
        raise CatalogHeadError(
            f"no item of the catalog has a value of {field!r} ({skipped} items without one)"
        )
    if len(made_by) > 1:
        listed = "; ".join(f"{n} by {m} ({v})" for (m, v), n in made_by.most_common())
        raise CatalogHeadError(
            f"the catalog's vectors were made by {len(made_by)} embedder versions ({listed}): "
            "a head is trained on the vectors of one backbone version; re-embed the catalog "
            "with one (`indexer reindex --model NAME`) first"
        )
    ((model, model_version),) = made_by
    if HEAD_SEPARATOR in model or ":head-" in model_version:
        named = parse_label(model)
        backbone = named.model if named is not None else "MODEL"
        raise CatalogHeadError(
            f"the catalog is served by a head already ({model}, version {model_version}): a "
            "head is trained on a backbone's own vectors; serve the backbone again first "
            f"(`indexer rollback`, or `indexer reindex --model {backbone} --head none`)"
        )
    return CatalogVectors(
        field=field,
        ids=[f"{row['tenant']}:{row['id']}" for row in rows],
        labels=[row["value"] for row in rows],
        vectors=np.stack(vectors),
        model=model,
        model_version=model_version,
        skipped=skipped,
        version=version,
        unlabelled=(np.stack(bare) if bare else np.zeros((0, len(vectors[0])), np.float32))
        if unlabelled
        else None,
    )


def check_name_unused(client: APIClient, name: str) -> None:
    """Refuse a head name a version of the catalog is embedded with: the worker would embed
    that version's new items with the new head, into vectors of the old one's."""
    status = client.reindex()
    using = [v["name"] for v in status.get("versions", []) if v.get("head") == name]
    if using:
        raise CatalogHeadError(
            f"head {name!r} embeds the catalog's version {', '.join(using)}: training it again "
            "would change what new vectors there mean; pick another name"
        )


def train_from_vectors(
    data: CatalogVectors,
    settings: Settings,
    *,
    name: str,
    options: Any = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    fit_all: bool = False,
) -> HeadReport:
    """Train head ``name`` on the catalog's vectors and labels, save it into
    ``settings.model_dir``, and score it on a held-out split (as
    :func:`indexer.quality.train_head.train_and_evaluate` does with the vectors it embeds)."""
    items = [
        LabelledImage(i, Path(), label) for i, label in zip(data.ids, data.labels, strict=True)
    ]
    training = {
        "source": "catalog",
        "field": data.field,
        "catalog_version": data.version,
        "catalog_items": len(items),
        "skipped_without_value": data.skipped,
    }
    # The items without a value: none of them is a held-out one (those all have a value).
    return fit_and_score(
        items,
        data.vectors,
        settings,
        name=name,
        base_model=data.model,
        base_version=data.model_version,
        training=training,
        options=options,
        test_fraction=test_fraction,
        seed=seed,
        fit_all=fit_all,
        no_hold_out=f"no value of {data.field!r} has 4 items or more: none to hold out",
        unlabelled=data.unlabelled,
    )


# --------------------------------------------------------------------------- command line


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """``train-head``'s options for training from the catalog (indexer/quality/train_head.py)."""
    group = parser.add_argument_group(
        "from the catalog (instead of DATASET; the service's address: --api, --api-key)"
    )
    group.add_argument(
        "--from-catalog",
        action="store_true",
        help="train on the vectors the service stores, labelled by a keyword field",
    )
    group.add_argument("--label", default=None, help="the keyword field, e.g. category")
    group.add_argument("--page-size", type=int, default=PAGE_SIZE, help="vectors per request")
    group.add_argument(
        "--unlabelled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also read the items without a value, and train on the confident share of them "
        "with the class the head's discriminant gives them (pseudo-labels); the default with "
        "--from-catalog, --no-unlabelled leaves them out",
    )
    group.add_argument(
        "--unlabelled-max",
        type=int,
        default=UNLABELLED_MAX,
        metavar="N",
        help=f"a random sample of N of them where there are more ({UNLABELLED_MAX})",
    )


def run_catalog_head(args: argparse.Namespace) -> int:
    """``indexer train-head --from-catalog``: 0, or 2 with the reason on stderr."""
    from indexer.quality.evaluate import model_settings
    from worker.model.heads import HeadError, check_name

    client = APIClient(args.api, tenant=args.tenant, api_key=args.api_key)
    try:
        if args.dataset is not None:
            raise CatalogHeadError("give DATASET or --from-catalog, not both")
        if not args.label:
            raise CatalogHeadError("--from-catalog needs --label FIELD (e.g. category)")
        if args.augment:
            raise CatalogHeadError(
                "--augment embeds altered copies of the images: give DATASET, not "
                "--from-catalog (the catalog's stored vectors are all it reads)"
            )
        check_name(args.name)
        settings = model_settings(args)
        check_name_unused(client, args.name)
        data = fetch_vectors(
            client,
            args.label,
            page_size=args.page_size,
            progress=sys.stderr,
            unlabelled=args.unlabelled is not False,  # on unless --no-unlabelled
            unlabelled_max=args.unlabelled_max,
            seed=args.seed,
        )
        report = train_from_vectors(
            data,
            settings,
            name=args.name,
            options=train_options(args),
            test_fraction=args.test_fraction,
            seed=args.seed,
            fit_all=args.fit_all,
        )
    except (ValueError, HeadError, OSError, APIClientError) as exc:
        print(f"indexer train-head: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    out = args.out or Path("build/heads") / args.name
    paths = write_head_report(report, out, f"catalog field {args.label!r} ({args.api})")
    written = json.loads(paths["json"].read_text())
    written["catalog"] = {
        "field": data.field,
        "version": data.version,
        "items": len(data.ids),
        "skipped_without_value": data.skipped,
        "unlabelled_read": None if data.unlabelled is None else len(data.unlabelled),
        "model": data.model,
        "model_version": data.model_version,
    }
    paths["json"].write_text(json.dumps(written, indent=2) + "\n")
    print(
        f"{len(data.ids)} items with a {data.field!r} ({data.skipped} without one), "
        f"{report.classes} values, vectors of {data.model_version}"
    )
    if report.unlabelled:
        sampled = (
            f" (a random sample of the {data.skipped})" if data.skipped > report.unlabelled else ""
        )
        print(
            f"{report.pseudo_labelled} of the {report.unlabelled} items without one{sampled} "
            "trained on with the value the head's discriminant guesses (--no-unlabelled leaves "
            "them out)"
        )
    print(report.verdict())
    print(f"saved head {report.version} in {settings.model_dir / 'heads'}")
    print(f"serve it: indexer reindex --head {args.name}")
    print(f"report: {paths['markdown']}")
    return 0
