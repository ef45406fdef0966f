"""Geometric verification of near-duplicate candidates: is this the same shot, edited?

Two different products photographed alike (same background, same framing) look alike
globally: their embeddings and colour histograms agree, and only the pixels tell them apart.
An edited copy (cropped up to ~30 %, rescaled, recompressed, slightly rotated, brightened,
watermarked, padded) keeps its pixels' *correspondence*: the same corners and edges, moved
by one similarity transform. So a candidate from the vector index is a near-duplicate only
when enough of the two images' local features (ORB keypoints and their binary descriptors,
computed once at ingest by worker/keypoints.py and kept in the point's payload) match under
one such transform, found with RANSAC.

The score of a pair is the share of the smaller keypoint set that the transform explains
(``inliers / min(keypoints)``), in [0, 1]; a pair is verified when the score reaches the
threshold (``LOOKALIKE_DUPLICATE_THRESHOLD``) with at least :data:`MIN_INLIERS` inliers.

A verified pair whose matched points changed colour (the 75th percentile of the Lab (a, b)
distance at the coloured inliers reaches :data:`VARIANT_COLOR_DELTA`) is a **colour
variant** (the same shot recoloured: "also in red"), not a duplicate. Brightness, contrast
and colour-balance edits move those points less.

An image with fewer than :data:`MIN_KEYPOINTS` keypoints (tiny, or plain: a flat colour, a
thin line) cannot be verified: it is nobody's near-duplicate or variant (only exact copies,
same bytes, are found for it). Constants chosen by measurement:
benchmarks/duplicate_threshold.py, docs/indexer.md.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lookalike import schema

# The payload field holding an item's keypoints (:func:`encode`).
KEYPOINTS_FIELD = schema.KEYPOINTS_FIELD
FORMAT = 1  # bump when what is stored changes: older points read as "not yet computed"
SIDE = 512  # keypoints are found on the image scaled down to this longest side
MAX_KEYPOINTS = 256
MIN_KEYPOINTS = 24
MIN_INLIERS = 11
RATIO = 0.85  # Lowe's ratio test on the two nearest descriptors
RANSAC_PIXELS = 6.0  # reprojection error of an inlier, in SIDE-scaled pixels
MAX_ROTATION = 25.0  # degrees: a "small rotation" edit, with room
SCALE_RANGE = (0.4, 2.5)  # of one image's SIDE-scaled frame to the other's
CHROMA = 6.0  # a keypoint with less Lab chroma than this on both sides is grey
VARIANT_COLOR_DELTA = 22.0
MIN_COLOURED = 4  # fewer coloured inliers: colour cannot tell, the pair is "near"
COLOUR_QUANTILE = 75  # which percentile of the coloured inliers' colour change is compared
# Candidates are the nearest neighbours in the vector index whose embedding similarity
# (lookalike.duplicates.candidate_query) reaches this: low enough for heavy edits and
# recolouring, the verification decides.
CANDIDATE_FLOOR = 0.5

_HEADER = struct.Struct("<BH")
_DESCRIPTOR = 32  # ORB: 256 bits


@dataclass(frozen=True)
class Keypoints:
    """An image's keypoints: positions (SIDE-scaled pixels), Lab (a, b) around each,
    ORB descriptors."""

    xy: np.ndarray  # (n, 2) float32
    ab: np.ndarray  # (n, 2) float32, Lab a and b, 0 = grey
    descriptors: np.ndarray  # (n, 32) uint8

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def verifiable(self) -> bool:
        return len(self) >= MIN_KEYPOINTS


def encode(points: Keypoints) -> str:
    """The compact payload form: header, then per keypoint x, y (float16), a, b (int8) and
    the 32-byte descriptor, base64 (about 50 bytes a keypoint)."""
    n = len(points)
    body = b"".join(
        [
            _HEADER.pack(FORMAT, n),
            points.xy.astype(np.float16).tobytes(),
            np.clip(np.round(points.ab), -127, 127).astype(np.int8).tobytes(),
            points.descriptors.astype(np.uint8).tobytes(),
        ]
    )
    return base64.b64encode(body).decode("ascii")


def decode(value: Any) -> Keypoints | None:
    """The keypoints of a payload value; None if missing, malformed or of another format
    (the item needs a reindex to be verified)."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        version, n = _HEADER.unpack_from(raw)
    except (ValueError, TypeError, struct.error):
        return None
    if version != FORMAT or len(raw) != _HEADER.size + n * (4 + 2 + _DESCRIPTOR):
        return None
    at = _HEADER.size
    xy = np.frombuffer(raw, np.float16, 2 * n, at).reshape(n, 2).astype(np.float32)
    at += 4 * n
    ab = np.frombuffer(raw, np.int8, 2 * n, at).reshape(n, 2).astype(np.float32)
    at += 2 * n
    descriptors = np.frombuffer(raw, np.uint8, _DESCRIPTOR * n, at).reshape(n, _DESCRIPTOR)
    return Keypoints(xy, ab, descriptors)


@dataclass(frozen=True)
class Verdict:
    """What verification found for a pair."""

    inliers: int
    score: float  # inliers / the smaller keypoint count
    color_delta: float  # COLOUR_QUANTILE of the coloured inliers' Lab (a, b) distances

    def verified(self, threshold: float, min_inliers: int | None = None) -> bool:
        least = MIN_INLIERS if min_inliers is None else min_inliers
        return self.inliers >= least and self.score >= threshold

    def relation(
        self, threshold: float, min_inliers: int | None = None, variant_delta: float | None = None
    ) -> str | None:
        """``"near"``, ``"variant"`` or None (not the same shot)."""
        if not self.verified(threshold, min_inliers):
            return None
        delta = VARIANT_COLOR_DELTA if variant_delta is None else variant_delta
        return "variant" if self.color_delta >= delta else "near"


NO_MATCH = Verdict(0, 0.0, 0.0)
_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)


def verify(a: Keypoints, b: Keypoints) -> Verdict:
    """Match ``a``'s descriptors to ``b``'s, keep the matches that one similarity transform
    (scale, rotation, shift: what crop, rescale, rotation and padding do) explains."""
    if not (a.verifiable and b.verifiable):
        return NO_MATCH
    src, dst = _matches(a, b)
    if len(src) < MIN_INLIERS:
        return NO_MATCH
    inlier = _consensus(a.xy[src], b.xy[dst])
    count = int(inlier.sum())
    if count < MIN_INLIERS:
        return NO_MATCH
    ab_a, ab_b = a.ab[src[inlier]], b.ab[dst[inlier]]
    coloured = np.maximum(np.hypot(*ab_a.T), np.hypot(*ab_b.T)) >= CHROMA
    delta = 0.0
    if int(coloured.sum()) >= MIN_COLOURED:
        delta = float(
            np.percentile(np.hypot(*(ab_a[coloured] - ab_b[coloured]).T), COLOUR_QUANTILE)
        )
    return Verdict(count, count / min(len(a), len(b)), delta)


def _matches(a: Keypoints, b: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """Indices of one-to-one matches: ``b``'s nearest to each of ``a``'s descriptors, clearly
    nearer than the second (Lowe's ratio test), and ``a``'s nearest to it in return."""
    forward = [
        p[0]
        for p in _MATCHER.knnMatch(a.descriptors, b.descriptors, k=2)
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]
    if len(forward) < MIN_INLIERS:
        # Most candidates end here: the backward search (half the cost) is not needed.
        return np.zeros(0, int), np.zeros(0, int)
    backward = {
        m[0].queryIdx: m[0].trainIdx
        for m in _MATCHER.knnMatch(b.descriptors, a.descriptors, k=1)
        if m
    }
    pairs = [(m.queryIdx, m.trainIdx) for m in forward if backward.get(m.trainIdx) == m.queryIdx]
    if not pairs:
        return np.zeros(0, int), np.zeros(0, int)
    src, dst = np.array(pairs).T
    return src, dst


_HYPOTHESES = 400  # RANSAC: transforms tried, each from two matches
_MIN_BASE = 8.0  # pixels between a hypothesis' two points: closer ones make a shaky transform


def _plausible(a: np.ndarray) -> np.ndarray:
    """Whether complex factors ``a`` (scale and rotation of w = a z + b) are an edit's."""
    scale = np.abs(a)
    return (
        (scale >= SCALE_RANGE[0])
        & (scale <= SCALE_RANGE[1])
        & (np.abs(np.degrees(np.angle(a))) <= MAX_ROTATION)
    )


def _consensus(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Which matches (points ``p`` of one image, ``q`` of the other) one plausible similarity
    transform explains: RANSAC over transforms from two matches each, only those an edit
    could make (scale within SCALE_RANGE, rotation up to MAX_ROTATION) tried, then refined
    by least squares on the inliers. Seeded: the same pair always gets the same answer."""
    z = p[:, 0].astype(np.float64) + 1j * p[:, 1]
    w = q[:, 0].astype(np.float64) + 1j * q[:, 1]
    n = len(z)
    if n * (n - 1) // 2 <= _HYPOTHESES:
        i, j = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(n)
        i, j = rng.integers(0, n, (2, _HYPOTHESES))
    dz = z[i] - z[j]
    usable = np.abs(dz) >= _MIN_BASE
    i, j, dz = i[usable], j[usable], dz[usable]
    a = (w[i] - w[j]) / dz
    keep = _plausible(a)
    if not keep.any():
        return np.zeros(n, bool)
    a = a[keep]
    b = w[i[keep]] - a * z[i[keep]]
    fits = np.abs(a[:, None] * z[None, :] + b[:, None] - w[None, :]) <= RANSAC_PIXELS
    mask = fits[int(fits.sum(axis=1).argmax())]
    zm, wm = z[mask], w[mask]
    zc = zm - zm.mean()
    if float(np.abs(zc).max()) > 0:
        a2 = (np.conj(zc) @ (wm - wm.mean())) / (np.conj(zc) @ zc)
        if _plausible(np.array([a2]))[0]:
            refined = np.abs(a2 * z + (wm.mean() - a2 * zm.mean()) - w) <= RANSAC_PIXELS
            if refined.sum() >= mask.sum():
                mask = refined
    return mask
