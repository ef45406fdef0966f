"""Tags from the classifier: an image's top ImageNet labels with their scores, and the
labels' parents in the WordNet hierarchy, so that "shoe" finds running shoes and sandals.

The classifier's logits come from the same model call as the embedding (the backbone's
``logits`` output), so tagging costs a softmax and a sort. The class names and parents are
``imagenet_tags.tsv`` beside this file, generated from registry packages by
``scripts/make_imagenet_tags.py`` (WordNet 3.0, Debian ``wordnet-base``; ImageNet's class
ids from the ``timm`` wheel).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.schema import LABELS_FIELD, TAGS_FIELD

TABLE = Path(__file__).with_name("imagenet_tags.tsv")


@dataclass(frozen=True)
class ImageNetClass:
    wnid: str
    # WordNet's lemmas of the class, lower-case: the first is its label.
    names: tuple[str, ...]
    # The useful hypernyms' lemmas, nearest first.
    parents: tuple[str, ...]


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 classes, in the order of the classifier's outputs."""
    classes: list[ImageNetClass] = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        index, wnid, names, parents = line.split("\t")
        assert int(index) == len(classes), f"{TABLE}: classes out of order at {index}"
        classes.append(
            ImageNetClass(wnid, tuple(names.split("|")), tuple(filter(None, parents.split("|"))))
        )
    return tuple(classes)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def tag_payloads(logits: np.ndarray, top_k: int, min_score: float) -> list[dict[str, Any]]:
    """Per image, the payload fields of its tags (empty when tagging is off, ``top_k`` 0):

    - ``labels``: up to ``top_k`` classes scoring at least ``min_score`` (softmax
      probability), best first, each ``{"name", "score", "wnid"}``;
    - ``tags``: the searchable words, lower-case: every name of those classes, then their
      parents' (an image whose best class scores below ``min_score`` has none).
    """
    if top_k <= 0:
        return [{} for _ in range(len(logits))]
    classes = imagenet_classes()
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    out = []
    for row in probabilities:
        best = np.argsort(-row)[:top_k]
        picked = [int(i) for i in best if row[i] >= min_score]
        labels = [
            {"name": classes[i].names[0], "score": round(float(row[i]), 4), "wnid": classes[i].wnid}
            for i in picked
        ]
        words = [n for i in picked for n in classes[i].names]
        words += [p for i in picked for p in classes[i].parents]
        out.append({LABELS_FIELD: labels, TAGS_FIELD: list(dict.fromkeys(words))})
    return out
