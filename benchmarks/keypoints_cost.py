"""What the near-duplicate keypoints cost the worker per catalog photo:
``python -m benchmarks.keypoints_cost [--size 1.5mp] [--photos 60] [--photoset DIR]
[--profile]``.

On the realistic catalog photos of benchmarks/photoset.py (JPEG, some WebP and PNG with
alpha), CPU milliseconds per photo (process CPU: OpenCV may use several threads) of

- the worker's decode: the model's image alone (shrink-on-load to the model's input side,
  lookalike.images decode_scaled, what a worker without keypoints decodes), and the model's
  image with, from the same decode when it holds 512 px on the longer side, the picture for
  the keypoints (decode_with_larger: a PNG or WebP, decoded in full anyway);
- the keypoints as the worker finds them on top of that decode (find_keypoints, after
  worker/keypoints.py keypoint_source's second decode where the first kept too few pixels:
  a JPEG decoded at a reduced scale), and the payload's encoding;
- for comparison, the keypoints found on the model's image itself (too few pixels: see
  docs/indexer.md), and on the full decode (what the worker did before shrink-on-load),
  that decode included.

Then what a colour variant's verification costs (the first 10 photos against hue-shifted
copies), step 12's colour edges within it; then the same for 200 tiny images (28 px
Fashion-MNIST items, which get no keypoints: under worker.keypoints.MIN_SOURCE). Every
figure is the median of ``--repeat`` passes. CPU time, not wall time, because the
development VM is shared. ``--profile``: where a /duplicates
call's time goes (cProfile of one more pass of its calls, the functions that take the most).
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks import photoset
from lookalike import verify
from lookalike.images import (
    DECODE_SCALED,
    SCALED_DECODE_FACTOR,
    decode_image,
    decode_scaled,
    decode_with_larger,
)
from lookalike.models import get_backbone
from lookalike.settings import Settings
from worker.keypoints import find_keypoints, keypoint_source

MAX_PIXELS = Settings().max_image_pixels
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def per_photo(fn: Callable[[bytes], Any], files: list[bytes], repeat: int) -> float:
    """Median CPU milliseconds of ``fn`` per photo over ``repeat`` passes."""
    passes = []
    for _ in range(repeat):
        started = time.process_time()
        for data in files:
            fn(data)
        passes.append((time.process_time() - started) / len(files) * 1000)
    return statistics.median(passes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keypoints_cost")
    parser.add_argument("--size", choices=tuple(photoset.SIZES), default="1.5mp")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--photoset", type=Path, default=photoset.DEFAULT_OUT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=Settings().model)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    folder = args.photoset / args.size
    if not folder.exists():
        folder = photoset.build(args.photoset, sizes=(args.size,))[args.size]
    files = [p.read_bytes() for p in photoset.image_files(folder)[: args.photos]]
    input_size = get_backbone(args.model).resolve()[0]  # the side the worker decodes for
    side = SCALED_DECODE_FACTOR * input_size

    def worker_decode(data: bytes) -> Any:
        return decode_scaled(data, max_pixels=MAX_PIXELS, side=side)

    def full(data: bytes) -> Any:
        return decode_image(data, max_pixels=MAX_PIXELS)

    def shared_decode(data: bytes) -> Any:
        return decode_with_larger(
            data, DECODE_SCALED, max_pixels=MAX_PIXELS, input_size=input_size, longer=verify.SIDE
        )

    decoded = [worker_decode(d) for d in files]
    by_file = dict(zip(files, [shared_decode(d) for d in files], strict=True))
    images = iter(decoded * args.repeat)
    sources = [
        larger if larger is not None else keypoint_source(d, i, max_pixels=MAX_PIXELS)
        for d, (i, larger) in by_file.items()
    ]
    found = [find_keypoints(image) for image in sources]
    encodings = iter(found * args.repeat)

    def as_the_worker(data: bytes) -> Any:
        image, larger = by_file[data]
        return find_keypoints(keypoint_payload_source(data, image, larger))

    rows = {
        f"worker decode, model only (side {side})": per_photo(worker_decode, files, args.repeat),
        "worker decode, model + keypoint picture": per_photo(shared_decode, files, args.repeat),
        "keypoints as the worker finds them": per_photo(as_the_worker, files, args.repeat),
        "payload encoding": per_photo(lambda _: verify.encode(next(encodings)), files, args.repeat),
        "keypoints on the model's image": per_photo(
            lambda _: find_keypoints(next(images)), files, args.repeat
        ),
        "full decode + keypoints": per_photo(lambda d: find_keypoints(full(d)), files, args.repeat),
    }
    shapes = sorted({f"{i.width}x{i.height}" for i in decoded})
    kp_shapes = sorted({f"{i.width}x{i.height}" for i in sources})
    print(
        f"{len(files)} photos of {args.size} from {folder} (the worker decodes them to "
        f"{', '.join(shapes)}; for the keypoints to {', '.join(kp_shapes)}); CPU ms per photo, "
        f"median of {args.repeat} passes:"
    )
    for name, ms in rows.items():
        print(f"  {name:<36} {ms:6.2f}")
    kib = statistics.mean(len(verify.encode(k)) for k in found) / 1024
    plain = sum(not k.verifiable for k in found)
    print(f"  payload {kib:.1f} KiB per item; too plain to verify: {plain} of {len(found)}")
    duplicates_call(files, sources, found, args.repeat, profile=args.profile)
    variant_pairs(sources, found, args.repeat)
    small(args.repeat)
    return 0


def duplicates_call(
    files: list[bytes], sources: list[Any], found: list[Any], repeat: int, profile: bool = False
) -> None:
    """What a ``/duplicates`` call verifies (api/duplicates.py): an item's payload against
    CANDIDATES candidates' payloads, decoded and verified, one of them the item's edited
    copy (cropped, rescaled, recompressed: the pair that goes through to the end of the
    test), the others other photos. For each of the first 10 photos; no decode of an image."""
    from api.duplicates import CANDIDATES

    if len(files) < CANDIDATES:
        print(f"  (fewer than {CANDIDATES} photos: the /duplicates row is left out)")
        return
    stored = [verify.encode(k) for k in found]
    calls = []
    for i, source in enumerate(sources[:10]):
        width, height = source.size
        copy = source.crop((width // 20, height // 20, width - width // 20, height - height // 20))
        copy = copy.resize((copy.width * 7 // 10, copy.height * 7 // 10))
        out = io.BytesIO()
        copy.convert("RGB").save(out, "JPEG", quality=50)
        edited = verify.encode(find_keypoints(Image.open(io.BytesIO(out.getvalue()))))
        others = [s for j, s in enumerate(stored) if j != i][: CANDIDATES - 1]
        calls.append((stored[i], [edited, *others]))

    threshold = Settings().duplicate_threshold  # read once, as the API does per request

    def one_call(call: tuple[str, list[str]]) -> int:
        mine = verify.decode(call[0])
        assert mine is not None
        found = 0
        for payload in call[1]:
            other = verify.decode(payload)
            assert other is not None
            found += verify.verify(mine, other).relation(threshold) == "near"
        return found

    ms = per_photo(one_call, calls, repeat)  # type: ignore[arg-type]
    near = sum(one_call(c) for c in calls)
    print(
        f"  /duplicates: {ms:.2f} CPU-ms per call to decode and verify {CANDIDATES} candidates' "
        f"payloads ({len(calls)} calls; near-duplicates found {near}, of {len(calls)} copies)"
    )
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for call in calls:
            one_call(call)  # type: ignore[arg-type]
        profiler.disable()
        stats = pstats.Stats(profiler)
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"  where a call's time goes (cProfile, {len(calls)} calls, share of {total:.2f} s):")
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
        for (path, line, name), (_, calls_n, own, _cumulative, _) in rows:
            where = f"{Path(path).name}:{line}" if line else "built-in"
            print(f"    {own / total:6.1%} own  {calls_n:6d} calls  {name} ({where})")


def variant_pairs(sources: list[Any], found: list[Any], repeat: int) -> None:
    """What a colour variant costs to verify: the first 10 photos against their hue-shifted
    copies (the hue turned by 85 degrees, a JPEG of quality 90), each pair's payloads
    decoded; the whole verification, and within it lookalike.verify.colour_structure (step
    12, which only such pairs reach) under the pair's refined transform."""
    pairs = []
    for source, points in zip(sources[:10], found[:10], strict=False):
        hsv = np.asarray(source.convert("RGB").convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 256
        out = io.BytesIO()
        Image.fromarray(hsv, "HSV").convert("RGB").save(out, "JPEG", quality=90)
        shifted = find_keypoints(Image.open(io.BytesIO(out.getvalue())))
        pairs.append((verify.encode(points), verify.encode(shifted)))
    threshold = Settings().duplicate_threshold

    def decoded(pair: tuple[str, str]) -> tuple[Any, Any]:
        a, b = verify.decode(pair[0]), verify.decode(pair[1])
        assert a is not None and b is not None
        return a, b

    def whole(pair: tuple[str, str]) -> str | None:
        return verify.verify(*decoded(pair)).relation(threshold)

    warps = []
    for pair in pairs:
        a, b = decoded(pair)
        _, transform = verify._by_keypoints(a, b, verify.MIN_INLIERS)
        if transform is not None:
            warps.append((a, b, verify._refined(a, b, *transform)))

    def step_12(item: tuple[Any, ...]) -> float:
        a, b, warp = item
        # New instances: their colour gradients are made again, as for a fresh pair.
        return verify.colour_structure(replace(a), replace(b), warp)

    ms = per_photo(whole, pairs, repeat)  # type: ignore[arg-type]
    colour_ms = per_photo(step_12, warps, repeat) if warps else 0.0  # type: ignore[arg-type]
    relations = [whole(p) for p in pairs]
    print(
        f"  variants: {ms:.2f} CPU-ms to decode and verify a photo and its hue-shifted copy "
        f"({relations.count('variant')} of {len(pairs)} found as variants, "
        f"{relations.count('near')} as near: a greyish photo's hue barely moves); within it "
        f"{colour_ms:.2f} for the colour edges (step 12, "
        f"{len(warps)} pairs with a transform)"
    )


def keypoint_payload_source(data: bytes, image: Any, larger: Any) -> Any:
    """The picture the worker finds the keypoints on (worker/pipeline.py _decode_item)."""
    if larger is not None:
        return larger
    return keypoint_source(data, image, max_pixels=MAX_PIXELS)


def small(repeat: int) -> None:
    """The same for tiny images: 28 px Fashion-MNIST items (Debian dataset-fashion-mnist)
    as PNG files, decoded and given keypoints as the worker does."""
    if not FASHION.exists():
        print(f"  (no {FASHION}: the small-image row is left out)")
        return
    raw = gzip.decompress(FASHION.read_bytes())
    items = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:200]
    files = []
    for item in items:
        out = io.BytesIO()
        Image.fromarray(item).save(out, "PNG")
        files.append(out.getvalue())

    def as_the_worker(data: bytes) -> Any:
        image, larger = decode_with_larger(
            data, DECODE_SCALED, max_pixels=MAX_PIXELS, input_size=224, longer=verify.SIDE
        )
        return find_keypoints(keypoint_payload_source(data, image, larger))

    ms = per_photo(as_the_worker, files, repeat)
    plain = sum(not as_the_worker(d).verifiable for d in files)
    print(
        f"  {len(files)} Fashion-MNIST items (28x28 PNG): decode + keypoints {ms:.2f} CPU-ms "
        f"each; too plain to verify: {plain} of {len(files)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
