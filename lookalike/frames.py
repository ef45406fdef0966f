"""Where a picture's content meets its frame: what tells a cut-out from a crop of a longer one.

A letter cut out to its own outline (a stamp on a transparent ground, flattened onto white)
can *be*, pixel for pixel, a longer letter cropped to its frame: an O is a Q without its
tail, an n an h without its ascender, and every pixel test of lookalike/verify.py agrees.
A crop's line cuts through what it takes away, so a cropped copy's content touches its frame
wherever the original's goes on past it; a cut-out meets its frame only at tangents. At
ingest each picture's frame contact is kept (:func:`frame_contact`, at the decoded
picture's own resolution: the 128 px thumbnail blurs a tangent and a cut alike), and a
verified pair's other thumbnail is read along this picture's frame (:func:`unexplained`).
Each picture's gap lines are kept too (:func:`gap_profile`: which rows and columns of plain
ground run right across it), for lookalike.verify.gap_beyond: an umlaut's dots stand past a
gap of ground that the thumbnail blurs shut.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Per side, CONTACT_BINS bins along it, the darkest and lightest grey of its outermost row of
# pixels there (:func:`frame_contact`).
CONTACT_BINS = 32
# A picture laid on the other (:func:`unexplained`): where the other's thumbnail, on this
# one's edge row and CROSSING_REACH px (of the thumbnail) past it, is off by more than
# CROSSING_LEVELS grey levels from every grey this one's edge holds within CROSSING_SLACK
# bins (and past it, off the band's median: not a padding's flat border), the other's
# content goes on across a frame this one's content does not touch there. The CROSSING_ENDS
# bins at either end of a side are left out (and as many more as a rotation's fill takes).
# A near-duplicate has at most lookalike.verify.MAX_CROSSING of a side's bins so (the tune
# half's choice, docs/indexer.md). The levels are absolute, ink against paper: a tone edit
# moves a low-contrast picture's greys by more than a share of its range would allow.
CROSSING_REACH = 4
CROSSING_SLACK = 2
CROSSING_ENDS = 3
CROSSING_LEVELS = 96.0
# A pair laid on each other turned by this many degrees or more is not read: a rotated copy's
# crop line no longer runs along its frame, a wedge of fill lies between (up to the side's
# length times the rotation's tangent deep), and the copy's edge row shows the fill where
# the original's content goes on. The least rotation the evaluation set's edits make; every
# positive of the set that read a crossing was turned by 1.98 degrees or more (its
# keypoints' transform); the demo's O ~ Q pairs by 0.1, h ~ n by 1.6.
CROSSING_MAX_TURN = 2.0
# Per axis (rows top to bottom, columns left to right), GAP_BINS bins across the picture, the
# darkest and lightest grey of the band of rows (columns) in each (:func:`gap_profile`): where
# a row of plain ground runs right across the picture. Read at the picture's own resolution
# (at most lookalike.verify.SIDE): an umlaut's dots stand 3-5 px from a 139 px letter stamp,
# which the 128 px thumbnail blurs into its letter.
GAP_BINS = 128


def frame_contact(image: Image.Image) -> np.ndarray:
    """Where the picture's content can touch its frame, at the picture's own resolution:
    (4, CONTACT_BINS, 2) uint8, per side (top, bottom left to right; left, right top to
    bottom) and bin along it the darkest and the lightest grey of its outermost row of
    pixels there. Which of them is content is told at verification, against the other
    picture: a crop through a filled letter has more ink than paper on its border, so no
    ground is guessed here. A photo's border is content all round; a cut-out (a stamp
    flattened onto white, a product on a plain ground tight to its frame) touches it at a
    few tangent points, and a crop of one wherever the crop's line cuts through it."""
    width, height = image.size
    # The four rows alone: a 12 MP photo's pixels are not converted for them.
    boxes = [(0, 0, width, 1), (0, height - 1, width, height)]
    boxes += [(0, 0, 1, height), (width - 1, 0, width, height)]
    contact = np.zeros((4, CONTACT_BINS, 2), np.uint8)
    for k, box in enumerate(boxes):
        row = np.asarray(image.crop(box).convert("L")).reshape(-1)
        contact[k] = _binned(row, row, CONTACT_BINS)
    return contact


def gap_profile(grey: np.ndarray) -> np.ndarray:
    """Where a plain row or column runs right across the picture (``grey``, 2-D uint8):
    (2, GAP_BINS, 2) uint8, per axis (rows top to bottom, columns left to right) and bin
    along it the darkest and lightest grey of the band of whole rows (columns) in it. A
    bin whose two greys agree is a gap line: nothing crosses it, so what lies beyond it is
    a blob of its own (an umlaut's dots, a tilde). Which grey is the ground is told at
    verification, against the other picture's frame contact."""
    profile = np.zeros((2, GAP_BINS, 2), np.uint8)
    profile[0] = _binned(grey.min(axis=1), grey.max(axis=1), GAP_BINS)
    profile[1] = _binned(grey.min(axis=0), grey.max(axis=0), GAP_BINS)
    return profile


def _binned(darkest: np.ndarray, lightest: np.ndarray, bins: int) -> np.ndarray:
    """(bins, 2): the least of ``darkest`` and the most of ``lightest`` over each of ``bins``
    equal runs along them. A bin of an array shorter than ``bins`` is one element, as often
    as it takes (reduceat reads a single element where the next start is not past this one)."""
    starts = np.arange(bins) * len(darkest) // bins
    return np.stack(
        [np.minimum.reduceat(darkest, starts), np.maximum.reduceat(lightest, starts)], axis=-1
    )


def unexplained(
    thumbnail: np.ndarray, contact: np.ndarray, theirs: np.ndarray, warp: np.ndarray
) -> float:
    """The largest share of one of a picture's sides' bins (its ``thumbnail`` and its
    :func:`frame_contact` ``contact``) where ``theirs`` (the other picture's thumbnail, laid
    on it by ``warp``, 2 x 3, this thumbnail's pixels to ``theirs``') shows, on this
    picture's edge row and CROSSING_REACH px past it both, a grey that this picture's
    outermost row holds nowhere near (its darkest to its lightest grey within CROSSING_SLACK
    bins, widened by CROSSING_LEVELS), and past it a grey off that band's median: ink going
    on across a frame edge of paper. No ground is guessed: a crop's border is the
    original's row at its line, whatever is ink there."""
    height, width = thumbnail.shape
    t_height, t_width = theirs.shape
    grey = theirs.astype(np.float32)
    tolerance = CROSSING_LEVELS
    per_bin = 4
    along = (np.arange(per_bin * CONTACT_BINS) + 0.5) / (per_bin * CONTACT_BINS)
    bins = np.arange(per_bin * CONTACT_BINS) // per_bin
    # A rotated copy's corners are its fill, as far along each side as the rotation moves
    # the other side's length: those bins are left out too.
    turned = abs(float(warp[1, 0]) / max(1e-9, float(np.hypot(warp[0, 0], warp[1, 0]))))
    worst = 0.0
    for side in range(4):
        length, across = (width, height) if side < 2 else (height, width)
        skip = CROSSING_ENDS + int(np.ceil(CONTACT_BINS * across * turned / length))
        ends = np.zeros(CONTACT_BINS, bool)
        ends[skip : CONTACT_BINS - skip] = True
        darkest, lightest = contact[side].astype(np.float32).T
        # The hull of the greys within CROSSING_SLACK bins of each bin.
        window = 2 * CROSSING_SLACK + 1
        low = np.pad(darkest, CROSSING_SLACK, mode="edge")
        high = np.pad(lightest, CROSSING_SLACK, mode="edge")
        low = np.lib.stride_tricks.sliding_window_view(low, window).min(axis=1) - tolerance
        high = np.lib.stride_tricks.sliding_window_view(high, window).max(axis=1) + tolerance
        # Their grey on this picture's edge row and CROSSING_REACH px past it, where both
        # lie within their thumbnail.
        rows = []
        for d in (0, CROSSING_REACH):
            if side < 2:
                x = along * width - 0.5
                y = np.full_like(x, -d if side == 0 else height - 1 + d)
            else:
                y = along * height - 0.5
                x = np.full_like(y, -d if side == 2 else width - 1 + d)
            u = warp[0, 0] * x + warp[0, 1] * y + warp[0, 2]
            v = warp[1, 0] * x + warp[1, 1] * y + warp[1, 2]
            rows.append((u, v))
        inside = np.ones(len(along), bool)
        for u, v in rows:
            inside &= (u >= 1) & (u <= t_width - 2) & (v >= 1) & (v <= t_height - 2)
        if not inside.any():
            continue
        on, past = (
            grey[np.round(v[inside]).astype(int), np.round(u[inside]).astype(int)] for u, v in rows
        )
        where = bins[inside]
        # Unlike this edge on it and past it both: what goes on across the frame. And unlike
        # the band past it: a padding's border or a rotation's fill is a flat band there,
        # which no crop's line has cut.
        odd = (on < low[where]) | (on > high[where])
        odd &= (past < low[where]) | (past > high[where])
        odd &= np.abs(past - np.median(past)) > tolerance
        found = np.zeros(CONTACT_BINS, bool)
        found[where[odd]] = True
        worst = max(worst, float((found & ends).sum()) / CONTACT_BINS)
    return worst
