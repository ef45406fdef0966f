"""Whether two thumbnails' sharp edges lie where one similarity transform puts them, to a
fraction of a pixel (lookalike/verify.py, step 11).

An edited copy is its original moved by one similarity transform (crop, rescale, rotation,
padding: scale, turn and shift), so every edge of the one lies on an edge of the other once
the transform is known well enough. Two drawings of one design do not: a lowercase x is not
an uppercase X cropped (its strokes are steeper by a pixel at 128 px), a dreidel's nun is its
gimel moved two pixels with a foot taken off, the sign for O is the sign for 0 redrawn. Every
coarser test of lookalike/verify.py lets these through: the blobs they differ by are one or
two pixels wide, under the pixel comparison's opening, and within the local comparison's
reach.

So each sharp edge pixel of one thumbnail (:func:`sharp_edges`) is looked for in the other,
laid on it by the pair's transform, along the edge's normal (:data:`REACH` px each way, to a
fraction of a pixel); a similarity is fitted to these offsets by least squares with outliers
dropped and the other laid again under it (:data:`ROUNDS` times), and :func:`displaced` is
the share of the edges found that still lie more than :data:`OFFSET` px from where the
similarity puts them.

Sharp edges only (a step of the grey within about two pixels): a soft outline (an upscaled
28 px Fashion-MNIST item) moves its steepest point under a tone edit that clips, and the
search would read that as a shape. A picture with fewer than :data:`MIN_EDGES` sharp edges
on the other's overlap says nothing (None). Constants chosen by measurement:
benchmarks/duplicate_threshold.py, docs/indexer.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIGMA = 0.8  # px of Gaussian blur before the gradients (a thumbnail's JPEG noise)
EDGE = 0.15  # an edge's gradient: at least this share of the picture's grey range per px
SHARP = 0.3  # and this share of the grey step around it (5 x 5 px): a sharp edge
REACH = 3.0  # px searched along each edge's normal in the other picture, each way
STEP = 0.5  # px between the positions searched (refined between them by a parabola)
FOUND = 0.05  # the other's gradient across the normal, of its range per px: an edge is there
ROUNDS = 2  # fits of the similarity to the offsets, each followed by a new search
OUTLIER = 1.0  # px: offsets further than this (or 3 medians) from a fit are left out of the next
OFFSET = 1.0  # px: an edge further than this from where the fitted similarity puts it moved
MIN_EDGES = 20  # fewer sharp edges found on the overlap: nothing to tell
_MARGIN = 4  # px of the other's frame (and of this thumbnail's border) not searched

_STEPS = np.arange(-REACH, REACH + STEP / 2, STEP)


@dataclass(frozen=True)
class Edges:
    """A thumbnail's sharp edge pixels: positions (x, y) and unit normals (the gradient's
    direction, dark to light), made once per thumbnail by :func:`sharp_edges`."""

    x: np.ndarray
    y: np.ndarray
    nx: np.ndarray
    ny: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, keep: np.ndarray) -> Edges:
        return Edges(self.x[keep], self.y[keep], self.nx[keep], self.ny[keep])


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blurred = cv2.GaussianBlur(grey, (0, 0), SIGMA)
    return cv2.Sobel(blurred, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(blurred, cv2.CV_32F, 0, 1) / 8


def grey_range(values: np.ndarray) -> float:
    """A picture's grey range (2nd to 98th percentile), at least 30 levels (lookalike/verify.py
    scales its pixel tests by it too)."""
    low, high = np.percentile(values, [2, 98])
    return max(30.0, float(high - low))


def _at(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` read at the points (x, y) (arrays of one shape, 1 or 2 dimensions),
    bilinearly."""
    if x.size == 0:
        return np.zeros(x.shape, np.float32)
    mapped = cv2.remap(
        image,
        x.astype(np.float32).reshape(-1, x.shape[-1]),
        y.astype(np.float32).reshape(-1, x.shape[-1]),
        cv2.INTER_LINEAR,
    )
    return np.asarray(mapped).reshape(x.shape)


def sharp_edges(thumbnail: np.ndarray) -> Edges:
    """The thumbnail's sharp edge pixels: a gradient of EDGE of its grey range or more, and
    SHARP of the grey step around it, that is the largest along its normal."""
    grey = thumbnail.astype(np.float32)
    gx, gy = _gradients(grey)
    magnitude = np.hypot(gx, gy)
    square = np.ones((5, 5), np.uint8)
    step = cv2.dilate(grey, square) - cv2.erode(grey, square)
    y, x = np.nonzero((magnitude > EDGE * grey_range(grey)) & (magnitude > SHARP * step))
    strength = magnitude[y, x]
    nx, ny = gx[y, x] / strength, gy[y, x] / strength
    ridge = (strength >= _at(magnitude, x + nx, y + ny)) & (
        strength >= _at(magnitude, x - nx, y - ny)
    )
    return Edges(x, y, nx, ny).take(ridge)


def _offsets(
    edges: Edges, theirs: np.ndarray, warp: np.ndarray, size: tuple[int, int]
) -> tuple[Edges, np.ndarray]:
    """The edges of a ``size`` (width, height) thumbnail that ``theirs``, laid on it by
    ``warp`` (2 x 3, this thumbnail's pixels to theirs), has an edge of the same sign near,
    with how far along the normal that edge lies (px)."""
    width, height = size
    flags = cv2.WARP_INVERSE_MAP
    laid = cv2.warpAffine(theirs.astype(np.float32), warp, size, flags=flags | cv2.INTER_LINEAR)
    covered = cv2.warpAffine(
        np.ones(theirs.shape, np.uint8), warp, size, flags=flags | cv2.INTER_NEAREST
    )
    square = np.ones((2 * _MARGIN + 1, 2 * _MARGIN + 1), np.uint8)
    inside = cv2.erode(covered, square, borderValue=0).astype(bool)
    inside[:_MARGIN], inside[height - _MARGIN :] = False, False
    inside[:, :_MARGIN], inside[:, width - _MARGIN :] = False, False
    edges = edges.take(inside[edges.y, edges.x])
    if len(edges) < MIN_EDGES:
        return edges, np.zeros(len(edges))
    gx, gy = _gradients(laid)
    # Every position searched, one row per step along the normal, read in one call.
    x = edges.x + _STEPS[:, None] * edges.nx
    y = edges.y + _STEPS[:, None] * edges.ny
    across = _at(gx, x, y) * edges.nx + _at(gy, x, y) * edges.ny
    rows = np.arange(len(edges))
    best = np.argmax(across, axis=0)
    found = (across[best, rows] > FOUND * grey_range(laid[inside])) & (best > 0)
    found &= best < len(_STEPS) - 1
    peak = np.clip(best, 1, len(_STEPS) - 2)
    before, at, after = across[peak - 1, rows], across[peak, rows], across[peak + 1, rows]
    curve = before - 2 * at + after
    vertex = np.where(curve < 0, 0.5 * (before - after) / np.where(curve < 0, curve, -1.0), 0.0)
    offset = _STEPS[peak] + STEP * np.clip(vertex, -1.0, 1.0)
    return edges.take(found), offset[found]


def _similarity(edges: Edges, offset: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The similarity (``[a, b, tx, ty]``: the field ``[[a, -b], [b, a]] (p - centre) + t``)
    whose component along each edge's normal best fits its offset, with the offsets it
    leaves OUTLIER px or three medians off dropped and fitted again."""
    dx, dy = edges.x - centre[0], edges.y - centre[1]
    design = np.stack(
        [edges.nx * dx + edges.ny * dy, edges.ny * dx - edges.nx * dy, edges.nx, edges.ny], 1
    )
    use = np.ones(len(offset), bool)
    fitted = np.zeros(4)
    for _ in range(3):
        if use.sum() < MIN_EDGES:
            break
        fitted, *_ = np.linalg.lstsq(design[use], offset[use], rcond=None)
        left = np.abs(offset - design @ fitted)
        use = left < max(OUTLIER, 3 * float(np.median(left)))
    return np.asarray(fitted)


def _moved(warp: np.ndarray, fitted: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """``warp`` (this thumbnail's pixels to the other's) composed with the fitted field: where
    the other's edges were found, this thumbnail's now map."""
    a, b, tx, ty = fitted
    field = np.array([[a, -b], [b, a]])
    shift = np.array([tx, ty]) - field @ np.array(centre)
    matrix = warp[:, :2]
    return np.hstack([matrix @ (np.eye(2) + field), (warp[:, 2] + matrix @ shift)[:, None]])


def displaced(mine: np.ndarray, edges: Edges, theirs: np.ndarray, warp: np.ndarray) -> float | None:
    """The share of ``mine``'s sharp ``edges`` (:func:`sharp_edges`) found in ``theirs`` (laid
    on it by ``warp``, 2 x 3, ``mine``'s pixels to ``theirs``', a similarity) that lie more
    than OFFSET px from where the similarity refined on them puts them; None when fewer than
    MIN_EDGES are found."""
    size = (mine.shape[1], mine.shape[0])
    centre = (size[0] / 2, size[1] / 2)
    for _ in range(ROUNDS):
        found, offset = _offsets(edges, theirs, warp, size)
        if len(found) < MIN_EDGES:
            return None
        warp = _moved(warp, _similarity(found, offset, centre), centre)
    found, offset = _offsets(edges, theirs, warp, size)
    if len(found) < MIN_EDGES:
        return None
    return float(np.mean(np.abs(offset) > OFFSET))


def similar(warp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The similarity nearest the affine ``warp`` (2 x 3; ECC refines an affine, which can
    absorb a stretch that tells two drawings apart), agreeing with it at the centre of the
    ``size`` (width, height) frame it maps from."""
    matrix, shift = warp[:, :2], warp[:, 2]
    a = (matrix[0, 0] + matrix[1, 1]) / 2
    b = (matrix[1, 0] - matrix[0, 1]) / 2
    nearest = np.array([[a, -b], [b, a]])
    centre = np.array([size[0] / 2, size[1] / 2])
    return np.hstack([nearest, (shift + (matrix - nearest) @ centre)[:, None]])
