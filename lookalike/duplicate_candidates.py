"""Finding an item's near-duplicate candidates in the vector index.

The candidates are the item's nearest neighbours whose embedding similarity reaches
lookalike.verify.CANDIDATE_FLOOR; lookalike/verify.py then decides, from the two images'
keypoints, which are the same shot edited (near-duplicates), the same shot recoloured
(variants) or something else. (The colour signature earlier versions stored decides nothing
any more and is no longer computed: two products photographed alike share their colours,
docs/indexer.md.)

For a multiscale vector (the default), the embedding similarity is the cosine of its pooled
head part alone (:func:`candidate_query`). Exact duplicates (same bytes, same sha256) are a
separate, exact test. With LOOKALIKE_POOLING=gem that part is the GeM-pooled head, used as it
is with the same floor: Lite0 at 320 px with GeM keeps more edited copies above it than the
default, on the set benchmarks/duplicate_threshold.py builds (docs/model.md "Input size and
pooling").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.schema import head_part


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
