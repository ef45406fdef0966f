"""How two thumbnails lie on each other when their keypoints cannot say: a similarity
transform (scale, rotation, shift) found from the pixels alone, by Fourier-Mellin phase
correlation (the magnitude spectrum does not move with a shift; in log-polar coordinates a
rotation and a scale become a shift, which phase correlation finds; a second phase
correlation then finds the shift).

Keypoints fail on pictures with little texture (upscaled Fashion-MNIST items, glyphs, coins)
once several edits are stacked (cropped, shrunk, rotated, retouched, watermarked,
recompressed: ORB's descriptors of one corner then differ in a fifth of their bits), while
the pictures' large shapes still line up: lookalike/verify.py then compares the thumbnails
under this transform, more strictly than under the keypoints' (docs/indexer.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_N = 128  # the square both thumbnails are laid in (lookalike.verify.THUMBNAIL_SIDE)
_WINDOW = cv2.createHanningWindow((_N, _N), cv2.CV_32F)
_LOG_BASE = _N / np.log(_N / 2)  # log-polar columns per unit of log radius
# ECC refinement (:func:`refine`): at most this many steps, until the correlation gains
# less than this; the pictures blurred over this many pixels first.
_ECC_STEPS = 60
_ECC_EPSILON = 1e-5
_ECC_BLUR = 3


def _highpass() -> np.ndarray:
    """Damps the spectrum's centre, where every picture looks alike (its mean, its frame)."""
    y, x = np.mgrid[-_N // 2 : _N // 2, -_N // 2 : _N // 2] / _N
    c = np.cos(np.pi * y) * np.cos(np.pi * x)
    return ((1 - c) * (2 - c)).astype(np.float32)


_HIGHPASS = _highpass()


def _square(thumbnail: np.ndarray) -> np.ndarray:
    out = np.full((_N, _N), float(thumbnail.mean()), np.float32)
    height, width = min(_N, thumbnail.shape[0]), min(_N, thumbnail.shape[1])
    out[:height, :width] = thumbnail[:height, :width]
    return out


def _log_polar(square: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fftshift(np.abs(np.fft.fft2(square * _WINDOW))).astype(np.float32)
    centre = (_N / 2, _N / 2)
    return cv2.warpPolar(
        spectrum * _HIGHPASS, (_N, _N), centre, _N / 2, cv2.WARP_POLAR_LOG | cv2.INTER_LINEAR
    )


@dataclass(frozen=True)
class Spectra:
    """What :func:`align` needs of one thumbnail, whichever thumbnail it is laid on: made
    once per item by :func:`prepare` (lookalike.verify.Keypoints keeps it), not once per
    pair. Read-only arrays."""

    square: np.ndarray  # the thumbnail in the _N square, float32 (:func:`_square`)
    windowed: np.ndarray  # ``square`` times the Hanning window
    log_polar: np.ndarray  # its high-passed magnitude spectrum in log-polar coordinates


def prepare(thumbnail: np.ndarray) -> Spectra:
    """A grey uint8 thumbnail's :class:`Spectra` (at most 128 px a side)."""
    square = _square(thumbnail.astype(np.float32))
    arrays = square, square * _WINDOW, _log_polar(square)
    for array in arrays:
        array.setflags(write=False)
    return Spectra(*arrays)


def align(
    a: Spectra, b: Spectra, max_rotation: float, min_response: float
) -> tuple[complex, complex] | None:
    """``(m, t)`` with ``w = m z + t`` taking thumbnail ``a``'s pixels (x + iy) to ``b``'s
    (each as :func:`prepare` made it), or None when the rotation found exceeds
    ``max_rotation`` degrees or the shift's phase correlation peak is under ``min_response``
    (the pictures do not line up: nothing to compare)."""
    (dx, dy), _ = cv2.phaseCorrelate(a.log_polar, b.log_polar)
    # A magnitude spectrum is symmetric: a rotation is known up to 180 degrees.
    angle = ((dy * 360.0 / _N + 90.0) % 180.0) - 90.0
    if abs(angle) > max_rotation:
        return None
    m = complex(np.exp(1j * np.radians(angle)) / np.exp(dx / _LOG_BASE))
    if not (np.isfinite(m) and 1e-3 < abs(m) < 1e3):
        return None  # a flat spectrum's peak is anywhere: no scale an edit makes
    turned = cv2.warpAffine(
        a.square,
        np.array([[m.real, -m.imag, 0.0], [m.imag, m.real, 0.0]], np.float32),
        (_N, _N),
        borderValue=float(a.square.mean()),
    )
    (tx, ty), response = cv2.phaseCorrelate(turned * _WINDOW, b.windowed)
    if response < min_response:
        return None
    return m, complex(tx, ty)


def refine(a: np.ndarray, b: np.ndarray, warp: np.ndarray) -> np.ndarray | None:
    """``warp`` (2 x 3, thumbnail ``a``'s pixels to ``b``'s, as cv2.warpAffine's inverse map
    takes it) refined by ECC (OpenCV's findTransformECC: the affine warp that maximises the
    correlation of ``a`` with ``b`` laid on it), or None when it does not converge. A
    keypoint fit or a phase correlation leaves the two off by a pixel or two, which a
    comparison of small details (a coin's numeral, a letter on a dreidel's side) must not
    read as a difference."""
    mask = np.zeros(b.shape, np.uint8)
    mask[2:-2, 2:-2] = 1  # b's own border: a crop's or a resize's edge, not its content
    try:
        _, refined = cv2.findTransformECC(
            a.astype(np.float32),
            b.astype(np.float32),
            warp.astype(np.float32),
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, _ECC_STEPS, _ECC_EPSILON),
            mask,
            _ECC_BLUR,
        )
    except cv2.error:  # no convergence, or a picture too flat to correlate
        return None
    result: np.ndarray = refined.astype(np.float64)
    return result
