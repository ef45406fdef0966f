"""The keypoints an item's near-duplicate test needs (lookalike/verify.py), found once at
ingest so that a ``/duplicates`` query decodes no image.

ORB on the image scaled to a longest side between MIN_SIDE and lookalike.verify.SIDE: binary
descriptors (32 bytes), fast to find and to match. The strongest keypoints are kept, spread
over a grid so that one busy region (a text overlay, a logo) cannot take them all.

The worker's shrink-on-load decode (lookalike.images.decode_scaled) keeps only about the
model's input side (224 px on the shorter side): too few pixels for the keypoints. Found on
that image, hard negatives (different products photographed alike) verified as
near-duplicates more than doubled on the evaluation set (34 pairs against 15, precision
0.948 against 0.976: docs/indexer.md). So they are found on the model's decode reduced less
when it held SIDE pixels on the longer side (lookalike.images.decode_with_larger: a PNG or
WebP, decoded in full), and otherwise on the file decoded again, shrink-on-load to the least
scale that keeps SIDE (:func:`keypoint_source`: a JPEG decoded at a reduced scale).
"""

from __future__ import annotations

import io
import math
from typing import Any

import cv2
import numpy as np
from PIL import Image

from lookalike.frames import frame_contact, gap_profile
from lookalike.images import decode_scaled
from lookalike.verify import (
    GRID_CELL,
    KEYPOINTS_FIELD,
    MAX_KEYPOINTS,
    SIDE,
    THUMBNAIL_SIDE,
    Keypoints,
    encode,
)

MIN_SIDE = 384
# An image whose longer side is under this is not enlarged for keypoints: it has none (it is
# "too plain" to verify). Twice ORB's 31 px patch: enlarged, a 28 px Fashion-MNIST item cost
# 6 CPU-ms of ORB on a 384 px blur and yielded nothing a near-duplicate test can trust.
MIN_SOURCE = 64
_GRID = 4  # cells per side; each keeps at most twice its share of MAX_KEYPOINTS
_CANDIDATES = 3 * MAX_KEYPOINTS
_WINDOW = 7  # pixels around a keypoint whose mean colour it carries, at SIDE (odd)
_FAST = 7  # FAST corner threshold: low enough for soft catalog photos


def scaled(image: Image.Image) -> np.ndarray:
    """The image as RGB pixels, its longest side brought within [MIN_SIDE, SIDE]: a large
    photo scaled down (what an edit changes survives at 512 px, and it is fast), a small
    stamp enlarged to MIN_SIDE, where its corners can be found (at its own size 310 of the
    801 tuxpaint stamps yield too few keypoints to verify; at 384 px, 17). Not called for an
    image under MIN_SOURCE."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    longest = max(image.size)
    factor = min(1.0, SIDE / longest) if longest >= MIN_SIDE else MIN_SIDE / longest
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))


def keypoint_source(data: bytes, decoded: Image.Image, *, max_pixels: int) -> Image.Image:
    """The picture to find an item's keypoints on: ``decoded`` (the model's image) when it
    keeps SIDE pixels on its longer side or is the whole picture, otherwise the file decoded
    again, shrink-on-load to the least scale that keeps SIDE on the longer side (a JPEG at
    half or a quarter scale, or in full). The keypoints are then found at SIDE, as on a full
    decode: found at a lesser size (a 800 px glyph decoded at half scale, 400 px), letters of
    one font were verified as one another's near-duplicates twice as often. ``data`` was
    decoded once already: its problems have been reported."""
    if max(decoded.size) < SIDE:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
        if max(width, height) > max(decoded.size):
            # decode_scaled keeps the shorter side: the one that goes with SIDE on the longer.
            side = math.ceil(SIDE * min(width, height) / max(width, height))
            return decode_scaled(data, max_pixels=max_pixels, side=side)
    return decoded


def _none() -> Keypoints:
    empty = np.zeros((0, 2), np.float32)
    return Keypoints(empty, empty, np.zeros((0, 32), np.uint8))


def find_keypoints(image: Image.Image) -> Keypoints:
    if max(image.size) < MIN_SOURCE:
        return _none()
    rgb = scaled(image)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    orb = cv2.ORB.create(nfeatures=_CANDIDATES, fastThreshold=_FAST)
    found = orb.detect(grey, None)
    chosen = _spread(list(found), rgb.shape[1], rgb.shape[0])
    kept, descriptors = orb.compute(grey, chosen)
    if descriptors is None or not kept:
        return _none()
    xy = np.array([k.pt for k in kept], dtype=np.float32)
    ab = _colours(rgb, xy)
    frame = (rgb.shape[1], rgb.shape[0])
    # The gap lines at the picture's own resolution where it was enlarged for the keypoints
    # (a stamp), otherwise at SIDE: a larger picture's gaps keep their share of it.
    own = np.asarray(image.convert("L")) if max(image.size) < MIN_SIDE else grey
    # One thumbnail: the payload keeps it as a colour JPEG, whose luma is its grey.
    small = thumbnail(rgb)
    return Keypoints(
        xy,
        ab,
        descriptors,
        frame,
        colour_grid(rgb),
        cv2.cvtColor(small, cv2.COLOR_RGB2GRAY),
        frame_contact(image),
        gap_profile(own),
        small,
    )


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The RGB picture reduced to THUMBNAIL_SIDE on its longer side: what a verified pair is
    compared on, its grey pixel by pixel (lookalike/verify.py difference), its colour by the
    variants' colour edges (colour_structure). The payload keeps it as one colour JPEG, whose
    luma is that grey."""
    height, width = rgb.shape[:2]
    factor = THUMBNAIL_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _colours(rgb: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Lab (a, b) of the mean colour in a window around each keypoint: the window covers the
    same share of the picture whatever its size. Summed from an integral image at the
    keypoints only (blurring the whole picture cost more than ORB's description); ORB keeps
    its keypoints 31 px from the edges, so no window is clipped."""
    height, width = rgb.shape[:2]
    half = max(3, round(_WINDOW * max(height, width) / SIDE)) // 2
    sums = cv2.integral(rgb, sdepth=cv2.CV_32S)
    x = np.clip(np.round(xy[:, 0]).astype(int), 0, width - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), 0, height - 1)
    x0, x1 = np.maximum(x - half, 0), np.minimum(x + half + 1, width)
    y0, y1 = np.maximum(y - half, 0), np.minimum(y + half + 1, height)
    total = sums[y1, x1] - sums[y0, x1] - sums[y1, x0] + sums[y0, x0]
    area = ((x1 - x0) * (y1 - y0))[:, None]
    mean = np.round(total / area).astype(np.uint8)[:, None, :]
    return cv2.cvtColor(mean, cv2.COLOR_RGB2LAB)[:, 0, 1:].astype(np.float32) - 128.0


def colour_grid(rgb: np.ndarray) -> np.ndarray:
    """Lab (a, b) of the picture averaged over cells of about GRID_CELL pixels: what tells a
    recoloured flat fill (which has no keypoints) from an edit (lookalike/verify.py)."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width / GRID_CELL)), max(1, round(height / GRID_CELL)))
    cells = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(cells, cv2.COLOR_RGB2LAB)[..., 1:].astype(np.float32) - 128.0


def _spread(found: list[Any], width: int, height: int) -> list[Any]:
    """The MAX_KEYPOINTS strongest, at most twice a grid cell's share from any one cell."""
    cap = max(1, 2 * MAX_KEYPOINTS // (_GRID * _GRID))
    taken: dict[tuple[int, int], int] = {}
    kept = []
    for k in sorted(found, key=lambda k: -k.response):
        cell = (
            min(_GRID - 1, int(k.pt[0] * _GRID / width)),
            min(_GRID - 1, int(k.pt[1] * _GRID / height)),
        )
        if taken.get(cell, 0) < cap:
            taken[cell] = taken.get(cell, 0) + 1
            kept.append(k)
            if len(kept) == MAX_KEYPOINTS:
                break
    return kept


def keypoint_payload(
    data: bytes, decoded: Image.Image, *, max_pixels: int, source: Image.Image | None = None
) -> dict[str, str]:
    """The payload fields for a catalog image: its file, the image decoded from it for the
    model (RGB or L), and the picture to find the keypoints on when the model's decode
    already gave it (lookalike.images.decode_with_larger), else found by
    :func:`keypoint_source`."""
    if source is None:
        source = keypoint_source(data, decoded, max_pixels=max_pixels)
    return {KEYPOINTS_FIELD: encode(find_keypoints(source))}
