"""A realistic catalog photo set: ``python -m benchmarks.photoset [--per-size N] [--out DIR]``.

Shops upload JPEG/WebP/PNG photos of 0.5 to 4 MP, products photographed alike on a studio
background. Thumbnails upscaled to that size decode unrealistically fast (smooth areas cost
the entropy decoder nothing), so every photo here carries real photographic material
(scikit-image's photos, Debian's ``tuxpaint-stamps-default`` stamps, which are photos of
objects cut out on transparency) composited onto a textured studio backdrop, with sensor
noise, then saved the way catalogs are: JPEG quality 85-92 mostly, some WebP, some PNG with
an alpha channel (cut-outs).

Deterministic: photo ``i`` of a size depends only on the seed and ``i``. Built once into a
cache folder (default ``build/photoset``) and reused while its manifest matches; nothing is
committed. The benchmark (``python -m benchmarks``), its GPU variant and the quality and
duplicate studies can all read the same folders.

Layout: ``OUT/<size>/<source>/<n>.<ext>`` for the sizes of :data:`SIZES`, and
``OUT/manifest.json`` (the parameters, and per size the count and the megapixels).
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
STAMPS = Path("/usr/share/tuxpaint/stamps")
DEFAULT_OUT = REPO / "build" / "photoset"
# Bump when the photos this makes change, so an old cache is rebuilt.
RECIPE = 1

# Name -> (width, height): about 0.5, 1.5 and 4 MP, the shapes catalogs use (square product
# shots, 4:3 and 3:4 camera frames).
SIZES: dict[str, tuple[int, int]] = {
    "0.5mp": (816, 612),
    "1.5mp": (1224, 1224),
    "4mp": (1732, 2309),
}
# Of every 20 photos: 16 JPEG, 2 WebP, 2 PNG with alpha.
FORMAT_CYCLE = ("jpeg",) * 8 + ("webp",) + ("jpeg",) * 8 + ("png",) + ("jpeg", "jpeg")
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "png": "png"}
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field")


@dataclass(frozen=True)
class Source:
    name: str
    image: Image.Image  # RGBA: a stamp's transparency is its cut-out


def sources() -> list[Source]:
    """The real photographic material: scikit-image's photos and the tuxpaint stamps (every
    fourth, about 200, in the order of their paths)."""
    out = []
    try:
        import skimage.data
    except ImportError:  # a GPU machine's bare environment (benchmarks/gpu_bundle.py)
        pass
    else:
        for name in SKIMAGE_PHOTOS:
            array = getattr(skimage.data, name)()
            out.append(Source(name, Image.fromarray(array).convert("RGBA")))
    stamps = sorted(STAMPS.rglob("*.png"))
    if not stamps:
        raise SystemExit("tuxpaint-stamps-default is missing: apt-get install it")
    for path in stamps[::4]:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        if min(rgba.size) >= 64:
            out.append(Source(f"stamp-{path.parent.name}", rgba))
    return out


def backdrop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A studio backdrop: a light, slightly tinted sweep with soft shading and a paper-like
    fine texture (float32, HxWx3, 0..255)."""
    tint = rng.uniform(200, 250, 3).astype(np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    shade = 1.0 - 0.12 * y - 0.06 * x**2 * rng.uniform(0.5, 1.5)
    # Texture: noise at a quarter resolution, smoothed by the bilinear upscale.
    small = rng.normal(0.0, 5.0, (height // 4 + 1, width // 4 + 1)).astype(np.float32)
    texture = Image.fromarray(small, "F").resize((width, height), Image.Resampling.BILINEAR)
    return tint * shade + np.asarray(texture)[..., None]


def photo(source: Source, rng: np.random.Generator, size: tuple[int, int], fmt: str) -> bytes:
    """One catalog photo of ``source`` at ``size``, encoded as ``fmt``."""
    width, height = size
    # The product fills 55-90% of the frame's shorter side, off-centre by a little.
    fill = rng.uniform(0.55, 0.9)
    scale = fill * min(width, height) / max(source.image.size)
    pw = max(16, round(source.image.width * scale))
    ph = max(16, round(source.image.height * scale))
    product = source.image.resize((pw, ph), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        product = product.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    left = int((width - pw) / 2 + rng.uniform(-0.08, 0.08) * width)
    top = int((height - ph) / 2 + rng.uniform(-0.08, 0.08) * height)
    left, top = min(max(0, left), width - pw), min(max(0, top), height - ph)
    if fmt == "png":
        # A cut-out: the product alone on transparency, with sensor noise on the product.
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        canvas.paste(product, (left, top))
        rgba = np.asarray(canvas).astype(np.float32)
        rgba[..., :3] += rng.normal(0.0, rng.uniform(2.0, 4.0), (height, width, 1))
        out = Image.fromarray(np.clip(rgba, 0, 255).astype(np.uint8), "RGBA")
        buf = io.BytesIO()
        out.save(buf, "PNG", compress_level=6)
        return buf.getvalue()
    canvas = Image.fromarray(np.clip(backdrop(rng, width, height), 0, 255).astype(np.uint8))
    canvas.paste(product, (left, top), product)
    pixels = np.asarray(canvas).astype(np.float32)
    # Sensor noise, a little stronger in the red and blue channels, as from a Bayer sensor.
    sigma = rng.uniform(2.0, 4.0) * np.array([1.2, 1.0, 1.3], np.float32)
    pixels += rng.normal(0.0, 1.0, (height, width, 3)).astype(np.float32) * sigma
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if fmt == "webp":
        out.save(buf, "WEBP", quality=int(rng.integers(80, 91)), method=4)
    else:
        out.save(buf, "JPEG", quality=int(rng.integers(85, 93)), optimize=False)
    return buf.getvalue()


def build(
    out: Path = DEFAULT_OUT, per_size: int = 400, seed: int = 0, sizes: tuple[str, ...] = ()
) -> dict[str, Path]:
    """The photo set (``sizes``: a subset of :data:`SIZES`, default all), built into ``out``
    unless it is there already with these parameters. Returns size name -> its folder."""
    chosen = {name: SIZES[name] for name in (sizes or tuple(SIZES))}
    params = {"recipe": RECIPE, "per_size": per_size, "seed": seed, "sizes": chosen}
    manifest = out / "manifest.json"
    folders = {name: out / name for name in chosen}
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("params") == json.loads(json.dumps(params)):
                return folders
        except ValueError:
            pass
    material = sources()
    summary: dict[str, dict[str, float]] = {}
    for name, size in chosen.items():
        s = list(SIZES).index(name)  # the same photos whichever sizes are built
        folder = folders[name]
        if folder.exists():
            for old in sorted(folder.rglob("*"), reverse=True):
                old.unlink() if old.is_file() else old.rmdir()
        total_bytes = 0
        for i in range(per_size):
            rng = np.random.default_rng([seed, s, i])
            source = material[int(rng.integers(len(material)))]
            fmt = FORMAT_CYCLE[i % len(FORMAT_CYCLE)]
            data = photo(source, rng, size, fmt)
            path = folder / source.name / f"{i:05d}.{EXTENSIONS[fmt]}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            total_bytes += len(data)
        summary[name] = {
            "count": per_size,
            "megapixels": size[0] * size[1] / 1e6,
            "mean_kib": total_bytes / per_size / 1024,
        }
        print(f"  photoset {name}: {summary[name]}", flush=True)
    manifest.write_text(json.dumps({"params": params, "sizes": summary}, indent=1))
    return folders


def image_files(folder: Path) -> list[Path]:
    """The photos under ``folder``, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".webp", ".png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photoset", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--per-size", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, folder in build(args.out, args.per_size, args.seed).items():
        print(f"{name}: {folder} ({len(image_files(folder))} photos)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
