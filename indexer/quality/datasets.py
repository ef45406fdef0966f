"""Labelled image sets for measuring retrieval quality: read them, sample them, export them.

A labelled set is either

- a **folder**: every image below it, labelled by its sub-folder (``label_depth`` levels of
  it: ``animals/birds/x.png`` is ``animals`` at depth 1 and ``animals/birds`` at depth 2);
  images lying above that depth carry no label and are left out; or
- a **manifest**: a ``.csv`` file with a header naming at least ``path`` and ``label``
  (``category`` is accepted for ``label``; ``id`` is optional), or a ``.jsonl`` file with one
  ``{"path": ..., "label": ...}`` object a line. Relative paths are relative to the manifest.

Exporters write such sets from Debian packages (``python -m indexer.quality.datasets --help``):

- ``fashion-mnist`` (package ``dataset-fashion-mnist``): a stratified sample of the 28x28
  greyscale product pictures, written out as PNG files in one folder per class;
- ``openclipart`` (package ``openclipart-png``): a manifest over the clip art, labelled by
  category and sub-category (``animals/birds``), classes with too few images left out;
- ``tuxpaint`` (package ``tuxpaint-stamps-default``): a manifest over the stamps, labelled by
  top-level category;
- ``shop`` (both packages): catalog photos as a shop takes them, a folder of JPEGs labelled
  by product category: tuxpaint's photographed stamps and openclipart's objects, each
  composited at one position and scale onto one studio backdrop (:mod:`indexer.quality.studio`),
  at 0.5, 1.1 and 1.5 MP.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
import struct
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lookalike.images import IMAGE_SUFFIXES

# Characters an item id may not hold (lookalike.schema.ID_PATTERN) become "-".
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]+")

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
OPENCLIPART = Path("/usr/share/openclipart/png")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
# The labelled sets docs/quality.md's tables are measured on, by name: where this module's
# exporters write them by default (benchmarks/quality.sh builds them all).
QUALITY_SETS = {
    "tuxpaint": Path("build/datasets/tuxpaint.csv"),
    "openclipart": Path("build/datasets/openclipart.csv"),
    "fashion-mnist": Path("build/datasets/fashion-mnist"),
    "shop": Path("build/datasets/shop"),
}
# The shop-like set's classes: label -> the package folders its products come from.
# Tuxpaint's stamps over SHOP_PHOTO_BYTES are photographs cut out on transparency (the
# smaller are drawings); openclipart's are objects drawn, as product renderings are. A label
# is a product category whatever the source (a shop's "vehicles" mixes photos and renders).
_TUX, _CLIP = TUXPAINT_STAMPS, OPENCLIPART
SHOP_CLASSES: dict[str, tuple[tuple[Path, str], ...]] = {
    "fruit": ((_TUX, "food/fruit"), (_CLIP, "food/fruit")),
    "vehicles": ((_TUX, "vehicles"), (_CLIP, "transportation/vehicles")),
    "flowers": ((_TUX, "plants"), (_CLIP, "plants/flowers")),
    "birds": ((_TUX, "animals/birds"),),
    "mammals": ((_TUX, "animals/mammals"),),
    "beverages": ((_CLIP, "food/beverages"),),
    "desserts": ((_CLIP, "food/desserts"),),
    "tools": ((_CLIP, "tools"),),
    # Tuxpaint's hobbies are musical instruments but for a camera and binoculars.
    "music": ((_TUX, "hobbies"), (_CLIP, "recreation/music")),
    "sports": ((_CLIP, "recreation/sports"),),
    "toys": ((_CLIP, "recreation/toys"),),
    "electronics": ((_CLIP, "electronics"),),
    "office": ((_CLIP, "office"),),
}
SHOP_PHOTO_BYTES = 20_000
# Catalog sizes, one 4:3 framing (so one position and scale): about 0.5, 1.1 and 1.5 MP.
SHOP_SIZES = ((816, 612), (1200, 900), (1416, 1062))
# Bump when the photos change, so an exported set is rebuilt.
SHOP_RECIPE = 1


class DatasetError(ValueError):
    """A labelled set that cannot be read."""


@dataclass(frozen=True)
class LabelledImage:
    id: str
    path: Path
    label: str


def item_id(relative: str) -> str:
    """A valid, stable item id for an image's relative path."""
    stem = relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative
    return _UNSAFE.sub("-", stem.replace("/", ".")).strip("-.") or "item"


def load_labelled(source: Path, *, label_depth: int = 1) -> list[LabelledImage]:
    """The labelled images of a folder or manifest, in a stable order."""
    source = Path(source)
    if source.is_dir():
        items = _folder(source, label_depth)
    elif source.is_file():
        items = _manifest(source)
    else:
        raise DatasetError(f"{source}: no such folder or manifest")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"{source}: item ids are not unique, e.g. {dupes}")
    if not items:
        raise DatasetError(f"{source}: no labelled images found")
    return items


def _folder(root: Path, label_depth: int) -> list[LabelledImage]:
    if label_depth < 1:
        raise DatasetError("label_depth must be at least 1")
    items = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root)
        if len(rel.parts) <= label_depth:
            # Shallower images: label at the depth they have, or none at the top.
            if len(rel.parts) == 1:
                continue
            label = "/".join(rel.parts[:-1])
        else:
            label = "/".join(rel.parts[:label_depth])
        items.append(LabelledImage(item_id(rel.as_posix()), path, label))
    return items


def _manifest(path: Path) -> list[LabelledImage]:
    rows: list[dict[str, str]]
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            rows.append({str(k): str(v) for k, v in row.items()})
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        raise DatasetError(f"{path}: a manifest must be a .csv or .jsonl file")
    items = []
    for number, row in enumerate(rows, 1):
        label = row.get("label") or row.get("category")
        if not row.get("path") or not label:
            raise DatasetError(f"{path}: row {number} needs a path and a label")
        image = Path(row["path"])
        if not image.is_absolute():
            image = path.parent / image
        items.append(LabelledImage(row.get("id") or item_id(row["path"]), image, label))
    return items


def write_manifest(items: Iterable[LabelledImage], path: Path) -> Path:
    """A CSV manifest (``id,path,label``) of ``items``, paths as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("id", "path", "label"))
        for item in items:
            writer.writerow((item.id, str(item.path), item.label))
    return path


def by_label(items: Iterable[LabelledImage]) -> dict[str, list[LabelledImage]]:
    groups: dict[str, list[LabelledImage]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return dict(sorted(groups.items()))


def stratified_sample(
    items: Sequence[LabelledImage],
    *,
    per_class: int,
    min_per_class: int = 1,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> list[LabelledImage]:
    """At most ``per_class`` images of every label that has at least ``min_per_class``."""
    rng = random.Random(seed)
    excluded = set(exclude)
    chosen: list[LabelledImage] = []
    for label, group in by_label(items).items():
        if label in excluded or len(group) < min_per_class:
            continue
        chosen.extend(rng.sample(group, per_class) if len(group) > per_class else group)
    return sorted(chosen, key=lambda item: (item.label, item.id))


def stratified_split(
    items: Sequence[LabelledImage], *, test_fraction: float, seed: int = 0
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train, test), each label split in the same proportion.

    A label with fewer than 4 images stays in train whole: in a test split of one image it
    would have no neighbour of its own label, in one of two it would measure almost nothing.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError("test_fraction must be between 0 and 1")
    rng = random.Random(seed)
    train: list[LabelledImage] = []
    test: list[LabelledImage] = []
    for group in by_label(items).values():
        group = list(group)
        rng.shuffle(group)
        n_test = round(len(group) * test_fraction) if len(group) >= 4 else 0
        n_test = min(max(n_test, 2 if len(group) >= 4 else 0), len(group) - 2)
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return train, test


# --------------------------------------------------------------------------- exporters


def _read_idx(path: Path) -> list[int] | tuple[int, int, int, bytes]:
    """An idx file (MNIST's format): labels as a list, or (n, rows, cols, pixels)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2049:
        return list(data[8 : 8 + n])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return n, rows, cols, data[16:]
    raise DatasetError(f"{path}: not an idx label or image file (magic {magic})")


def export_fashion_mnist(
    out_dir: Path,
    *,
    per_class: int = 300,
    split: str = "t10k",
    source: Path = FASHION_MNIST,
    seed: int = 0,
) -> Path:
    """Write ``per_class`` images of each of the 10 classes as PNGs under ``out_dir/<class>/``.

    Returns the folder. Idempotent: files already written are kept.
    """
    from PIL import Image

    labels_path = source / f"{split}-labels-idx1-ubyte.gz"
    images_path = source / f"{split}-images-idx3-ubyte.gz"
    if not labels_path.is_file():
        raise DatasetError(f"{labels_path} missing: apt-get install dataset-fashion-mnist")
    labels = _read_idx(labels_path)
    images = _read_idx(images_path)
    assert isinstance(labels, list) and isinstance(images, tuple)
    n, rows, cols, pixels = images
    if n != len(labels):
        raise DatasetError(f"{source}: {n} images but {len(labels)} labels")
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    size = rows * cols
    for label, indexes in sorted(by_class.items()):
        folder = out_dir / FASHION_MNIST_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for index in sorted(rng.sample(indexes, min(per_class, len(indexes)))):
            target = folder / f"{split}-{index:05d}.png"
            if not target.exists():
                start = index * size
                image = Image.frombytes("L", (cols, rows), pixels[start : start + size])
                image.save(target)
    return out_dir


def openclipart_manifest(
    out: Path,
    *,
    per_class: int = 40,
    min_per_class: int = 20,
    max_pixels: int = 4_000_000,
    source: Path = OPENCLIPART,
    seed: int = 0,
) -> Path:
    """A manifest over openclipart-png, labelled ``category/sub-category``.

    ``unsorted`` is left out (it has no category), and so are labels with fewer than
    ``min_per_class`` images and images larger than ``max_pixels``.
    """
    if not source.is_dir():
        raise DatasetError(f"{source} missing: apt-get install openclipart-png")
    items = [
        item for item in _folder(source, label_depth=2) if 0 < _pixels(item.path) <= max_pixels
    ]
    chosen = stratified_sample(
        items, per_class=per_class, min_per_class=min_per_class, seed=seed, exclude=["unsorted"]
    )
    return write_manifest(chosen, out)


def export_shop(out_dir: Path, *, per_class: int = 30, seed: int = 0) -> Path:
    """Write the shop-like set: ``out_dir/<label>/<n>.jpg``, at most ``per_class`` products
    of each of :data:`SHOP_CLASSES`, each on the studio set (:func:`indexer.quality.studio.studio`),
    resized to one of :data:`SHOP_SIZES` in turn and saved as JPEG quality 85-92.

    Deterministic per seed; kept when ``out_dir/shop.json`` holds the same parameters.
    """
    import numpy as np
    from PIL import Image

    from indexer.quality.studio import studio, studio_background

    params = {"recipe": SHOP_RECIPE, "per_class": per_class, "seed": seed}
    stamp = out_dir / "shop.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("params") == params:
        return out_dir
    for root, package in (
        (TUXPAINT_STAMPS, "tuxpaint-stamps-default"),
        (OPENCLIPART, "openclipart-png"),
    ):
        if not root.is_dir():
            raise DatasetError(f"{root} missing: apt-get install {package}")
    rng = np.random.default_rng(seed)
    background = studio_background()
    counts: dict[str, int] = {}
    n = 0
    for label, folders in SHOP_CLASSES.items():
        paths = [
            path
            for root, folder in folders
            for path in sorted((root / folder).rglob("*.png"))
            if _shop_source(root, path)
        ]
        chosen = sorted(rng.choice(len(paths), size=min(per_class, len(paths)), replace=False))
        (out_dir / label).mkdir(parents=True, exist_ok=True)
        for i in chosen:
            with Image.open(paths[i]) as raw:
                photo, _ = studio(raw, background, rng)
            size = SHOP_SIZES[n % len(SHOP_SIZES)]
            if photo.size != size:
                photo = photo.resize(size, Image.Resampling.LANCZOS)
            quality = int(rng.integers(85, 93))
            name = f"{paths[i].parent.name}-{paths[i].stem}.jpg"
            photo.save(out_dir / label / name, "JPEG", quality=quality)
            n += 1
        counts[label] = len(chosen)
    stamp.write_text(json.dumps({"params": params, "classes": counts}, indent=2) + "\n")
    return out_dir


def _shop_source(root: Path, path: Path) -> bool:
    if root == TUXPAINT_STAMPS:
        return path.stat().st_size > SHOP_PHOTO_BYTES
    return 0 < _pixels(path) <= 4_000_000


def _pixels(path: Path) -> int:
    """An image's pixel count from its header; 0 for a file that does not open (a handful
    of openclipart's gradients and patterns are posters of up to 600 MP)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width * image.height
    except (OSError, Image.DecompressionBombError):
        return 0


def tuxpaint_manifest(out: Path, *, source: Path = TUXPAINT_STAMPS) -> Path:
    """A manifest over every tuxpaint stamp, labelled by top-level category."""
    if not source.is_dir():
        raise DatasetError(f"{source} missing: apt-get install tuxpaint-stamps-default")
    return write_manifest(_folder(source, label_depth=1), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m indexer.quality.datasets", description="Export labelled image sets."
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    fm = sub.add_parser("fashion-mnist", help="PNG folder of a Fashion-MNIST sample")
    fm.add_argument("--out", type=Path, default=Path("build/datasets/fashion-mnist"))
    fm.add_argument("--per-class", type=int, default=300)
    fm.add_argument("--split", choices=("t10k", "train"), default="t10k")
    oc = sub.add_parser("openclipart", help="manifest over openclipart-png")
    oc.add_argument("--out", type=Path, default=Path("build/datasets/openclipart.csv"))
    oc.add_argument("--per-class", type=int, default=40)
    oc.add_argument("--min-per-class", type=int, default=20)
    tp = sub.add_parser("tuxpaint", help="manifest over tuxpaint-stamps-default")
    tp.add_argument("--out", type=Path, default=Path("build/datasets/tuxpaint.csv"))
    sh = sub.add_parser("shop", help="JPEG folder of studio product photos (both packages)")
    sh.add_argument("--out", type=Path, default=Path("build/datasets/shop"))
    sh.add_argument("--per-class", type=int, default=30)
    for p in (fm, oc, sh):
        p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.dataset == "fashion-mnist":
            out = export_fashion_mnist(
                args.out, per_class=args.per_class, split=args.split, seed=args.seed
            )
        elif args.dataset == "openclipart":
            out = openclipart_manifest(
                args.out,
                per_class=args.per_class,
                min_per_class=args.min_per_class,
                seed=args.seed,
            )
        elif args.dataset == "shop":
            out = export_shop(args.out, per_class=args.per_class, seed=args.seed)
        else:
            out = tuxpaint_manifest(args.out)
    except DatasetError as exc:
        print(f"indexer.quality.datasets: {exc}", file=sys.stderr)
        return 2
    items = load_labelled(out)
    print(f"{out}: {len(items)} images in {len(by_label(items))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
