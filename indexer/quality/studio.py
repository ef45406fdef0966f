"""Product photography on one studio set: a product cut-out (or clip art) placed at one
position and scale on one lit backdrop, with the sensor noise of its own shot, as a shop
photographs its catalog. Used by the shop-like evaluation set (``python -m indexer.quality.datasets
shop``) and the near-duplicate study's hard negatives (benchmarks/duplicate_threshold.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# The set's frame, 4:3, and the box the product is scaled into, standing on the floor line.
STUDIO = (1200, 900)
BOX = 640
FLOOR = 780


def studio_background() -> Image.Image:
    """The backdrop: a light sweep lit from above, darker at the sides, with a soft shadow
    where the product stands."""
    w, h = STUDIO
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(-1, 1, w)[None, :]
    light = 236 - 26 * y - 14 * x**2
    shadow = np.exp(-(((x / 0.35) ** 2) + ((y - 0.86) / 0.05) ** 2))
    grey = light - 40 * shadow
    tint = np.array([1.0, 0.99, 0.97])
    return Image.fromarray(np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8))


def studio(
    product: Image.Image, background: Image.Image, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image]:
    """The product scaled into the BOX at one place on ``background``, with the sensor noise
    of its own shot. Returns the photo and the product's mask (where it is)."""
    product = product.convert("RGBA")
    factor = BOX / max(product.size)
    product = product.resize(
        (max(1, round(product.width * factor)), max(1, round(product.height * factor))),
        Image.Resampling.LANCZOS,
    )
    out = background.copy()
    x = (STUDIO[0] - product.width) // 2
    y = FLOOR - product.height  # standing on the floor line
    out.paste(product, (x, y), product)
    mask = Image.new("L", STUDIO, 0)
    mask.paste(product.getchannel("A"), (x, y))
    noisy = np.asarray(out, dtype=np.float64) + rng.normal(0, 2.0, (STUDIO[1], STUDIO[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), mask
