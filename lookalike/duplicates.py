"""Finding an item's near-duplicate candidates in the vector index.

The candidates are the item's nearest neighbours whose embedding similarity reaches
lookalike.verify.CANDIDATE_FLOOR; lookalike/verify.py then decides, from the two images'
keypoints, which are the same shot edited (near-duplicates), the same shot recoloured
(variants) or something else. The colour signature below is still stored at ingest; it no
longer decides anything (measured in docs/indexer.md: two products photographed alike share
their colours).

For a multiscale vector (the default), the embedding similarity is the cosine of its pooled
head part alone (:func:`candidate_query`). Exact duplicates (same bytes, same sha256) are a
separate, exact test.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.schema import head_part

# The payload field holding an item's colour signature (base64 of BINS**3 uint8 values).
SIGNATURE_FIELD = "color_signature"

BINS = 8
_SIDE = 128  # the histogram is taken on a thumbnail: enough pixels, little work
_WHITE = 235  # a pixel whose every channel is above this is background
_MIN_FOREGROUND = 50  # fewer foreground pixels than this: use the whole image
_BIN_OF = (np.arange(256) * BINS // 256).astype(np.uint16)  # channel value -> its bin
_GREY_BIN_OF = _BIN_OF * (BINS * BINS + BINS + 1)  # grey value -> the bin of (v, v, v)


def color_signature(image: Image.Image) -> str:
    """The compact colour signature of a decoded image (RGB or L), for the item's payload."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    pixels = np.asarray(image.resize((_SIDE, _SIDE), Image.Resampling.BILINEAR))
    if pixels.ndim == 2:
        # Greyscale: one plane resized, the same values as its RGB conversion's three. Its
        # 256 grey levels counted, then summed into the bins of (v, v, v): the same
        # histogram as binning every pixel, in a third of the time.
        levels = np.bincount(pixels.ravel(), minlength=256)
        if levels[: _WHITE + 1].sum() >= _MIN_FOREGROUND:
            levels = levels[: _WHITE + 1]
        histogram = np.bincount(
            _GREY_BIN_OF[: len(levels)], weights=levels, minlength=BINS**3
        ).astype(np.float64)
    else:
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        # Per channel planes and a lookup table instead of reductions over a (pixels, 3)
        # array: the same bins, three times faster (it runs once per ingested image).
        index = (_BIN_OF[red] * BINS + _BIN_OF[green]) * BINS + _BIN_OF[blue]
        foreground = np.minimum(np.minimum(red, green), blue) <= _WHITE
        if np.count_nonzero(foreground) >= _MIN_FOREGROUND:
            index = index[foreground]
        histogram = np.bincount(index.ravel(), minlength=BINS**3).astype(np.float64)
    root = np.sqrt(histogram / histogram.sum())  # unit length: sum of the histogram is 1
    return base64.b64encode(np.round(root * 255).astype(np.uint8).tobytes()).decode("ascii")


def decode_signature(signature: str) -> np.ndarray | None:
    """The signature as a unit-length float vector; None if it is missing or malformed."""
    try:
        raw = np.frombuffer(base64.b64decode(signature, validate=True), dtype=np.uint8)
    except (ValueError, TypeError):
        return None
    if raw.size != BINS**3 or not raw.any():
        return None
    vector = raw.astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass(frozen=True)
class CandidateQuery:
    """How to find an item's near-duplicate candidates in the vector index.

    ``vector`` is what the ANN search is asked with; a hit's cosine score times ``scale`` is
    the embedding similarity.
    """

    vector: np.ndarray
    scale: float = 1.0

    def similarity(self, score: float) -> float:
        return score * self.scale

    def score_threshold(self, floor: float) -> float:
        """The ANN search's score threshold for an embedding similarity of ``floor``."""
        return max(-1.0, floor / self.scale)


def candidate_query(vector: np.ndarray, model: object) -> CandidateQuery:
    """The candidate search for a stored, unit-length vector made by ``model`` (the point's
    payload ``model``).

    A multiscale vector (lookalike.schema.head_part) is judged on its pooled head alone: its
    stage-6 part, made for finding same-category neighbours, makes an edited copy and a
    look-alike of the same category harder to tell apart (docs/indexer.md measures both).
    The search is asked with the head part alone, zeros elsewhere: against a stored vector
    ``b`` (unit length) its cosine score is ``cos(a_head, b_head) * |b_head|``, and every
    vector of the version has the same ``|b_head|`` as the query's own ``|a_head|``, so the
    hits come ranked by the head's cosine, which is the score divided by ``|a_head|``.
    Any other vector is compared whole.
    """
    vector = np.asarray(vector, dtype=np.float32)
    part = head_part(model, vector.size)
    if part is None:
        return CandidateQuery(vector)
    head = np.zeros_like(vector)
    head[part] = vector[part]
    length = float(np.linalg.norm(head))
    if length == 0.0:
        return CandidateQuery(vector)
    return CandidateQuery(head / length, 1.0 / length)
