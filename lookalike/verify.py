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

Keypoints agree where two pictures share strokes: the letters of one font (an E holds an F,
a Q an O) matched as well as an edited copy does, and the threshold had to stay high for
them, which lost heavily edited copies. So a verified pair is then compared **pixel by
pixel**: each item stores a small grey thumbnail (:data:`THUMBNAIL_SIDE` px), the pair's
transform lays one on the other, the brightness and contrast are fitted (a tone edit), and
:func:`difference` is the share of the content (what is off the background's grey) where
the two still differ by :data:`PIXEL_TOLERANCE` of the picture's range in a blob that
survives an opening of :data:`OPENING` px: a missing bar or tail is such a blob, a
watermark's thin, translucent text and a recompression's noise are not. A near-duplicate's
difference is at most :data:`MAX_DIFFERENCE`. That share of the whole content lets a small
changed region through (a coin's numeral, a dreidel's letter, a collar): the transform is
then refined by ECC and the two pictures' edges compared where they differ most
(:func:`local_difference`): each of two different items has strokes of its own, while an
edited copy's are all in its original (a watermark adds some to the copy only).

A letter cut out to its own outline (a stamp on a transparent ground) can *be*, pixel for
pixel, a longer letter cropped to its frame: an O is a Q without its tail, an n an h
without its ascender, and every test above agrees. What tells them apart is where each
picture's content meets its frame: a crop's line cuts through what it takes away, so the
copy's content touches its frame wherever the original's goes on past it, while a cut-out
meets its frame only at tangents. Each item stores its frame contact (the darkest and
lightest grey of its outermost row, per bin of each side, at the decoded picture's own
resolution), and :func:`crossing` is the share of a side's bins where the other picture
shows, just past this one's frame, a grey this one's edge does not hold there. Nor may a
picture end where the other's ground begins while the other goes on past it in blobs of its
own (an a-umlaut's dots past an a): :func:`beyond` reads that gap on the 128 px thumbnail,
where an umlaut 3-5 px from a 139 px letter stamp blurs into its letter, so each item also
stores its gap profile (which rows and columns of plain ground run right across it, at its
own resolution, lookalike.frames.gap_profile), and :func:`gap_beyond` reads the gap there.
Last, an edit moves a whole picture by one similarity, so every sharp edge of one lies,
to a pixel, where the similarity fitted to them all puts the other's; two drawings of one
design do not (a lowercase x on an uppercase X, its strokes a pixel steeper; a dreidel's
nun on its gimel, the letter two pixels off): :func:`shape_difference`,
lookalike/edge_fit.py, reads that on the stored thumbnails.

A verified pair whose colours changed is a **colour variant** (the same shot recoloured:
"also in red"), not a duplicate. Two measures of the change, the larger counts against
:data:`VARIANT_COLOR_DELTA`: the 75th percentile of the Lab (a, b) distance at the coloured
inliers, and the same over a coarse colour grid of each picture (:data:`GRID_CELL` px cells)
compared where the pair's transform overlays one on the other. Keypoints sit on corners and
outlines, so a flat coloured fill (a flag, a T-shirt) shows in the grid only: found on the
keypoints alone, a green flag was a white one's near-duplicate. Brightness, contrast and
colour-balance edits move both less.
A variant's grey levels change (a recolour is no brightness-and-contrast edit), so none of
the grey tests above holds it; but a recolour moves no boundary, and two products on one
chassis (a cement mixer and a tow truck) have outlines of their own. The stored thumbnail is
in colour, and :func:`colour_structure` reads its Lab edges as :func:`local_difference`
reads the grey ones: a variant has no colour edge of its own on both sides.

An image with fewer than :data:`MIN_KEYPOINTS` keypoints (tiny, or plain: a flat colour, a
thin line) cannot be verified: it is nobody's near-duplicate or variant (only exact copies,
same bytes, are found for it). Constants chosen by measurement:
benchmarks/duplicate_threshold.py, docs/indexer.md.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from lookalike import alignment, edge_fit, frames, schema
from lookalike.frames import CONTACT_BINS, GAP_BINS

# The payload field holding an item's keypoints (:func:`encode`).
KEYPOINTS_FIELD = schema.KEYPOINTS_FIELD
# Bump when what is stored changes in a way older points cannot be verified with: they then
# read as "not yet computed" (needs_reindex). Formats 1 and 2 (no thumbnail) are not read:
# without the pixel comparison a pair of glyphs is verified as readily as an edited copy, and
# the threshold and least inliers below were chosen with it; nor is format 3 (no frame
# contact and gap profile: a cut-out O would be its Q's crop, an A its A-umlaut's), nor
# format 4 (a grey thumbnail: a cement mixer would be its tow truck's variant).
FORMAT = 5
SIDE = 512  # keypoints are found on the image scaled down to this longest side
MAX_KEYPOINTS = 256
MIN_KEYPOINTS = 24
MIN_INLIERS = 4
RATIO = 0.85  # Lowe's ratio test on the two nearest descriptors
RANSAC_PIXELS = 6.0  # reprojection error of an inlier, in SIDE-scaled pixels
MAX_ROTATION = 25.0  # degrees: a "small rotation" edit, with room
SCALE_RANGE = (0.4, 2.5)  # of one image's SIDE-scaled frame to the other's
CHROMA = 6.0  # a keypoint with less Lab chroma than this on both sides is grey
VARIANT_COLOR_DELTA = 22.0
# A variant's keypoint rule: the near-duplicates' of before the pixel test. On the demo
# catalog, at the near-duplicates' looser rule, 17 pairs were variants, most of them two
# drawings on one outline (two dreidels, a tanker and a toy train); 7 at this one.
VARIANT_MIN_SCORE = 0.10
VARIANT_MIN_INLIERS = 11
GRID_CELL = 32  # colour grid cell side, in SIDE-scaled pixels
MIN_COLOURED = 4  # fewer coloured inliers: colour cannot tell, the pair is "near"
COLOUR_QUANTILE = 75  # which percentile of the coloured inliers' colour change is compared
THUMBNAIL_SIDE = 128  # the stored grey thumbnail's longer side (a JPEG, ~3-4 KiB)
THUMBNAIL_QUALITY = 90
PIXEL_TOLERANCE = 0.35  # of the picture's range (2nd to 98th percentile): pixels that differ
OPENING = 5  # px of the thumbnail: narrower differences (text strokes, noise) are dropped
MAX_DIFFERENCE = 0.04  # share of the content that may differ for a near-duplicate
# Compared under the transform the thumbnails' pixels give (lookalike/alignment.py, for the
# pairs whose keypoints do not settle it), a near-duplicate's thumbnails must agree more
# closely: differences of this share of the range count, and at most this share of the
# content may differ: none, no blob of them survives the opening (the tune half's choice;
# on the evaluation set a hard negative's aligned difference was 1.7 % and more).
ALIGNED_TOLERANCE = 0.15
# The least phase-correlation peak of an alignment worth comparing: every copy of the
# evaluation set that only the aligned comparison finds peaks at 0.5 or more; 96 % of the
# hard-negative pairs under 0.3 (their comparison, ~2 CPU-ms, is spared).
ALIGNED_MIN_RESPONSE = 0.3
MAX_ALIGNED_DIFFERENCE = 0.0
_MIN_OVERLAP = 0.1  # less of a thumbnail laid on the other: nothing to compare (difference 1)
_MIN_CONTENT = 0.05  # of the overlap: the least a picture's content is counted as
_MARGIN = 3  # px of the thumbnail around the other's frame that still count as inside it
# A picture laid on the other whose frame ends at a gap of background, beyond which the other
# has blobs of its own (an a laid on an a-umlaut: its dots; an n on an n-tilde): a crop's line
# cuts through what it removes, so the original's edges go on right past the copy's edge.
# Within _DETACHED_MARGIN px of the frame an edge touches it; the next _DETACHED_GAP px must
# hold under 1 % of the other's edges for the gap to count, and blobs wholly beyond holding
# more than MAX_DETACHED of its edges make the pair two pictures (the tune half's choice,
# docs/indexer.md).
_DETACHED_MARGIN = 1
_DETACHED_GAP = 2
MAX_DETACHED = 0.15
# The same at the pictures' own resolution (:func:`gap_beyond`, lookalike.frames.gap_profile):
# a gap line is a bin of the profile whose greys differ by GAP_LEVELS or less, found within
# GAP_SLACK bins inside the other's frame side or GAP_REACH bins beyond it; of its edges
# more than GAP_MARGIN px (of the thumbnail) past it, a near-duplicate has at most
# MAX_GAPPED: none, the tune half's choice (every limit up to 0.15 removes as many hard
# negatives there and loses the same one positive, a crop along an umlaut's gap, which is
# the plain letter; docs/indexer.md).
GAP_LEVELS = 16.0
GAP_SLACK = 1
GAP_REACH = 3
GAP_MARGIN = 2
MAX_GAPPED = 0.0
# The gap's grey must be the larger picture's ground: held by this share of its frame
# contact's bins or more (an outlined N stamp's white, 0.40; a flag's middle stripe meets
# the frame at its two ends only).
GROUND_SHARE = 0.25
# The refined comparison (:func:`local_difference`): under the pair's transform refined by
# ECC (lookalike.alignment.refine), an edge of one thumbnail (a grey step of LOCAL_EDGE of
# its range) is matched when the other has one (LOCAL_MATCH of its range) within
# LOCAL_REACH px; each way round, the LOCAL_WINDOW px window with the most unmatched edge
# pixels; a near-duplicate's smaller way round is at most MAX_LOCAL of the window (the tune
# half's choice, docs/indexer.md). A coin's numeral, a dreidel's letter, a collar: a small
# changed region that MAX_DIFFERENCE's share of the whole content dilutes and its 5 px
# opening drops.
LOCAL_EDGE = 0.25
LOCAL_MATCH = 0.12
LOCAL_REACH = 2
LOCAL_WINDOW = 16
MAX_LOCAL = 0.0
# The candidates verified are the nearest neighbours in the vector index whose embedding
# similarity reaches a floor: lookalike.duplicate_candidates.CANDIDATE_FLOORS.

# A near-duplicate has at most this share of a side's bins where the other's content goes
# on across its frame (:func:`crossing`, lookalike/frames.py): none, the tune half's choice
# (no positive of the evaluation set reads one, docs/indexer.md).
MAX_CROSSING = 0.0
# A near-duplicate has at most this share of its sharp edges displaced from where one
# similarity, fitted to them, puts them (:func:`shape_difference`, lookalike/edge_fit.py), the
# smaller way round: the least limit that loses none of the tune half's positives
# (docs/indexer.md).
MAX_DISPLACED = 0.04
# A variant's colour edges (:func:`colour_structure`): the thumbnails' Lab gradient (L 0-100,
# a and b) per px, an edge from COLOUR_EDGE, matched by one of COLOUR_MATCH within
# LOCAL_REACH px, each way round the LOCAL_WINDOW px window with the most unmatched; at most
# MAX_RESHAPED of it the smaller way round (the least limit that loses none of the tune
# half's variants, docs/indexer.md). A recolour keeps every boundary between two colours,
# where the grey's can vanish (two hues of one lightness).
COLOUR_EDGE = 10.0
COLOUR_MATCH = 2.0
MAX_RESHAPED = 0.0

_HEADER = struct.Struct("<BH")
_FRAME = struct.Struct("<HHBB")  # frame width, height; grid columns, rows
_THUMBNAIL = struct.Struct("<H")  # the thumbnail's JPEG length
_DESCRIPTOR = 32  # ORB: 256 bits


@dataclass(frozen=True)
class Keypoints:
    """An image's keypoints: positions (SIDE-scaled pixels), Lab (a, b) around each,
    ORB descriptors; and the picture's frame (its size in those pixels), coarse colour
    grid (Lab (a, b) per cell), grey thumbnail (THUMBNAIL_SIDE px on the longer side) and
    the same thumbnail in colour."""

    xy: np.ndarray  # (n, 2) float32
    ab: np.ndarray  # (n, 2) float32, Lab a and b, 0 = grey
    descriptors: np.ndarray  # (n, 32) uint8
    frame: tuple[int, int] = (0, 0)  # width, height
    grid: np.ndarray | None = None  # (rows, columns, 2) float32, Lab a and b
    thumbnail: np.ndarray | None = None  # (rows, columns) uint8, grey
    # (4, CONTACT_BINS, 2) uint8, the darkest and lightest grey per bin: top, bottom (left to
    # right), left, right (top to bottom)
    contact: np.ndarray | None = None
    # (2, GAP_BINS, 2) uint8, the darkest and lightest grey per bin of whole rows (top to
    # bottom) and of whole columns (left to right): lookalike.frames.gap_profile
    gaps: np.ndarray | None = None
    # (rows, columns, 3) uint8, RGB: the thumbnail in colour (its grey is ``thumbnail``)
    colour: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def verifiable(self) -> bool:
        return len(self) >= MIN_KEYPOINTS

    # What the pixel tests derive from the thumbnail alone, whatever it is compared with:
    # made on first use and kept, so that a /duplicates call makes the asked item's once,
    # not once per candidate (read-only arrays; None without a thumbnail).
    @cached_property
    def spectra(self) -> alignment.Spectra | None:
        """The thumbnail's spectra for lookalike.alignment.align."""
        return None if self.thumbnail is None else alignment.prepare(self.thumbnail)

    @cached_property
    def sharp_edges(self) -> edge_fit.Edges | None:
        """The thumbnail's sharp edges (lookalike.edge_fit.sharp_edges): an asked item's are
        found once for all its candidates."""
        return None if self.thumbnail is None else edge_fit.sharp_edges(self.thumbnail)

    @cached_property
    def colour_edges(self) -> np.ndarray | None:
        """The colour thumbnail's Lab gradient (:func:`_colour_gradient`)."""
        if self.colour is None:
            return None
        gradient = _colour_gradient(self.colour)
        gradient.setflags(write=False)
        return gradient

    @cached_property
    def edges(self) -> np.ndarray | None:
        """The thumbnail's edges (:func:`_edges`)."""
        if self.thumbnail is None:
            return None
        edges = _edges(self.thumbnail)
        edges.setflags(write=False)
        return edges


def _ab_bytes(ab: np.ndarray) -> bytes:
    return np.clip(np.round(ab), -127, 127).astype(np.int8).tobytes()


def _thumbnail_bytes(thumbnail: np.ndarray | None, colour: np.ndarray | None) -> bytes:
    """The thumbnail as a JPEG: in colour where known (its luma is the grey, as a grey
    JPEG's would be; the chroma costs about a fifth more), otherwise grey."""
    if colour is not None and colour.size:
        picture = cv2.cvtColor(colour, cv2.COLOR_RGB2BGR)
    elif thumbnail is not None and thumbnail.size:
        picture = thumbnail
    else:
        return b""
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    return jpeg.tobytes() if ok else b""


_CONTACT = 4 * CONTACT_BINS * 2
_GAPS = 2 * GAP_BINS * 2


def _greys_bytes(greys: np.ndarray | None, shape: tuple[int, ...]) -> bytes:
    """Darkest and lightest greys per bin (the frame contact, the gap profile); black to
    white in every bin of ``shape`` when unknown: a contact of content all round, which no
    crossing contradicts, and a profile without a gap line."""
    if greys is None:
        greys = np.zeros(shape, np.uint8)
        greys[..., 1] = 255
    return greys.astype(np.uint8).tobytes()


def encode(points: Keypoints) -> str:
    """The compact payload form: header, frame, then per keypoint x, y (float16), a, b (int8)
    and the 32-byte descriptor, then the colour grid's a, b (int8), then the thumbnail as a
    colour JPEG, then the frame contact (uint8), base64 (about 50 bytes a keypoint, 300 for the
    grid, 4-5 KiB for the thumbnail, 256 bytes for the contact), then the gap profile
    (uint8, 512 bytes)."""
    n = len(points)
    grid = points.grid if points.grid is not None else np.zeros((0, 0, 2), np.float32)
    thumbnail = _thumbnail_bytes(points.thumbnail, points.colour)
    body = b"".join(
        [
            _HEADER.pack(FORMAT, n),
            _FRAME.pack(*points.frame, grid.shape[1], grid.shape[0]),
            points.xy.astype(np.float16).tobytes(),
            _ab_bytes(points.ab),
            points.descriptors.astype(np.uint8).tobytes(),
            _ab_bytes(grid),
            _THUMBNAIL.pack(len(thumbnail)),
            thumbnail,
            _greys_bytes(points.contact, (4, CONTACT_BINS, 2)),
            _greys_bytes(points.gaps, (2, GAP_BINS, 2)),
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
        if version != FORMAT:
            return None
        width, height, columns, rows = _FRAME.unpack_from(raw, _HEADER.size)
        at = _HEADER.size + _FRAME.size
        end = at + n * (4 + 2 + _DESCRIPTOR) + 2 * rows * columns
        (length,) = _THUMBNAIL.unpack_from(raw, end)
    except (ValueError, TypeError, struct.error):
        return None
    size = end + _THUMBNAIL.size + length + _CONTACT
    if len(raw) != size + _GAPS:
        return None
    xy = np.frombuffer(raw, np.float16, 2 * n, at).reshape(n, 2).astype(np.float32)
    at += 4 * n
    ab = np.frombuffer(raw, np.int8, 2 * n, at).reshape(n, 2).astype(np.float32)
    at += 2 * n
    descriptors = np.frombuffer(raw, np.uint8, _DESCRIPTOR * n, at).reshape(n, _DESCRIPTOR)
    at += _DESCRIPTOR * n
    grid = None
    if rows and columns:
        cells = np.frombuffer(raw, np.int8, 2 * rows * columns, at)
        grid = cells.reshape(rows, columns, 2).astype(np.float32)
    thumbnail = colour = None
    if length:
        jpeg = np.frombuffer(raw, np.uint8, length, end + _THUMBNAIL.size)
        picture = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
        if picture is None:
            return None
        if picture.ndim == 3:
            colour = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
            thumbnail = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
        else:
            thumbnail = picture
    contact = np.frombuffer(raw, np.uint8, _CONTACT, end + _THUMBNAIL.size + length)
    contact = contact.reshape(4, CONTACT_BINS, 2)
    gaps = np.frombuffer(raw, np.uint8, _GAPS, size).reshape(2, GAP_BINS, 2)
    return Keypoints(xy, ab, descriptors, (width, height), grid, thumbnail, contact, gaps, colour)


@dataclass(frozen=True)
class Verdict:
    """What verification found for a pair."""

    inliers: int
    score: float  # inliers / the smaller keypoint count
    color_delta: float  # COLOUR_QUANTILE of the coloured inliers' Lab (a, b) distances
    difference: float = 1.0  # :func:`difference` of the thumbnails under the transform
    beyond: float = 1.0  # :func:`beyond`: structure outside the other's frame
    # :func:`difference` at ALIGNED_TOLERANCE under the thumbnails' own alignment (1: not
    # compared, the keypoints settled it; past MAX_ALIGNED_DIFFERENCE, where verify() may
    # stop early, a lower bound)
    aligned: float = 1.0
    # :func:`local_difference` under the refined transform of the route that made the pair
    # near or a variant (1: not compared)
    local: float = 1.0
    # :func:`crossing` under that transform (1: not compared; 0 for a pair turned by
    # lookalike.frames.CROSSING_MAX_TURN or more)
    crossing: float = 1.0
    # :func:`gap_beyond` under the keypoints' (or the alignment's) transform of that route
    # (1: not compared)
    gapped: float = 1.0
    # :func:`shape_difference` under the refined transform of that route (1: not compared;
    # 0 when neither thumbnail has enough sharp edges to tell)
    displaced: float = 1.0
    # :func:`colour_structure` under the keypoints' transform, refined, of a pair whose
    # colours changed (1: not compared)
    reshaped: float = 1.0

    def verified(self, threshold: float, min_inliers: int | None = None) -> bool:
        """Whether one transform explains enough keypoints: the same shot, perhaps in
        another colour."""
        least = MIN_INLIERS if min_inliers is None else min_inliers
        return self.inliers >= least and self.score >= threshold

    def relation(
        self,
        threshold: float,
        min_inliers: int | None = None,
        variant_delta: float | None = None,
        max_difference: float | None = None,
        max_aligned: float | None = None,
        max_local: float | None = None,
        max_crossing: float | None = None,
        max_gapped: float | None = None,
        max_displaced: float | None = None,
        max_reshaped: float | None = None,
    ) -> str | None:
        """``"near"``, ``"variant"`` or None (not the same shot). Neither may have structure
        beyond the other's frame on both sides (:func:`beyond`). A near-duplicate's
        thumbnails must also agree pixel by pixel, under the keypoints' transform or,
        more closely, under their own alignment; a variant's cannot (a recoloured product
        changes its grey levels, unlike a tone edit), so it keeps the keypoints' stricter
        rule of before the pixel test (VARIANT_MIN_SCORE, VARIANT_MIN_INLIERS). Either way a
        near-duplicate may not have strokes of its own on both sides (``local``, at most
        MAX_LOCAL), nor be a cut-out lying on the other as its crop would (``crossing``, at
        most MAX_CROSSING), nor end where the other's ground begins with blobs of its own
        past it (``gapped``, at most MAX_GAPPED), nor have its sharp edges where no one
        similarity puts the other's (``displaced``, at most MAX_DISPLACED). A variant may not
        have colour edges of its own on both sides (``reshaped``, at most MAX_RESHAPED)."""
        most = MAX_DIFFERENCE if max_difference is None else max_difference
        shifted = MAX_DISPLACED if max_displaced is None else max_displaced
        aligned = self.aligned <= (MAX_ALIGNED_DIFFERENCE if max_aligned is None else max_aligned)
        alike = (
            self.local <= (MAX_LOCAL if max_local is None else max_local)
            and (self.crossing <= (MAX_CROSSING if max_crossing is None else max_crossing))
            and self.gapped <= (MAX_GAPPED if max_gapped is None else max_gapped)
            and self.displaced <= shifted
        )
        if not self.verified(threshold, min_inliers) or self.beyond > most:
            return "near" if aligned and alike else None
        delta = VARIANT_COLOR_DELTA if variant_delta is None else variant_delta
        if self.color_delta >= delta:
            strict = self.verified(max(threshold, VARIANT_MIN_SCORE), VARIANT_MIN_INLIERS)
            recoloured = self.reshaped <= (MAX_RESHAPED if max_reshaped is None else max_reshaped)
            return "variant" if strict and recoloured else None
        return "near" if (self.difference <= most or aligned) and alike else None


NO_MATCH = Verdict(0, 0.0, 0.0)
_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)


def verify(
    a: Keypoints, b: Keypoints, *, min_inliers: int = MIN_INLIERS, align: bool | None = None
) -> Verdict:
    """Match ``a``'s descriptors to ``b``'s, keep the matches that one similarity transform
    (scale, rotation, shift: what crop, rescale, rotation and padding do) explains, and
    compare the thumbnails under it; where that does not make the pair near-duplicates,
    compare them under the transform the thumbnails' own pixels give (``aligned``). The
    same answer either way round: the pair is taken in one order whichever is asked (the
    ratio test and RANSAC are not symmetric, and on the demo catalog a green flag was a red
    one's variant while the red one was not the green one's). Keypoint matches of fewer
    than ``min_inliers`` count for nothing, and ``align`` True compares the aligned
    thumbnails whatever the keypoints found (a benchmark asks both, to choose the
    constants)."""
    if not (a.verifiable and b.verifiable):
        return NO_MATCH
    if (len(b), b.descriptors.tobytes()) < (len(a), a.descriptors.tobytes()):
        a, b = b, a
    verdict, transform = _by_keypoints(a, b, min_inliers)
    if (
        transform is not None
        and verdict.color_delta >= VARIANT_COLOR_DELTA
        and verdict.inliers >= (VARIANT_MIN_INLIERS if align is None else min_inliers)
        and a.colour is not None
        and b.colour is not None
    ):
        # Perhaps a variant: the grey tests below do not hold it, its colour edges do.
        verdict = replace(verdict, reshaped=colour_structure(a, b, _refined(a, b, *transform)))
    settled = (
        verdict.inliers >= MIN_INLIERS and max(verdict.difference, verdict.beyond) <= MAX_DIFFERENCE
    ) or verdict.color_delta >= VARIANT_COLOR_DELTA
    if verdict.color_delta >= VARIANT_COLOR_DELTA or not (
        verdict.inliers >= min_inliers and max(verdict.difference, verdict.beyond) <= MAX_DIFFERENCE
    ):
        transform = None  # not near by its keypoints: the aligned route's transform, if any
    if align or (align is None and not settled):
        limit = None if align else MAX_ALIGNED_DIFFERENCE
        aligned, found = _aligned_difference(a, b, limit)
        verdict = replace(verdict, aligned=aligned)
        if transform is None and aligned <= MAX_ALIGNED_DIFFERENCE:
            transform = found
    if transform is not None and a.thumbnail is not None and b.thumbnail is not None:
        warp = _refined(a, b, *transform)
        verdict = replace(
            verdict,
            local=local_difference(a, b, warp),
            crossing=crossing(a, b, warp) if _upright(transform[0]) else 0.0,
            gapped=gap_beyond(a, b, *transform),
        )
        # Step 11 costs the most of these: where steps 8-10 already tell the two apart (no
        # threshold makes them near), the service leaves it (1: not compared); ``align`` (a
        # benchmark, choosing the limits) asks every figure.
        told = (
            verdict.local > MAX_LOCAL
            or verdict.crossing > MAX_CROSSING
            or verdict.gapped > MAX_GAPPED
        )
        if align or not told:
            verdict = replace(verdict, displaced=shape_difference(a, b, warp))
    return verdict


def _refined(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> np.ndarray:
    """The transform ``w = scale z + shift`` (``a``'s frame to ``b``'s) as the 2 x 3 matrix
    of ``a``'s thumbnail pixels to ``b``'s, refined by ECC (lookalike.alignment.refine) where
    it converges."""
    assert a.thumbnail is not None and b.thumbnail is not None
    warp = _warp(a, b, scale, shift)
    refined = alignment.refine(a.thumbnail, b.thumbnail, warp)
    return warp if refined is None else refined


def _upright(scale: complex) -> bool:
    """Whether a transform's rotation (``scale``'s angle) is under CROSSING_MAX_TURN."""
    return bool(abs(np.degrees(np.angle(scale))) < frames.CROSSING_MAX_TURN)


def crossing(a: Keypoints, b: Keypoints, warp: np.ndarray) -> float:
    """Whether one picture is cut out of the other along a line that cuts nothing: under
    ``warp`` (2 x 3, ``a``'s thumbnail pixels to ``b``'s), the share of a side's bins where
    the other picture's content goes on across this one's frame
    (lookalike.frames.unexplained: on its edge row and a few px past it) while this one's
    content touches its frame nowhere near (its stored frame contact), the larger of the two
    ways round and of the sides. A crop's line cuts through what it takes away, so the
    copy's content touches its frame wherever the original's crosses it; a Q's tail crosses
    its O's frame where the O, cut out to its own outline, only touches it at the bowl's
    tangent. 0 when either lacks its contact. verify() reads it only for a transform turned
    by less than lookalike.frames.CROSSING_MAX_TURN (a rotated copy's crop line no longer
    runs along its frame)."""
    assert a.thumbnail is not None and b.thumbnail is not None
    if a.contact is None or b.contact is None:
        return 0.0
    return max(
        frames.unexplained(a.thumbnail, a.contact, b.thumbnail, warp),
        frames.unexplained(b.thumbnail, b.contact, a.thumbnail, cv2.invertAffineTransform(warp)),
    )


def shape_difference(a: Keypoints, b: Keypoints, warp: np.ndarray) -> float:
    """Whether the two pictures' sharp edges lie where one similarity puts them: under
    ``warp`` (2 x 3, ``a``'s thumbnail pixels to ``b``'s, refined by ECC) taken as the
    similarity nearest it, the share of one thumbnail's sharp edges that lie more than
    lookalike.edge_fit.OFFSET px off in the other once a similarity is fitted to them all
    (lookalike.edge_fit.displaced), the smaller of the two ways round. An edit moves a whole
    picture by one similarity; a lowercase x laid on an uppercase X, or a dreidel's nun on
    its gimel, leaves strokes a pixel or two off. 0 when neither thumbnail has enough sharp
    edges on the overlap to tell (a soft photograph)."""
    assert a.thumbnail is not None and b.thumbnail is not None
    assert a.sharp_edges is not None and b.sharp_edges is not None
    size = (a.thumbnail.shape[1], a.thumbnail.shape[0])
    there = edge_fit.similar(warp, size)
    back = cv2.invertAffineTransform(there)
    ways = [
        edge_fit.displaced(a.thumbnail, a.sharp_edges, b.thumbnail, there),
        edge_fit.displaced(b.thumbnail, b.sharp_edges, a.thumbnail, back),
    ]
    found = [share for share in ways if share is not None]
    return min(found) if found else 0.0


def colour_structure(a: Keypoints, b: Keypoints, warp: np.ndarray) -> float:
    """Whether each picture has colour edges the other lacks: under ``warp`` (2 x 3, ``a``'s
    thumbnail pixels to ``b``'s), as :func:`local_difference` but on the colour thumbnails'
    Lab gradient (an edge from COLOUR_EDGE, matched by COLOUR_MATCH within LOCAL_REACH px),
    the smaller way round. A recolour changes which boundaries show in grey (a red and a
    green of one lightness have none) but moves none of them; a cement mixer's drum and a
    tow truck's boom on one chassis, a police car's stripe and its mirrored stamp's, are
    boundaries of their own. 1 when either lacks its colour thumbnail."""
    if a.colour is None or b.colour is None:
        return 1.0
    back = cv2.invertAffineTransform(warp)
    return min(_unmatched_colour(a, b, warp), _unmatched_colour(b, a, back))


def _unmatched_colour(mine: Keypoints, theirs: Keypoints, warp: np.ndarray) -> float:
    """:func:`_unmatched_edges` on the colour thumbnails' Lab gradient."""
    assert mine.colour_edges is not None and theirs.colour is not None
    height, width = mine.colour_edges.shape
    laid, covered = _laid(theirs.colour, warp, (width, height))
    inside = _inside(covered)
    if inside is None:
        return 1.0
    edges = (mine.colour_edges > COLOUR_EDGE) & inside
    found = _colour_gradient(np.clip(laid + 0.5, 0, 255).astype(np.uint8)) > COLOUR_MATCH
    return _densest(edges, found)


def _colour_gradient(rgb: np.ndarray) -> np.ndarray:
    """The Lab gradient's magnitude per px (L 0-100, a and b as they are), each channel
    blurred a little first (the thumbnail's JPEG chroma is coarse)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    total = np.zeros(rgb.shape[:2], np.float32)
    for channel in cv2.split(lab):
        blurred = cv2.GaussianBlur(channel, (0, 0), 0.7)
        total += (
            cv2.Sobel(blurred, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(blurred, cv2.CV_32F, 0, 1) ** 2
        )
    return np.sqrt(total) / 4


def local_difference(a: Keypoints, b: Keypoints, warp: np.ndarray) -> float:
    """Whether each picture holds strokes the other lacks, where it holds most of them:
    under ``warp`` (2 x 3, ``a``'s thumbnail pixels to ``b``'s, refined by ECC,
    lookalike.alignment.refine), each way round, the share of a LOCAL_WINDOW px
    window of one thumbnail taken by its edges (steps of LOCAL_EDGE of its range) with no
    edge of the other (LOCAL_MATCH of its range: a blurred copy's weaker step still counts)
    within LOCAL_REACH px, in the window where that share is largest; the smaller of the
    two ways round. 1 when they do not overlap.

    Structure, not grey levels: a colour-balance edit moves a red region's grey and a blue
    one's apart (no one brightness-and-contrast fit undoes it) but leaves every edge where
    it was. The smaller way round: an overlay (a watermark's text) adds strokes to the copy
    only, while two different items (a coin's other numeral, a dreidel's other letter, a
    polo's collar against a T-shirt's neckline) each have strokes of their own."""
    assert a.thumbnail is not None and b.thumbnail is not None
    back = cv2.invertAffineTransform(warp)
    return min(
        _unmatched_edges(a.thumbnail, b.thumbnail, warp),
        _unmatched_edges(b.thumbnail, a.thumbnail, back),
    )


def _laid(
    theirs: np.ndarray, warp: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``theirs`` laid on a ``size`` (width, height) frame by ``warp`` (2 x 3, that frame's
    pixels to ``theirs``'), as float32, and the mask (uint8) of the frame's pixels it covers."""
    flags = cv2.WARP_INVERSE_MAP
    laid = cv2.warpAffine(theirs.astype(np.float32), warp, size, flags=flags)
    covered = cv2.warpAffine(
        np.ones(theirs.shape[:2], np.uint8),
        warp,
        size,
        flags=flags | cv2.INTER_NEAREST,
        borderValue=0,
    )
    return laid, covered


def _gradient(grey: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)) / 4


def _unmatched_edges(mine: np.ndarray, theirs: np.ndarray, warp: np.ndarray) -> float:
    """The largest share of a LOCAL_WINDOW px window of ``mine`` taken by edges that
    ``theirs``, laid on it by ``warp`` (2 x 3, ``mine``'s pixels to ``theirs``'), has no
    edge near; 1 when they overlap too little."""
    height, width = mine.shape
    laid, covered = _laid(theirs, warp, (width, height))
    inside = _inside(covered)
    if inside is None:
        return 1.0
    grey = mine.astype(np.float32)
    edges = (_gradient(grey) > LOCAL_EDGE * edge_fit.grey_range(grey[inside])) & inside
    found = _gradient(laid) > LOCAL_MATCH * edge_fit.grey_range(laid[inside])
    return _densest(edges, found)


def _inside(covered: np.ndarray) -> np.ndarray | None:
    """Where a frame's edges are compared with the other picture laid on it (``covered``,
    uint8): off the other's frame edge and a margin (a crop's line is an edge of neither
    picture) and off this frame's own; None when that is too little of the frame."""
    inside = cv2.erode(covered, np.ones((7, 7), np.uint8)).astype(bool)
    inside[:3], inside[-3:], inside[:, :3], inside[:, -3:] = False, False, False, False
    return inside if int(inside.sum()) >= _MIN_OVERLAP * inside.size else None


def _densest(edges: np.ndarray, found: np.ndarray) -> float:
    """The largest share of a LOCAL_WINDOW px window taken by ``edges`` with none of
    ``found`` within LOCAL_REACH px."""
    reach = np.ones((2 * LOCAL_REACH + 1, 2 * LOCAL_REACH + 1), np.uint8)
    near = cv2.dilate(found.astype(np.uint8), reach).astype(bool)
    unmatched = (edges & ~near).astype(np.float32)
    window = (LOCAL_WINDOW, LOCAL_WINDOW)
    share = cv2.boxFilter(unmatched, -1, window, normalize=True, borderType=cv2.BORDER_CONSTANT)
    return float(share.max())


def _aligned_difference(
    a: Keypoints, b: Keypoints, limit: float | None
) -> tuple[float, tuple[complex, complex] | None]:
    """:func:`difference` at ALIGNED_TOLERANCE under the transform lookalike.alignment finds
    from the thumbnails, or 1 when it finds none an edit could make (or the two pictures
    have structure beyond each other's frames, :func:`beyond`), with the transform (frame
    to frame) it was compared under. Past ``limit`` it stops at the first figure over it
    (one way round of the difference: about a third of a pair's time on shots of one
    background, which align and differ)."""
    if a.thumbnail is None or b.thumbnail is None:
        return 1.0, None
    assert a.spectra is not None and b.spectra is not None
    found = alignment.align(a.spectra, b.spectra, MAX_ROTATION, ALIGNED_MIN_RESPONSE)
    if found is None:
        return 1.0, None
    # Thumbnail pixels to frame pixels, each side.
    fa = a.thumbnail.shape[1] / max(1, a.frame[0])
    fb = b.thumbnail.shape[1] / max(1, b.frame[0])
    scale, shift = found[0] * fa / fb, found[1] / fb
    if not _plausible(np.array([scale]))[0]:
        return 1.0, None
    transform = (scale, shift)
    one_way = _disagreement(a, b, scale, shift, ALIGNED_TOLERANCE)
    if limit is not None and one_way > limit:
        return one_way, transform
    apart = max(one_way, _disagreement(b, a, 1 / scale, -shift / scale, ALIGNED_TOLERANCE))
    if limit is not None and apart > limit:
        return apart, transform
    return (1.0 if beyond(a, b, scale, shift) > MAX_DIFFERENCE else apart), transform


def _by_keypoints(
    a: Keypoints, b: Keypoints, min_inliers: int
) -> tuple[Verdict, tuple[complex, complex] | None]:
    """The keypoints' verdict, and the transform (frame to frame) it found (None: none)."""
    src, dst = _matches(a, b, min_inliers)
    if len(src) < min_inliers:
        return NO_MATCH, None
    inlier = _consensus(a.xy[src], b.xy[dst])
    count = int(inlier.sum())
    if count < min_inliers:
        return NO_MATCH, None
    ab_a, ab_b = a.ab[src[inlier]], b.ab[dst[inlier]]
    delta = _colour_change(ab_a, ab_b)
    scale, shift = _fit(_complex(a.xy[src[inlier]]), _complex(b.xy[dst[inlier]]))
    apart = outside = 1.0
    if scale != 0:
        if a.grid is not None and b.grid is not None:
            delta = max(
                delta,
                _grid_change(a, b, scale, shift),
                _grid_change(b, a, 1 / scale, -shift / scale),
            )
        apart = difference(a, b, scale, shift)
        outside = beyond(a, b, scale, shift)
    verdict = Verdict(count, count / min(len(a), len(b)), delta, apart, outside)
    return verdict, ((scale, shift) if scale != 0 else None)


def difference(
    a: Keypoints,
    b: Keypoints,
    scale: complex,
    shift: complex,
    tolerance: float = PIXEL_TOLERANCE,
) -> float:
    """How much the two thumbnails disagree under the transform ``w = scale z + shift`` (``a``'s
    frame to ``b``'s): the larger of the two ways round of :func:`_disagreement`; 1 when
    either has no thumbnail."""
    if a.thumbnail is None or b.thumbnail is None:
        return 1.0
    return max(
        _disagreement(a, b, scale, shift, tolerance),
        _disagreement(b, a, 1 / scale, -shift / scale, tolerance),
    )


def beyond(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """How much of the two pictures' structure lies beyond the other's frame, the smaller of
    the two ways round: a crop's copy lies within its original's frame, a padded copy holds
    its original's, a rotation's fill is flat; a b laid on a p by their bowls has its stem
    above the p's frame and the p its stem below the b's. 1 when either has no thumbnail,
    or when one has blobs of its own past a gap beyond the other's frame (:func:`_detached`:
    an a-umlaut's dots beyond an a's frame, which a crop's line would have cut through)."""
    if a.thumbnail is None or b.thumbnail is None:
        return 1.0
    back = 1 / scale, -shift / scale
    if max(_detached(a, b, scale, shift), _detached(b, a, *back)) > MAX_DETACHED:
        return 1.0
    return min(_structure_beyond(a, b, scale, shift), _structure_beyond(b, a, *back))


def _edges(thumbnail: np.ndarray) -> np.ndarray:
    """A thumbnail's edges: grey steps of PIXEL_TOLERANCE of its range (its own border
    left out)."""
    grey = thumbnail.astype(np.float32)
    edges = _gradient(grey) > PIXEL_TOLERANCE * edge_fit.grey_range(grey)
    edges[[0, -1], :] = False
    edges[:, [0, -1]] = False
    return edges


def _frame_on(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> np.ndarray:
    """Where the transform lays ``b``'s frame on ``a``'s thumbnail (uint8, 1 inside)."""
    assert a.thumbnail is not None and b.thumbnail is not None
    height, width = a.thumbnail.shape
    return cv2.warpAffine(
        np.ones(b.thumbnail.shape, np.uint8),
        _warp(a, b, scale, shift),
        (width, height),
        flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST,
        borderValue=0,
    )


def _around(frame: np.ndarray, pixels: int) -> np.ndarray:
    return cv2.dilate(frame, np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)).astype(bool)


def _structure_beyond(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """The share of ``a``'s edges that the transform lays more than _MARGIN px (of the
    thumbnail) outside ``b``'s frame."""
    edges = a.edges
    assert edges is not None
    total = int(edges.sum())
    if total == 0:
        return 0.0
    near = _around(_frame_on(a, b, scale, shift), _MARGIN)
    return float((edges & ~near).sum()) / total


def _detached(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """The share of ``a``'s edges in blobs (8-connected) wholly beyond ``b``'s frame laid on
    ``a``, when a gap of _DETACHED_GAP px just past the frame holds (almost) none of them;
    0 when the edges go on past the frame, as a crop's do."""
    edges = a.edges
    assert edges is not None
    total = int(edges.sum())
    if total == 0:
        return 0.0
    frame = _frame_on(a, b, scale, shift)
    touching = _around(frame, _DETACHED_MARGIN)
    gap = _around(frame, _DETACHED_MARGIN + _DETACHED_GAP) & ~touching
    if (edges & gap).sum() > 0.01 * total:
        return 0.0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        edges.astype(np.uint8), connectivity=8
    )
    joined = np.zeros(count, bool)
    joined[np.unique(labels[edges & touching])] = True
    joined[0] = True  # the background label
    return float(stats[~joined, cv2.CC_STAT_AREA].sum()) / total


def gap_beyond(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """Whether one picture ends where the other's ground begins, the other going on past
    it in blobs of its own: :func:`_gapped` (``w = scale z + shift``, ``a``'s frame to
    ``b``'s), the larger of the two ways round. The gap rule of :func:`beyond` reads a
    band of the 128 px thumbnail; an umlaut's dots and a tilde stand 3-5 px from a 139 px
    letter stamp, 2-3 px of the thumbnail, which that band cannot tell from touching."""
    return max(_gapped(a, b, scale, shift), _gapped(b, a, 1 / scale, -shift / scale))


def _gapped(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """:func:`_detached` at the pictures' own resolution: the share of ``a``'s edges beyond
    a gap line of ``a`` (a plain row or column right across it, its stored gap profile)
    that lies just past a side of ``b``'s frame laid on ``a`` (within GAP_SLACK bins of it,
    or up to GAP_REACH bins beyond), where the gap's grey is ``a``'s ground (:func:`_grounded`)
    and ``b``'s edge row holds it too: ``b`` ends in ``a``'s ground, and ``a`` goes on past
    it in blobs of its own (an umlaut's dots, a tilde). A crop's line cuts through what it
    takes away, so no gap lies at it. 0 when either lacks the data, or when the transform
    turns by lookalike.frames.CROSSING_MAX_TURN or more."""
    edges = a.edges
    if edges is None or a.gaps is None or a.contact is None or b.contact is None:
        return 0.0
    if not _upright(scale):
        return 0.0
    total = int(edges.sum())
    if total == 0:
        return 0.0
    # b's frame corners on a's frame: z = (w - shift) / scale.
    width, height = b.frame
    corners = (np.array([0, width, 1j * height, width + 1j * height]) - shift) / scale
    a_width, a_height = max(1, a.frame[0]), max(1, a.frame[1])
    rows, columns = edges.shape
    worst = 0.0
    # (contact side, gap axis, b's edge along that axis as a share of a's, outward +1/-1)
    sides = [
        (0, 0, float(corners[:2].imag.mean()) / a_height, -1),
        (1, 0, float(corners[2:].imag.mean()) / a_height, 1),
        (2, 1, float(corners[::2].real.mean()) / a_width, -1),
        (3, 1, float(corners[1::2].real.mean()) / a_width, 1),
    ]
    for side, axis, at, outward in sides:
        edge = at * GAP_BINS
        if edge < GAP_REACH or edge > GAP_BINS - GAP_REACH:
            continue  # b's side lies at a's own: nothing beyond it
        nearest = int(np.floor(edge))
        found = None
        for k in range(nearest - outward * GAP_SLACK, nearest + outward * (GAP_REACH + 1), outward):
            if not 0 <= k < GAP_BINS:
                break
            darkest, lightest = (float(v) for v in a.gaps[axis, k])
            if lightest - darkest <= GAP_LEVELS:
                found = k, (darkest + lightest) / 2
                break
        if found is None:
            continue
        k, ground = found
        if not (_holds(b.contact[side], ground).any() and _grounded(a, ground)):
            continue
        # a's edges wholly beyond the gap line, on its thumbnail, GAP_MARGIN px past it (an
        # edge of what ends at the gap spreads over a pixel or two of the thumbnail).
        across = rows if axis == 0 else columns
        if outward < 0:
            limit = max(0, int(np.floor(k * across / GAP_BINS)) - GAP_MARGIN)
            share = edges[:limit].sum() if axis == 0 else edges[:, :limit].sum()
        else:
            limit = int(np.ceil((k + 1) * across / GAP_BINS)) + GAP_MARGIN
            share = edges[limit:].sum() if axis == 0 else edges[:, limit:].sum()
        worst = max(worst, float(share) / total)
    return worst


def _holds(contact: np.ndarray, grey: float) -> np.ndarray:
    """Which bins of a frame contact (``(bins, 2)``: darkest, lightest) hold ``grey``, within
    GAP_LEVELS."""
    touch = contact.astype(np.float32)
    return (touch[:, 0] - GAP_LEVELS <= grey) & (touch[:, 1] + GAP_LEVELS >= grey)


def _grounded(a: Keypoints, grey: float) -> bool:
    """Whether ``grey`` is ``a``'s ground: held by GROUND_SHARE or more of the bins of its frame
    contact, all four sides together (a stamp's paper, not a stripe's colour)."""
    assert a.contact is not None
    return bool(_holds(a.contact.reshape(-1, 2), grey).mean() >= GROUND_SHARE)


def _warp(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> np.ndarray:
    """The 2 x 3 matrix taking ``a``'s thumbnail pixels to ``b``'s under the transform."""
    assert a.thumbnail is not None and b.thumbnail is not None
    fa = a.thumbnail.shape[1] / max(1, a.frame[0])
    fb = b.thumbnail.shape[1] / max(1, b.frame[0])
    m = scale * fb / fa
    t = shift * fb
    return np.array([[m.real, -m.imag, t.real], [m.imag, m.real, t.imag]], np.float64)


def _disagreement(
    a: Keypoints, b: Keypoints, scale: complex, shift: complex, tolerance: float
) -> float:
    """The share of ``a``'s thumbnail, where ``b``'s covers it, that ``b``'s (warped by the
    transform, its brightness and contrast fitted by least squares) misses by more than
    ``tolerance`` of ``a``'s range, in blobs that survive an opening of OPENING px; as a
    share of the content there (pixels off the background's grey in either picture), so
    that a Q's tail counts as much on a white page as on a busy photo."""
    assert a.thumbnail is not None and b.thumbnail is not None
    mine, theirs = a.thumbnail, b.thumbnail
    warp = _warp(a, b, scale, shift)
    height, width = mine.shape
    laid, covered = _laid(theirs, warp, (width, height))
    covered[[0, -1], :] = 0
    covered[:, [0, -1]] = 0
    inside = cv2.erode(covered, np.ones((3, 3), np.uint8)).astype(bool)
    area = int(inside.sum())
    if area < _MIN_OVERLAP * mine.size:
        return 1.0
    x, y = laid[inside], mine[inside].astype(np.float32)
    xc = x - x.mean()
    spread = float(xc @ xc)
    gain = float(xc @ (y - y.mean())) / spread if spread > 0 else 0.0
    if gain <= 0:
        return 1.0
    fitted = gain * laid + (y.mean() - gain * x.mean())
    low, high = np.percentile(y, [2, 98])
    tolerance *= max(30.0, float(high - low))
    grey = mine.astype(np.float32)
    apart = ((np.abs(grey - fitted) > tolerance) & inside).astype(np.uint8)
    apart = cv2.morphologyEx(apart, cv2.MORPH_OPEN, np.ones((OPENING, OPENING), np.uint8))
    # What either picture shows off its background (its median grey): a letter's strokes, a
    # product; at least _MIN_CONTENT of the overlap.
    ground = float(np.median(y))
    shown = (np.abs(grey - ground) > tolerance) | (np.abs(fitted - ground) > tolerance)
    content = max(float((shown & inside).sum()), _MIN_CONTENT * area)
    return float(apart.sum()) / content


def _colour_change(ab_a: np.ndarray, ab_b: np.ndarray) -> float:
    """COLOUR_QUANTILE of the Lab (a, b) distances between paired colours where either has
    some colour; 0 when fewer than MIN_COLOURED do (colour cannot tell)."""
    coloured = np.maximum(np.hypot(*ab_a.T), np.hypot(*ab_b.T)) >= CHROMA
    if int(coloured.sum()) < MIN_COLOURED:
        return 0.0
    return float(np.percentile(np.hypot(*(ab_a[coloured] - ab_b[coloured]).T), COLOUR_QUANTILE))


def _grid_change(a: Keypoints, b: Keypoints, scale: complex, shift: complex) -> float:
    """The colour change between ``a``'s grid cells and ``b``'s cells under them, the
    transform ``w = scale z + shift`` taking ``a``'s frame to ``b``'s; only cells that land
    a cell or more inside ``b``'s frame (edge cells mix in padding and borders)."""
    assert a.grid is not None and b.grid is not None
    rows, columns = a.grid.shape[:2]
    ys, xs = np.mgrid[0:rows, 0:columns]
    w = scale * ((xs + 0.5) * a.frame[0] / columns + 1j * (ys + 0.5) * a.frame[1] / rows) + shift
    b_rows, b_columns = b.grid.shape[:2]
    cx, cy = w.real * b_columns / max(1, b.frame[0]), w.imag * b_rows / max(1, b.frame[1])
    inside = (cx >= 1) & (cx < b_columns - 1) & (cy >= 1) & (cy < b_rows - 1)
    if not inside.any():
        return 0.0
    under = b.grid[cy[inside].astype(int), cx[inside].astype(int)]
    return _colour_change(a.grid[inside], under)


def _complex(xy: np.ndarray) -> np.ndarray:
    return xy[:, 0].astype(np.float64) + 1j * xy[:, 1]


def _fit(z: np.ndarray, w: np.ndarray) -> tuple[complex, complex]:
    """The least-squares similarity transform ``w = a z + b`` (a = 0 when z is one point)."""
    zc = z - z.mean()
    norm = float(np.real(np.conj(zc) @ zc))
    if norm == 0:
        return 0j, 0j
    a = complex((np.conj(zc) @ (w - w.mean())) / norm)
    return a, complex(w.mean() - a * z.mean())


def _matches(a: Keypoints, b: Keypoints, least: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of one-to-one matches: ``b``'s nearest to each of ``a``'s descriptors, clearly
    nearer than the second (Lowe's ratio test), and ``a``'s nearest to it in return."""
    forward = [
        p[0]
        for p in _MATCHER.knnMatch(a.descriptors, b.descriptors, k=2)
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]
    if len(forward) < least:
        # Most candidates end here: the backward search is not needed.
        return np.zeros(0, int), np.zeros(0, int)
    # The backward search for the matched descriptors of b alone (each one's nearest in a is
    # found the same way whatever else is searched), not all of them.
    matched = np.unique([m.trainIdx for m in forward])
    backward = {
        int(matched[m[0].queryIdx]): m[0].trainIdx
        for m in _MATCHER.knnMatch(b.descriptors[matched], a.descriptors, k=1)
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
    z, w = _complex(p), _complex(q)
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
    a2, b2 = _fit(z[mask], w[mask])
    if a2 != 0 and _plausible(np.array([a2]))[0]:
        refined = np.abs(a2 * z + b2 - w) <= RANSAC_PIXELS
        if refined.sum() >= mask.sum():
            mask = refined
    return mask
