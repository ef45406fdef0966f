"""Finding an item's near-duplicate candidates in the vector index.

The candidates are the item's nearest neighbours whose embedding similarity reaches the
floor (:func:`candidate_floor`); lookalike/verify.py then decides, from the two images'
keypoints, which are the same shot edited (near-duplicates), the same shot recoloured
(variants) or something else. (The colour signature earlier versions stored decides nothing
any more and is no longer computed: two products photographed alike share their colours,
docs/indexer.md.)

For a multiscale vector (the default), the embedding similarity is the cosine of its pooled
head part alone (:func:`candidate_query`). Exact duplicates (same bytes, same sha256) are a
separate, exact test. With LOOKALIKE_POOLING=gem that part is the GeM-pooled head, used as it
is, with a floor of its own (:data:`CANDIDATE_FLOORS`: docs/model.md "Input size and
pooling", docs/indexer.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.models import BACKBONES
from lookalike.schema import head_part

# The least embedding similarity of a near-duplicate candidate, by how the compared head is
# pooled. 0.5 was chosen on the average-pooled head (Lite0 at 224 px): low enough for heavy
# edits and recolouring, the verification decides. A GeM head's cosines sit higher over the
# same pictures (2.2x the demo catalog's candidate pairs at 0.5); at 0.55 it passes every
# edited copy and colour variant of benchmarks/duplicate_threshold.py's set that 0.5 passes,
# on both halves (none lies between the two; the least found near-duplicate is at 0.58), and
# 30 % fewer candidate pairs on the demo catalog (benchmarks/duplicates_demo.py --floors;
# docs/indexer.md). Each candidate is a verification in a /duplicates call.
CANDIDATE_FLOORS: dict[str, float] = {"avg": 0.5, "gem": 0.55}


def candidate_floor(model: str, pooling: str = "", head: str = "") -> float:
    """The candidate floor for the vectors of LOOKALIKE_MODEL ``model`` pooled by
    LOOKALIKE_POOLING ``pooling`` (empty: the backbone's default, lookalike.models
    Backbone.resolve) under LOOKALIKE_HEAD ``head``: a backbone's own vectors by their
    pooling; a trained head's or a user's own model's (not measured) the average-pooled
    head's, as before GeM."""
    backbone = BACKBONES.get(model)
    if backbone is None or head:
        return CANDIDATE_FLOORS["avg"]
    return CANDIDATE_FLOORS[backbone.resolve(pooling=pooling)[1]]


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
