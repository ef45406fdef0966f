"""``indexer evaluate-tags``: how well the classifier's tags (worker/model/tags.py) find a
labelled set's classes, for the classes whose names an ImageNet label or WordNet parent
carries (Fashion-MNIST's sandal, bag, coat; tuxpaint's birds, vehicles, fruit, ...).

For each expected tag: **precision**, the share of the images tagged with it that belong to
the classes it should find, and **recall**, the share of those classes' images tagged with
it, which is what ``q=<tag>`` returns. Images are decoded as the worker decodes a new
catalog's and run through the worker's embedder (its logits, from the embedding's own model
call); the sweep over ``top_k`` and ``min_score`` reuses the same logits. Costs: the CPU time
of tagging beside that of the model calls, and the tags' JSON bytes per item.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.quality.datasets import FASHION_MNIST_CLASSES, LabelledImage
from indexer.quality.evaluate import add_model_options, embed_items, model_settings
from lookalike.images import DECODE_SCALED
from lookalike.schema import TAGS_FIELD

# Per labelled set: (tag, the labels whose images it should find). A label is a class folder
# (Fashion-MNIST) or a tuxpaint category/sub-category; "animals" also covers "animals/birds".
EXPECTED: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "fashion-mnist": [
        ("t-shirt", ("t-shirt",)),
        ("trouser", ("trouser",)),
        ("sweater", ("pullover",)),
        ("dress", ("dress",)),
        ("coat", ("coat",)),
        ("sandal", ("sandal",)),
        ("shirt", ("shirt", "t-shirt")),
        ("running shoe", ("sneaker",)),
        ("bag", ("bag",)),
        ("boot", ("ankle-boot",)),
        # Parents: one word for several classes.
        ("shoe", ("sandal", "sneaker")),
        ("footwear", ("sandal", "sneaker", "ankle-boot")),
        ("clothing", ("t-shirt", "trouser", "pullover", "dress", "coat", "shirt")),
    ],
    "tuxpaint": [
        ("animal", ("animals",)),
        ("bird", ("animals/birds",)),
        ("mammal", ("animals/mammals", "animals/marsupials")),
        ("fish", ("animals/fish",)),
        ("insect", ("animals/insects",)),
        ("vehicle", ("vehicles",)),
        ("food", ("food",)),
        ("fruit", ("food/fruit",)),
        ("vegetable", ("food/vegetables",)),
        ("flower", ("plants/flowers",)),
        ("musical instrument", ("hobbies/music",)),
        ("hat", ("clothes/hats",)),
    ],
}
assert {label for _, labels in EXPECTED["fashion-mnist"] for label in labels} == set(
    FASHION_MNIST_CLASSES
)
SWEEP = [(1, 0.1), (3, 0.05), (3, 0.1), (3, 0.2), (5, 0.05)]


def _belongs(label: str, wanted: Sequence[str]) -> bool:
    return any(label == w or label.startswith(f"{w}/") for w in wanted)


def tag_scores(
    tags: Sequence[set[str]], labels: Sequence[str], expected: list[tuple[str, tuple[str, ...]]]
) -> list[dict[str, Any]]:
    """Precision and recall of each expected tag over images with ``tags`` and ``labels``."""
    rows = []
    for tag, wanted in expected:
        relevant = [_belongs(label, wanted) for label in labels]
        tagged = [tag in found for found in tags]
        hits = sum(r and t for r, t in zip(relevant, tagged, strict=True))
        rows.append(
            {
                "tag": tag,
                "labels": list(wanted),
                "images": sum(relevant),
                "tagged": sum(tagged),
                "precision": hits / sum(tagged) if any(tagged) else None,
                "recall": hits / sum(relevant) if any(relevant) else None,
            }
        )
    return rows


def evaluate_tags(
    items: Sequence[LabelledImage], settings: Any, expected: list[tuple[str, tuple[str, ...]]]
) -> dict[str, Any]:
    from worker.model import get_embedder
    from worker.model.tags import tag_payloads

    embedder = get_embedder(settings)
    model_cpu = [0.0]

    def logits(batch: Sequence[Any]) -> np.ndarray:
        cpu = time.process_time()
        _, out = embedder.embed_and_classify(batch)
        model_cpu[0] += time.process_time() - cpu
        if out is None:
            raise ValueError(f"model {embedder.name!r} has no classifier: no tags")
        return out

    embedded = embed_items(
        items,
        {"logits": logits},
        versions={"logits": embedder.version},
        max_pixels=settings.max_image_pixels,
        decode=DECODE_SCALED,
        input_size=embedder.input_size,
        progress=sys.stderr,
    )
    all_logits = embedded.vectors["logits"]
    labels = [items[i].label for i in embedded.ok]
    top_k, min_score = settings.tags_top_k, settings.tags_min_score
    cpu = time.process_time()
    payloads = tag_payloads(all_logits, top_k, min_score)
    tag_cpu = time.process_time() - cpu
    n = max(1, len(payloads))
    sweep = {}
    for k, score in SWEEP:
        found = [set(p.get(TAGS_FIELD, [])) for p in tag_payloads(all_logits, k, score)]
        sweep[f"top_k={k} min_score={score}"] = tag_scores(found, labels, expected)
    return {
        "model": embedder.version,
        "images": len(labels),
        "failed": len(embedded.failed),
        "top_k": top_k,
        "min_score": min_score,
        "tags": tag_scores([set(p.get(TAGS_FIELD, [])) for p in payloads], labels, expected),
        "sweep": sweep,
        "costs": {
            "tagging_cpu_ms_per_image": round(1000 * tag_cpu / n, 4),
            "model_cpu_ms_per_image": round(1000 * model_cpu[0] / n, 2),
            "payload_bytes_per_item": round(sum(len(json.dumps(p)) for p in payloads) / n),
            "tags_per_item": round(sum(len(p.get(TAGS_FIELD, [])) for p in payloads) / n, 1),
        },
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def tags_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tag | should find | images | tagged | precision | recall |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['tag']} | {', '.join(r['labels'])} | {r['images']} | {r['tagged']} | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} |"
        )
    return "\n".join(lines)


def add_evaluate_tags_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate-tags",
        help="precision and recall of the classifier's tags on a labelled set",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("dataset", type=Path, help="labelled folder, or .csv/.jsonl manifest")
    p.add_argument("--expect", choices=sorted(EXPECTED), required=True, help="which tags")
    p.add_argument("--label-depth", type=int, default=1, help="folder levels in a label")
    p.add_argument("--top-k", type=int, default=None, help="LOOKALIKE_TAGS_TOP_K")
    p.add_argument("--min-score", type=float, default=None, help="LOOKALIKE_TAGS_MIN_SCORE")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    add_model_options(p, head=False)


def run_evaluate_tags(args: argparse.Namespace) -> int:
    from indexer.quality.datasets import DatasetError, load_labelled

    try:
        settings = model_settings(args)
        overrides = {"tags_top_k": args.top_k, "tags_min_score": args.min_score}
        settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
        items = load_labelled(args.dataset, label_depth=args.label_depth)
        result = evaluate_tags(items, settings, EXPECTED[args.expect])
    except (DatasetError, ValueError, OSError, LookupError) as exc:
        print(f"indexer evaluate-tags: {exc}", file=sys.stderr)
        return 2
    print(f"{result['images']} images, model {result['model']}, ", end="")
    print(f"top_k={result['top_k']} min_score={result['min_score']}\n")
    print(tags_table(result["tags"]))
    print("\nsweep (mean precision / mean recall over the tags):")
    for name, rows in result["sweep"].items():
        precision = [r["precision"] for r in rows if r["precision"] is not None]
        recall = [r["recall"] for r in rows if r["recall"] is not None]
        print(f"  {name}: {_pct(float(np.mean(precision)) if precision else None)} / ", end="")
        print(_pct(float(np.mean(recall)) if recall else None))
    print(f"\ncosts: {json.dumps(result['costs'])}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0
