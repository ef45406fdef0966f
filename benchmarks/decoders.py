"""Shrink-on-load decoders side by side: ``python -m benchmarks.decoders [--per-size N]``.

On the realistic photo set (benchmarks/photoset.py), per size: CPU ms per image (this
process, one thread) to go from the file's bytes to the model's 224 px input, for

- ``pillow-full``: Pillow decodes every pixel, then the worker's framing (bicubic, with a box
  reduce first: worker/model/preprocess.py) — the ingest path before shrink-on-load;
- ``pillow-draft-1x`` / ``pillow-draft-2x``: Pillow's ``draft`` (libjpeg-turbo scales inside
  the IDCT by 1/2, 1/4 or 1/8) to the smallest scale with both sides at least 224 / 448 px,
  then the same framing;
- ``simplejpeg-1x`` / ``simplejpeg-2x``: the same scaled IDCT through simplejpeg's binding of
  libjpeg-turbo (when it is installed), then the same framing;

and for each, how far the embedding moves from ``pillow-full`` (cosine). WebP and PNG have no
scaled decode in these libraries: their rows show the full decode for reference.

Then the API's blob write path (``POST /v1/blobs``, 16 images a request, as ``indexer ingest``
sends them, through the Flask app in this process on a temporary data folder): CPU ms per
image, beside its validation alone (``validate_image``: a JPEG's entropy-coded data read at
1/8 scale, a PNG's checksums; the API never decodes a JPEG or PNG upload in full) and a full
decode for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import photoset
from lookalike.images import decode_image
from lookalike.settings import Settings

LIMIT = 40_000_000
SIZE = 224


def _simplejpeg(factor: int) -> Callable[[bytes], Image.Image] | None:
    try:
        import simplejpeg
    except ImportError:
        return None

    def decode(data: bytes) -> Image.Image:
        side = factor * SIZE
        array = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=side, min_width=side, fastdct=False
        )
        return Image.fromarray(array)

    return decode


def candidates() -> dict[str, Callable[[bytes], Image.Image]]:
    out: dict[str, Callable[[bytes], Image.Image]] = {
        "pillow-full": lambda d: decode_image(d, max_pixels=LIMIT),
        "pillow-draft-1x": lambda d: decode_image(d, max_pixels=LIMIT, draft_size=SIZE),
        "pillow-draft-2x": lambda d: decode_image(d, max_pixels=LIMIT, draft_size=2 * SIZE),
    }
    for factor in (1, 2):
        fn = _simplejpeg(factor)
        if fn is not None:
            out[f"simplejpeg-{factor}x"] = fn
    return out


def cpu_ms(fn: Callable[[bytes], Image.Image], datas: list[bytes], repeat: int) -> float:
    from worker.model.preprocess import preprocess

    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        for data in datas:
            preprocess([fn(data)], SIZE, "resize")
        best = min(best, (time.process_time() - began) * 1000 / len(datas))
    return best


def run(per_size: int, sample: int, repeat: int, cache: Path | None) -> list[dict[str, object]]:
    from worker.model import get_embedder
    from worker.model.preprocess import preprocess

    folders = photoset.build(per_size=per_size)
    settings = Settings.from_env()
    if cache is not None:
        settings = settings.replace(model_cache=cache)
    embedder = get_embedder(settings)
    rows: list[dict[str, object]] = []
    for size, folder in folders.items():
        files = photoset.image_files(folder)
        by_format: dict[str, list[bytes]] = {}
        for path in files[:: max(1, len(files) // sample)][:sample]:  # spread over sources
            by_format.setdefault(path.suffix, []).append(path.read_bytes())
        jpegs = by_format.get(".jpg", [])
        full_vectors = embedder.embed([decode_image(d, max_pixels=LIMIT) for d in jpegs])
        for name, fn in candidates().items():
            vectors = embedder.embed([fn(d) for d in jpegs])
            cosines = np.sum(full_vectors * vectors, axis=1)
            row = {
                "size": size,
                "format": "JPEG",
                "decoder": name,
                "n": len(jpegs),
                "cpu_ms": cpu_ms(fn, jpegs, repeat),
                "cosine_min": float(cosines.min()),
                "cosine_median": float(np.median(cosines)),
            }
            rows.append(row)
            print(row, flush=True)
        for ext, label in ((".webp", "WebP"), (".png", "PNG+alpha")):
            datas = by_format.get(ext, [])
            if datas:
                row = {
                    "size": size,
                    "format": label,
                    "decoder": "pillow-full",
                    "n": len(datas),
                    "cpu_ms": cpu_ms(candidates()["pillow-full"], datas, repeat),
                }
                rows.append(row)
                print(row, flush=True)
        # The framing alone, from a full decode, to split decode from resize.
        decoded = [decode_image(d, max_pixels=LIMIT) for d in jpegs]
        began = time.process_time()
        for img in decoded:
            preprocess([img], SIZE, "resize")
        frame = (time.process_time() - began) * 1000 / max(1, len(decoded))
        rows.append({"size": size, "format": "JPEG", "decoder": "framing alone", "cpu_ms": frame})
        print(rows[-1], flush=True)
    return rows


def api_blob_path(per_size: int, sample: int, repeat: int) -> list[dict[str, object]]:
    import hashlib
    import io
    import shutil
    import tempfile

    from api.app import create_app
    from lookalike.images import validate_image

    folders = photoset.build(per_size=per_size)
    rows: list[dict[str, object]] = []
    for size, folder in folders.items():
        files = photoset.image_files(folder)
        datas = [p.read_bytes() for p in files[:: max(1, len(files) // sample)][:sample]]
        best = float("inf")
        for _ in range(repeat):
            tmp = Path(tempfile.mkdtemp(prefix="blobs-"))
            try:
                client = create_app(Settings(data_dir=tmp)).test_client()
                began = time.process_time()
                for start in range(0, len(datas), 16):
                    form = {
                        hashlib.sha256(d).hexdigest(): (io.BytesIO(d), "image")
                        for d in datas[start : start + 16]
                    }
                    resp = client.post("/v1/blobs", data=form, content_type="multipart/form-data")
                    assert resp.status_code == 200 and not resp.get_json()["rejected"]
                best = min(best, (time.process_time() - began) * 1000 / len(datas))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        began = time.process_time()
        for d in datas:
            validate_image(d, max_pixels=LIMIT)
        validate = (time.process_time() - began) * 1000 / len(datas)
        began = time.process_time()
        for d in datas:
            decode_image(d, max_pixels=LIMIT)
        full = (time.process_time() - began) * 1000 / len(datas)
        row = {"size": size, "n": len(datas), "api_ms": best, "validate_ms": validate}
        row["full_decode_ms"] = full
        rows.append(row)
        print(row, flush=True)
    return rows


def render_api(rows: list[dict[str, object]]) -> str:
    lines = [
        "| size | n | POST /v1/blobs CPU ms/image | of which validation | a full decode |",
        "| --- | --: | --: | --: | --: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['n']} | {float(r['api_ms']):.1f} | "  # type: ignore[arg-type]
            f"{float(r['validate_ms']):.1f} | {float(r['full_decode_ms']):.1f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        "| size | format | decoder | n | CPU ms/image (decode + frame to 224) | "
        "cosine to full (min / median) |",
        "| --- | --- | --- | --: | --: | --: |",
    ]
    for r in rows:
        cos = f"{r['cosine_min']:.4f} / {r['cosine_median']:.4f}" if "cosine_min" in r else ""
        lines.append(
            f"| {r['size']} | {r['format']} | {r['decoder']} | {r.get('n', '')} | "
            f"{float(r['cpu_ms']):.1f} | {cos} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoders", description=__doc__)
    parser.add_argument("--per-size", type=int, default=400, help="photo set size per MP")
    parser.add_argument("--sample", type=int, default=60, help="photos timed per size")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many passes")
    parser.add_argument("--model-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    decoders = render(run(args.per_size, args.sample, args.repeat, args.model_cache))
    api = render_api(api_blob_path(args.per_size, args.sample, args.repeat))
    print(decoders + "\n\n" + api)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
