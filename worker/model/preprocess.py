"""Turn decoded images into the square uint8 batch the model takes.

User-facing modes (``LOOKALIKE_PREPROCESS``):

- ``"resize"``: the whole image stays in frame. It is implemented as ``"pad"``: scaled so its
  longer side fits, centred on a white square (catalog photos mostly sit on white). Plain
  ``"stretch"`` to a square was measured against it, see docs/model.md.
- ``"crop"``: EfficientNet's evaluation crop: the central ``size / (size + 32)`` of the
  shorter side (224 of 256 for Lite0), resized to ``size``. Loses the edges of wide images.

- ``"pad"`` and ``"stretch"``: the two ways of keeping the whole image, by name (``"resize"``
  is ``"pad"``; docs/quality.md measures all three).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from lookalike.images import flatten_on_white, has_transparency

MODES = ("resize", "crop", "pad", "stretch")
RESIZE_METHOD = "pad"
# EfficientNet's eval preprocessing (tensorflow/tpu efficientnet/preprocessing.py CROP_PADDING).
CROP_PADDING = 32
BACKGROUND = (255, 255, 255)
_FILTER = Image.Resampling.BICUBIC
# Box-reduce by an integer factor first while the image is more than 3x the target: as good
# as one full bicubic pass to the eye and much faster on camera-sized photos.
_REDUCING_GAP = 3.0


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency flattened onto the white background."""
    if image.mode == "RGB":
        return image
    if has_transparency(image):
        return flatten_on_white(image)
    return image.convert("RGB")


def _resize(image: Image.Image, width: int, height: int) -> Image.Image:
    return image.resize((width, height), _FILTER, reducing_gap=_REDUCING_GAP)


def _stretch(image: Image.Image, size: int) -> Image.Image:
    return _resize(image, size, size)


def _pad(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (size, size):
        return _resize(image, size, size)
    canvas = Image.new(image.mode, (size, size), BACKGROUND if image.mode == "RGB" else 255)
    canvas.paste(_resize(image, nw, nh), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def _crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    side = size / (size + CROP_PADDING) * min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), _FILTER, box=box, reducing_gap=_REDUCING_GAP)


_METHODS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "pad": _pad,
    "stretch": _stretch,
    "crop": _crop,
}


def method(mode: str) -> str:
    """The concrete method behind a mode name (``"resize"`` -> ``RESIZE_METHOD``)."""
    name = RESIZE_METHOD if mode == "resize" else mode
    if name not in _METHODS:
        raise ValueError(f"unknown preprocess mode {mode!r}; choose one of {', '.join(MODES)}")
    return name


def preprocess(images: Sequence[Image.Image], size: int, mode: str = "resize") -> np.ndarray:
    """uint8 array (n, size, size, 3) of the images framed by ``mode``.

    A greyscale (``L``) image is framed on its one channel and copied into the three: the
    same pixels as converting it to RGB first (resampling works channel by channel), for
    a third of the resampling.
    """
    fn = _METHODS[method(mode)]
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.mode == "L":
            plane = np.asarray(fn(image, size))
            # Three plane copies: a quarter of the time of one broadcast into the last axis.
            for channel in range(3):
                out[i, ..., channel] = plane
        else:
            out[i] = np.asarray(fn(to_rgb(image), size))
    return out
