"""A fuzz corpus of image files, and a run of it through the service as a user sends files.

Seeds: a small picture saved in every format this Pillow can write (and several modes of the
formats we accept: palette, greyscale, alpha, 16-bit, progressive, animated GIF/WebP/APNG,
multi-page TIFF), plus hand-built DDS files with pixel formats Pillow does not implement.
Mutants: truncations, bit flips, header bytes set to 0 or to their largest value, and
structure-aware edits that keep a PNG's checksums valid (so the decoder, not the CRC check,
meets them): IHDR sizes and depths, acTL/fcTL frame counts and sizes, PLTE/tRNS lengths, and
a GIF's screen size and palette-size bits.

    python -m benchmarks.fuzz_images --cases 2000 --out build/fuzz
    python -m benchmarks.fuzz_images --decode-times

Files built to be slow to decode within the pixel bound (:func:`slow_files`: a JPEG of
thousands of progressive scans, a PNG of a million empty chunks, a GIF of a million comment
blocks, 40 MP PNGs) come after the seeds; ``--decode-times`` times the API's checks and the
worker's decode on them alone.

runs every mutant through ``POST /v1/items``, ``POST /v1/search`` and a worker batch of the
embedded service (the real model, a real in-process worker), good photos interleaved, and
writes a JSON report: the status codes and error codes seen, the slowest request, any 5xx
or request over 10 s (it exits 1 on those), and whether every good photo was indexed.
tests/reliability/test_fuzz_images.py runs a bounded number of the same cases.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

# A request slower than this is a failure of the run, as a 5xx is.
REQUEST_LIMIT_S = 10.0


def _save(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def _picture(size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small picture with structure in every channel (a flat one compresses to nothing)."""
    grad = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 60)
    return Image.merge("RGB", (grad, noise, grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def _dds(fourcc: bytes, *, width: int = 48, height: int = 40) -> bytes:
    """A DDS header with the given FourCC (one Pillow may not implement) and some data."""
    header = struct.pack("<7I", 124, 0x1007, height, width, 0, 0, 0) + b"\0" * 44
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, fourcc, 0, 0, 0, 0, 0)
    caps = struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return b"DDS " + header + pixel_format + caps + b"\x55" * (width * height)


def _apng_zero_frames(picture: Image.Image) -> bytes:
    """An animated PNG whose acTL declares zero frames."""
    png = _save(picture, "PNG")
    at = png.index(b"IDAT") - 4
    return png[:at] + _png_chunk(b"acTL", struct.pack(">II", 0, 0)) + png[at:]


def seed_files() -> dict[str, bytes]:
    """Valid files: every format Pillow writes here, and the accepted ones in many shapes."""
    Image.init()
    picture = _picture()
    seeds: dict[str, bytes] = {}
    modes = {"XBM": "1", "MSP": "1", "PALM": "P", "SPIDER": "F", "BLP": "P"}
    for fmt in sorted(Image.SAVE):
        try:
            data = _save(picture.convert(modes.get(fmt, "RGB")), fmt)
            with Image.open(io.BytesIO(data)) as img:
                img.size  # noqa: B018 - opens (a format that cannot read back is no seed)
        except Exception:  # a plugin with no writer or no reader here: not a seed
            continue
        seeds[fmt.lower()] = data
    frames = [picture, picture.transpose(Image.Transpose.ROTATE_180)]
    rgba = picture.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(picture.size))
    seeds |= {
        "png-palette-trns": _save(picture.convert("P"), "PNG", transparency=0),
        "png-grey": _save(picture.convert("L"), "PNG"),
        "png-16bit": _save(picture.convert("L").point(lambda v: v * 256).convert("I;16"), "PNG"),
        "png-rgba": _save(rgba, "PNG"),
        "apng": _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "apng-zero-frames": _apng_zero_frames(picture),
        "jpeg-progressive": _save(picture, "JPEG", progressive=True),
        "jpeg-cmyk": _save(picture.convert("CMYK"), "JPEG"),
        "jpeg-grey": _save(picture.convert("L"), "JPEG"),
        "gif-animated": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp-animated": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "webp-lossless-alpha": _save(rgba, "WEBP", lossless=True),
        "tiff-multipage": _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "tiff-deflate": _save(picture, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-rgba": _save(rgba, "TIFF"),
        "bmp-rle8": _save(picture.convert("P"), "BMP"),
        "dds-unknown-fourcc": _dds(b"XXXX"),
        "dds-atc": _dds(b"ATC "),
    }
    return seeds


# --- files that keep a decoder busy within the pixel bound -------------------------------


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of a well-formed JPEG's segments, a scan with its entropy data."""
    segments, pos = [], 2
    while pos < len(data) and data[pos + 1] != 0xD9:
        marker = data[pos + 1]
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
        segments.append((marker, pos, end))
        pos = end
    return segments


def jpeg_many_scans(side: int, scans: int) -> bytes:
    """A progressive JPEG with its smallest scan repeated ``scans`` times: a few bytes each,
    and every scan makes libjpeg pass over all the picture's blocks again."""
    data = _save(Image.new("RGB", (side, side), (128, 120, 110)), "JPEG", progressive=True)
    sos = [s for s in _jpeg_segments(data) if s[0] == 0xDA]
    _, start, end = min(sos, key=lambda s: s[2] - s[1])
    last = sos[-1][2]
    return data[:last] + data[start:end] * scans + data[last:]


def png_many_chunks(count: int, *, after_image: bool = False) -> bytes:
    """A small PNG with ``count`` empty ancillary chunks, before its image data (Pillow's
    header read walks them) or after it (a decode walks them, the header read does not)."""
    png = _save(_picture((64, 64)), "PNG")
    at = png.index(b"IEND" if after_image else b"IDAT") - 4
    return png[:at] + _png_chunk(b"aaAa", b"") * count + png[at:]


def gif_many_extensions(count: int) -> bytes:
    """A GIF with ``count`` empty comment extensions before its image."""
    gif = _save(_picture((64, 64)).convert("P"), "GIF")
    at = 13 + (3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 0)
    return gif[:at] + b"\x21\xfe\x00" * count + gif[at:]


def png_deep(side: int) -> bytes:
    """A ``side``² PNG of 16-bit RGBA, one colour: 0.3 MB at 40 MP, eight bytes a pixel to
    inflate and convert (a legitimate file, the slowest decode within the pixel bound found)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    row = b"\0" * (1 + 8 * side)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    png = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + png


def slow_files(scale: float = 1.0) -> dict[str, bytes]:
    """Files built to make a decoder slow within the pixel bound, ``scale`` the share of the
    full size (the tests use small ones): what docs/reliability.md's decode-time table
    measures with ``python -m benchmarks.fuzz_images --decode-times``."""
    n = max(1, round(1_000_000 * scale))
    return {
        # Refused from their segments / chunks (lookalike.images MAX_JPEG_SCANS,
        # MAX_PNG_CHUNKS) since issue #22.
        "jpeg-3000-scans-36mp": jpeg_many_scans(6000, max(101, round(3000 * scale))),
        "png-chunks-before-image": png_many_chunks(n),
        "png-chunks-after-image": png_many_chunks(n, after_image=True),
        "gif-comment-extensions": gif_many_extensions(n),
        "png-40mp-flat": _save(Image.new("RGB", (6324, 6324), 3), "PNG", compress_level=9),
        "png-40mp-16bit-rgba": png_deep(round(6324 * scale**0.5)),
    }


# --- mutations -------------------------------------------------------------------------


def _truncate(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 2:
        return b""
    cut = rng.choice([rng.randrange(1, min(len(data), 64)), rng.randrange(1, len(data))])
    return data[:cut]


def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    # Mostly in the header, where a flipped bit changes what the decoder is told to do.
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(min(len(out), 128)) if rng.random() < 0.7 else rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_field(data: bytes, rng: random.Random) -> bytes:
    """A 1, 2 or 4-byte field of the header set to 0 or to all ones."""
    width = rng.choice([1, 2, 4])
    at = rng.randrange(0, max(1, min(len(data), 96) - width))
    value = b"\0" * width if rng.random() < 0.5 else b"\xff" * width
    return data[:at] + value + data[at + width :]


def _splice(data: bytes, rng: random.Random) -> bytes:
    """A slice repeated or removed (lengths and offsets stop matching the data)."""
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 256))
    if rng.random() < 0.5:
        return data[:a] + data[a:b] * rng.randint(2, 50) + data[b:]
    return data[:a] + data[b:]


# Fields worth breaking in a PNG's chunks: (chunk, offset, width) in the chunk's body.
_PNG_FIELDS = {
    b"IHDR": [(0, 4), (4, 4), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1)],
    b"acTL": [(0, 4), (4, 4)],
    b"fcTL": [(0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 2), (22, 2), (24, 1), (25, 1)],
}


def _png_field(data: bytes, rng: random.Random) -> bytes:
    """A PNG chunk's field set to 0, 1 or a huge value, or a PLTE/tRNS cut to an odd length,
    with the chunk's CRC recomputed so the decoder (not the checksum) meets it."""
    chunks: list[tuple[int, bytes, int]] = []  # (offset, kind, length)
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    candidates = [c for c in chunks if c[1] in _PNG_FIELDS or c[1] in (b"PLTE", b"tRNS")]
    if not candidates:
        return _set_field(data, rng)
    pos, kind, length = rng.choice(candidates)
    body = bytearray(data[pos + 8 : pos + 8 + length])
    if kind in (b"PLTE", b"tRNS"):
        body = body[: rng.choice([0, 1, 2, 4, len(body) // 2 + 1, len(body) - 1])]
    else:
        at, width = rng.choice(_PNG_FIELDS[kind])
        value = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF]) & ((1 << (8 * width)) - 1)
        body[at : at + width] = value.to_bytes(width, "big")
    return data[:pos] + _png_chunk(kind, bytes(body)) + data[pos + 12 + length :]


def _gif_field(data: bytes, rng: random.Random) -> bytes:
    """A GIF's logical screen size or its palette-size bits broken."""
    out = bytearray(data)
    if rng.random() < 0.5:
        out[6:10] = rng.choice([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\x01\0\x01\0"])
    else:
        out[10] = (out[10] & 0xF8) | rng.randrange(8)  # declared global palette size
    return bytes(out)


_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "flip": _flip_bits,
    "field": _set_field,
    "splice": _splice,
}


def mutate(name: str, data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutant of a seed: 1 to 3 mutations; returns (description, bytes)."""
    ops = dict(_MUTATIONS)
    if data.startswith(b"\x89PNG"):
        ops["png-field"] = _png_field
        ops["png-field2"] = _png_field  # twice as likely: it reaches the decoder
    if data.startswith(b"GIF8"):
        ops["gif-field"] = _gif_field
    applied = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(sorted(ops))
        data = ops[op](data, rng) if data else data
        applied.append(op.rstrip("2"))
    return f"{name}+{'+'.join(applied)}", data


def corpus(cases: int, seed: int = 0, *, slow: bool = False) -> list[tuple[str, bytes]]:
    """The seeds themselves (with ``slow``, then :func:`slow_files`), then mutants, ``cases``
    files in all (deterministic per seed)."""
    seeds = seed_files()
    files = list(seeds.items())
    if slow:
        files += [(f"slow-{name}", data) for name, data in slow_files().items()]
    files = files[:cases]
    rng = random.Random(seed)
    names = sorted(seeds)
    while len(files) < cases:
        name = rng.choice(names)
        files.append(mutate(name, seeds[name], rng))
    return files


# --- the run through the service -------------------------------------------------------


def run_through_service(
    client: Any,
    files: list[tuple[str, bytes]],
    good: list[bytes],
    *,
    image_dir: Path,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Every file through POST /v1/items, POST /v1/search and a worker batch, the good
    photos interleaved; returns the report (see the module's docstring)."""
    from lookalike.blobs import BlobStore
    from lookalike.images import sha256_hex

    blobs = BlobStore(image_dir)
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    server_errors: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    slowest = (0.0, "")
    good_ids: list[str] = []

    def timed(label: str, call: Callable[[], Any]) -> Any:
        nonlocal slowest
        started = time.perf_counter()
        resp = call()
        took = time.perf_counter() - started
        slowest = max(slowest, (took, label))
        if took > REQUEST_LIMIT_S:
            slow.append({"case": label, "seconds": round(took, 2)})
        statuses[f"{label.split(':')[0]} {resp.status_code}"] += 1
        body = resp.get_json(silent=True) or {}
        if resp.status_code >= 500:
            server_errors.append({"case": label, "status": resp.status_code, "body": body})
        elif "error" in body:
            codes[body["error"]["code"]] += 1
        return resp

    batch: list[dict[str, str]] = []
    task_ids: list[str] = []
    for n, (name, data) in enumerate(files):
        item_id = f"fuzz-{n}"
        form = {"id": item_id, "image": (io.BytesIO(data), "upload.jpg")}
        timed(f"items:{name}", lambda f=form: client.post("/v1/items", data=f))
        query = {"image": (io.BytesIO(data), "query.jpg")}
        timed(f"search:{name}", lambda q=query: client.post("/v1/search?limit=1", data=q))
        # The worker meets the same bytes as a damaged file in the image store would reach it.
        if data:
            blobs.put(sha256_hex(data), data, tenant="default")
        batch.append({"id": f"{item_id}-worker", "image_sha256": sha256_hex(data)})
        if n % 8 == 0:  # a good photo in between, by upload and in the batch
            photo = good[(n // 8) % len(good)]
            good_id = f"good-{n}"
            resp = timed(
                "good",
                lambda g=good_id, p=photo: client.post(
                    "/v1/items", data={"id": g, "image": (io.BytesIO(p), "good.jpg")}
                ),
            )
            if resp.status_code == 202:
                good_ids.append(good_id)
            blobs.put(sha256_hex(photo), photo, tenant="default")
            batch.append({"id": f"{good_id}-worker", "image_sha256": sha256_hex(photo)})
            good_ids.append(f"{good_id}-worker")
        if len(batch) >= batch_size or n == len(files) - 1:
            resp = timed("batch", lambda b=batch: client.post("/v1/batches", json={"items": b}))
            if resp.status_code == 202:
                task_ids.append(resp.get_json()["task_id"])
            batch = []

    tasks = [_wait(client, task_id) for task_id in task_ids]
    for task in tasks:
        for failure in task.get("failed", []):
            codes[f"worker {failure['code']}"] += 1
    missing = [i for i in good_ids if client.get(f"/v1/items/{i}").status_code != 200]
    return {
        "files": len(files),
        "statuses": dict(sorted(statuses.items())),
        "codes": dict(sorted(codes.items())),
        "server_errors": server_errors,
        "over_limit": slow,
        "slowest": {"case": slowest[1], "seconds": round(slowest[0], 3)},
        "worker_tasks": Counter(t["status"] for t in tasks),
        "good_images": len(good_ids),
        "good_images_missing": missing,
    }


def _wait(client: Any, task_id: str, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").get_json()
        if body["status"] not in ("queued", "running", "retrying"):
            return body
        time.sleep(0.2)
    return {"status": "timed_out", "task_id": task_id}


def good_photos(count: int = 8) -> list[bytes]:
    """Real catalog-like photos: Debian's tuxpaint stamps as JPEGs, else generated ones."""
    stamps = sorted(Path("/usr/share/tuxpaint/stamps").glob("**/*.png"))[:count]
    photos = []
    for path in stamps:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba)
        photos.append(_save(flat, "JPEG", quality=90))
    while len(photos) < count:
        photos.append(_save(_picture((640, 480)).rotate(len(photos) * 40), "JPEG"))
    return photos


def decode_times() -> str:
    """A markdown table: CPU seconds of the API's header check and validation and of the
    worker's (in-process) decode on each of :func:`slow_files`, with the code each gives."""
    from lookalike.images import DECODE_SCALED, ImageProblem, check_image, decode_as, validate_image

    def decode(data: bytes, max_pixels: int) -> Any:
        return decode_as(data, DECODE_SCALED, max_pixels=max_pixels, input_size=224)

    rows = [
        "| file | size | API check | API validate | worker decode |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, data in slow_files().items():
        cells = [name, f"{len(data) / 1e6:.2f} MB"]
        for fn in (check_image, validate_image, decode):
            started = time.process_time()
            try:
                fn(data, max_pixels=40_000_000)
                outcome = "ok"
            except ImageProblem as exc:
                outcome = f"`{exc.code}`"
            cells.append(f"{time.process_time() - started:.3f} s {outcome}")
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fuzz_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", type=int, default=2000, help="files to send (seeds first)")
    parser.add_argument("--seed", type=int, default=0, help="the mutants' random seed")
    parser.add_argument("--out", type=Path, default=Path("build/fuzz"), help="report folder")
    parser.add_argument("--save-corpus", action="store_true", help="also write every file")
    parser.add_argument("--model-cache", type=Path, default=None, help="converted model cache")
    parser.add_argument(
        "--no-slow", action="store_true", help="leave out the slow-to-decode files (slow_files)"
    )
    parser.add_argument(
        "--decode-times",
        action="store_true",
        help="only time check_image, validate_image and the worker's decode on slow_files",
    )
    args = parser.parse_args(argv)
    if args.decode_times:
        print(decode_times())
        return 0

    from launcher.embedded import start_embedded
    from lookalike.settings import Settings

    files = corpus(args.cases, args.seed, slow=not args.no_slow)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.save_corpus:
        (args.out / "corpus").mkdir(exist_ok=True)
        for n, (name, data) in enumerate(files):
            (args.out / "corpus" / f"{n:05d}-{name.replace('+', '_')}.bin").write_bytes(data)
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {"data_dir": Path(tmp) / "data"}
        if args.model_cache:
            overrides["model_cache"] = args.model_cache
        settings = Settings(**overrides)
        service = start_embedded(settings)
        try:
            started = time.perf_counter()
            report = run_through_service(
                service.app.test_client(), files, good_photos(), image_dir=settings.image_dir
            )
            report["seconds"] = round(time.perf_counter() - started, 1)
        finally:
            service.stop()
    report["seed"] = args.seed
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: report[k] for k in ("files", "statuses", "codes", "slowest")}, indent=2))
    failed = report["server_errors"] or report["over_limit"] or report["good_images_missing"]
    print(f"{'FAILED' if failed else 'ok'}: report in {args.out / 'report.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
