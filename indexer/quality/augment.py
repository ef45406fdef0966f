"""Image-space augmentation for training a head: altered copies of each labelled image, each
embedded once by the real backbone and trained on as one more labelled image.

- ``flip``: mirrored left to right;
- ``crop``: the central 80 % of each side (a 1.25x zoom in, the edges lost);
- ``zoom``: the whole image at 80 % of each side, centred on a canvas of its own border colour
  (transparent where it has transparency): a 1.25x zoom out.

Each copy costs one more backbone inference per labelled image (the held-out images are never
augmented). The copies are deterministic, so their vectors cache like the originals'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

AUGMENTATIONS = ("flip", "crop", "zoom")
# The side of the crop, and of the image inside the zoomed-out canvas, as a fraction.
SIDE = 0.8


def parse_augmentations(text: str) -> tuple[str, ...]:
    """``"flip,crop"`` -> ``("flip", "crop")``; ValueError naming the unknown one."""
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}"
        )
    return kinds


def augmented(image: Image.Image, kind: str) -> Image.Image:
    """A copy of ``image`` altered by ``kind`` (one of :data:`AUGMENTATIONS`)."""
    if kind == "flip":
        return ImageOps.mirror(image)
    width, height = image.size
    if kind == "crop":
        w, h = max(1, round(width * SIDE)), max(1, round(height * SIDE))
        left, top = (width - w) // 2, (height - h) // 2
        return image.crop((left, top, left + w, top + h))
    if kind == "zoom":
        small = image.resize(
            (max(1, round(width * SIDE)), max(1, round(height * SIDE))),
            Image.Resampling.BICUBIC,
        )
        canvas = Image.new(image.mode, image.size, _border_colour(image))
        canvas.paste(small, ((width - small.width) // 2, (height - small.height) // 2))
        return canvas
    raise ValueError(f"unknown augmentation {kind!r}")


def _border_colour(image: Image.Image) -> tuple[int, ...] | int:
    """The median colour of the image's outermost pixels (transparent with an alpha band)."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = tuple(int(v) for v in np.median(border, axis=0))
    if image.mode in ("RGBA", "LA", "PA"):
        colour = (*colour[:-1], 0)
    return colour[0] if len(colour) == 1 else colour


def augment_methods(
    embed: Callable[[Sequence[Image.Image]], np.ndarray], version: str, kinds: Sequence[str]
) -> tuple[dict[str, Callable[[Sequence[Image.Image]], np.ndarray]], dict[str, str]]:
    """For :func:`indexer.quality.evaluate.embed_items`: one method per augmentation,
    embedding the altered copies with ``embed``, and its version (``version:aug-<kind>``)."""

    def method(kind: str) -> Callable[[Sequence[Image.Image]], np.ndarray]:
        return lambda images: embed([augmented(image, kind) for image in images])

    return (
        {kind: method(kind) for kind in kinds},
        {kind: f"{version}:aug-{kind}" for kind in kinds},
    )
