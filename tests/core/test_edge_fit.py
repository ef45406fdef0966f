"""lookalike.edge_fit: a thumbnail's sharp edges against another's, once a similarity is
fitted to them. A copy moved by any similarity has none displaced; a drawing with one part
moved by two pixels has that part's edges displaced; a soft picture has no sharp edges."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lookalike import edge_fit

SIZE = (128, 112)  # width, height: a thumbnail's


def drawing(mark_at: int = 70) -> np.ndarray:
    """A flat drawing (filled shapes, sharp edges) with a small mark whose left edge is at
    ``mark_at`` px."""
    picture = np.full((SIZE[1], SIZE[0]), 235, np.uint8)
    cv2.rectangle(picture, (14, 12), (60, 96), 40, -1)
    cv2.circle(picture, (92, 36), 20, 120, -1)
    cv2.fillPoly(picture, [np.array([[20, 104], [60, 104], [40, 70]], np.int32)], 180)
    cv2.rectangle(picture, (mark_at, 70), (mark_at + 22, 98), 20, -1)
    return picture


def displaced(mine: np.ndarray, theirs: np.ndarray, warp: np.ndarray) -> float | None:
    return edge_fit.displaced(mine, edge_fit.sharp_edges(mine), theirs, warp)


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """The 2 x 3 map of a picture's pixels to its copy's."""
    turn = np.radians(degrees)
    a, b = scale * np.cos(turn), scale * np.sin(turn)
    return np.array([[a, -b, shift[0]], [b, a, shift[1]]])


def copy_under(picture: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """``picture`` moved by ``warp`` (its pixels to the copy's), as an edit would."""
    return cv2.warpAffine(picture, warp, SIZE, flags=cv2.INTER_AREA, borderValue=235)


@pytest.mark.parametrize(
    "scale, degrees, shift",
    [(1.0, 0.0, (0.0, 0.0)), (0.9, 0.0, (5.3, -2.6)), (1.05, 4.0, (-3.0, 2.0))],
)
def test_a_copy_moved_by_a_similarity_has_no_edge_displaced(
    scale: float, degrees: float, shift: tuple[float, float]
) -> None:
    original = drawing()
    warp = similarity(scale, degrees, shift)
    copy = copy_under(original, warp)
    # Given a transform a pixel off, as a keypoint fit leaves it: the fit finds the rest.
    rough = warp + np.array([[0.0, 0.0, 0.8], [0.0, 0.0, -0.6]])
    share = displaced(original, copy, rough)
    assert share is not None and share <= 0.005, share


def test_a_part_moved_by_two_pixels_has_its_edges_displaced() -> None:
    original, other = drawing(70), drawing(72)
    share = displaced(original, other, similarity(1.0, 0.0, (0.0, 0.0)))
    # The mark's left and right sides (two of its four, and most of its corners) are off.
    assert share is not None and 0.02 < share < 0.2, share


def test_a_stretched_copy_is_displaced_and_the_nearest_similarity_ignores_the_stretch() -> None:
    original = drawing()
    stretch = np.array([[1.0, 0.0, 0.0], [0.0, 1.06, -3.0]])  # an affine no edit makes
    stretched = copy_under(original, stretch)
    share = displaced(original, stretched, edge_fit.similar(stretch, SIZE))
    assert share is not None and share > 0.1, share
    nearest = edge_fit.similar(stretch, SIZE)
    assert nearest[0, 0] == pytest.approx(nearest[1, 1]) and nearest[0, 1] == -nearest[1, 0]


def test_a_soft_picture_has_nothing_to_tell() -> None:
    soft = cv2.GaussianBlur(drawing(), (0, 0), 6)
    assert len(edge_fit.sharp_edges(soft)) < edge_fit.MIN_EDGES
    assert displaced(soft, soft, similarity(1.0, 0.0, (0.0, 0.0))) is None
