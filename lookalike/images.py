"""Decoding and validating catalog images: one place, used by the API (to refuse bad uploads
early) and by the worker (to decode before embedding)."""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Formats we accept. Everything else is refused with `unsupported_format`, even if Pillow could
# open it, so the accepted set is a documented contract rather than an accident of plugins.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
# The file names the indexer takes for images of those formats (folders, datasets).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MIN_SIDE = 8
MAX_ASPECT_RATIO = 20.0
# A progressive JPEG's decoder passes over every block of the picture once per scan, so a
# file of thousands of tiny scans keeps libjpeg busy for minutes within the pixel bound (a
# 0.3 MB 36 MP file of 3,000 scans: 2.1 s; docs/reliability.md). Encoders write 10 or so.
MAX_JPEG_SCANS = 100
# Pillow walks a PNG's chunks in Python, ~2.6 µs each: a million empty ones (12 MB) keep the
# API's header read busy for seconds. Encoders write a few dozen, plus one IDAT per 8-64 KB of
# image data (a 16 MB upload: at most ~2,000).
MAX_PNG_CHUNKS = 100_000

# How a catalog item's picture was decoded before framing, recorded on its point under
# DECODE_FIELD: vectors are comparable only between points decoded alike. ``full``: every
# pixel (catalogs indexed before shrink-on-load; a point without the field was decoded so);
# ``scaled-1``: :func:`decode_scaled` (shrink-on-load). A catalog keeps the way its points
# were decoded until ``indexer reindex`` rebuilds it (worker/pipeline.py).
DECODE_FIELD = "decode"
DECODE_FULL = "full"
DECODE_SCALED = "scaled-1"
# ``scaled-1`` keeps both sides of a picture at least this many times the model's input side
# (docs/performance.md compares the factors and decoders on realistic photos).
SCALED_DECODE_FACTOR = 1

# Truncated files must fail, not be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass  # not frozen: raising sets the exception's __traceback__
class ImageProblem(Exception):
    """Why an image cannot be used; `code` is stable and machine-readable."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ISO-BMFF brands of formats people upload from phones that we do not decode.
_UNSUPPORTED_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


def check_image(data: bytes, *, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """The checks that need only the file's header: a supported format, a size within
    bounds. Returns (format, (width, height)). A file that passes may still be truncated or
    corrupt further in: only :func:`decode_image` finds that.

    Raises ImageProblem as :func:`decode_image` does.
    """
    with _problems():
        img = _open(data, max_pixels)
        return str(img.format), img.size


def validate_image(data: bytes, *, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Whether the bytes are a usable picture, at a fraction of a decode's cost: the header
    checks of :func:`check_image`, then the whole file read through: a PNG's chunks checked
    against their CRCs up to its end, a JPEG decoded at 1/8 scale (its entropy-coded data is
    read in full at any scale), a WebP's RIFF chunks checked to fit the file (libwebp has
    no cheaper pass than a full decode, 20-40 ms at 1.5-4 MP), other formats decoded. A file
    damaged in transit or cut short fails here as it fails a decode, with the same codes; a
    PNG forged with valid checksums around a broken compressed stream, or a WebP garbled
    inside a chunk, passes, and fails in the worker, recorded per item.

    Returns (format, (width, height)); raises ImageProblem.
    """
    with _problems():
        img = _open(data, max_pixels)
        fmt, size = str(img.format), img.size
        if fmt == "PNG":
            img.verify()
        elif fmt == "WEBP":
            _check_riff(data)
        else:
            if fmt == "JPEG":
                img.draft("RGB", (1, 1))
            img.load()
        return fmt, size


def _check_riff(data: bytes) -> None:
    """A WebP file's RIFF structure: the declared size and every chunk within the file."""
    declared = int.from_bytes(data[4:8], "little") + 8
    if len(data) < declared:
        raise ImageProblem(
            "corrupt_image",
            f"the image could not be decoded: the WebP file is cut short "
            f"({len(data)} of {declared} bytes)",
        )
    offset = 12
    while offset + 8 <= declared:
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += 8 + size + (size & 1)
    if offset > declared + 1:  # a last chunk's padding byte may be left out
        raise ImageProblem(
            "corrupt_image", "the image could not be decoded: a WebP chunk overruns the file"
        )


def decode_image(data: bytes, *, max_pixels: int, draft_size: int = 0) -> Image.Image:
    """Decode bytes into an RGB image, or an ``L`` one for a greyscale picture (EXIF
    orientation applied, first frame of animations). Kept greyscale, an image is framed for
    the model on one channel instead of three (worker/model/preprocess.py), same pixels.

    ``draft_size`` > 0 lets a JPEG decode at a reduced scale (1/2, 1/4 or 1/8, done inside
    the IDCT) as long as both sides stay at least ``draft_size`` pixels: a 12 MP photo headed
    for a 224 px model then decodes several times faster. Other formats ignore it.

    Raises ImageProblem for anything that is not a usable picture.
    """
    with _problems():
        img = _open(data, max_pixels)
        img.seek(0)
        if draft_size > 0 and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        # In place: the decoded picture is ours, and a copy of a 12 MP photo is 36 MB.
        ImageOps.exif_transpose(img, in_place=True)
        return _to_rgb_or_grey(img)


def decode_scaled(data: bytes, *, max_pixels: int, side: int) -> Image.Image:
    """Decode only the pixels a model of input ``side`` needs (shrink-on-load): a JPEG at the
    smallest IDCT scale (1/2, 1/4, 1/8) that keeps both sides at least ``side``, then any
    picture still twice that or more box-reduced by an integer factor that keeps both sides
    at least ``side``. The full-resolution pixels of a JPEG are never held; those of other
    formats only until the reduce. Same checks and codes as :func:`decode_image`.
    """
    return _reduced(decode_image(data, max_pixels=max_pixels, draft_size=side), side)


def _reduced(img: Image.Image, side: int) -> Image.Image:
    """``img`` box-reduced by the largest integer factor that keeps both sides >= ``side``."""
    factor = min(img.size) // side
    if factor < 2:
        return img
    with _problems():
        return img.reduce(factor)


def decode_as(data: bytes, mode: str, *, max_pixels: int, input_size: int) -> Image.Image:
    """A catalog image decoded the way ``mode`` (``DECODE_FULL`` / ``DECODE_SCALED``) says,
    for a model of input side ``input_size``: what the worker, ``indexer evaluate`` and the
    duplicate benchmark all decode."""
    if mode == DECODE_FULL:
        return decode_image(data, max_pixels=max_pixels)
    return decode_scaled(data, max_pixels=max_pixels, side=SCALED_DECODE_FACTOR * input_size)


# A region of a photo: x, y, width, height as fractions of its (upright) width and height.
Box = tuple[float, float, float, float]
# The smallest region side a search may ask for: 2% of the photo's side.
MIN_BOX_SIDE = 0.02


def check_box(box: Box) -> Box:
    """``box`` if it is a region inside the photo, else ValueError saying why."""
    x, y, w, h = box
    if not all(map(math.isfinite, box)):
        raise ValueError("the box must be four finite numbers")
    if x < 0 or y < 0:
        raise ValueError("the box's x and y must be at least 0")
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        raise ValueError(f"the box's width and height must be at least {MIN_BOX_SIDE}")
    # A little slack for boxes drawn in a browser (rounded fractions).
    if x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
        raise ValueError("the box must lie inside the photo: x + width and y + height <= 1")
    return box


def crop_box(image: Image.Image, box: Box) -> Image.Image:
    """The region of ``image`` that a checked ``box`` covers (at least one pixel)."""
    x, y, w, h = box
    width, height = image.size
    left, top = min(int(x * width), width - 1), min(int(y * height), height - 1)
    right = min(max(left + 1, round((x + w) * width)), width)
    bottom = min(max(top + 1, round((y + h) * height)), height)
    return image.crop((left, top, right, bottom))


def decode_with_larger(
    data: bytes, mode: str, *, max_pixels: int, input_size: int, longer: int
) -> tuple[Image.Image, Image.Image | None]:
    """:func:`decode_as`'s picture and, from the same decode when it held them, the picture
    reduced by the largest integer factor that keeps ``longer`` pixels on its longer side
    (the whole picture when it has fewer): what the near-duplicate keypoints are found on
    (worker/keypoints.py). None when the decode kept fewer pixels than that (a JPEG decoded
    at a reduced scale): the caller decodes again, at the scale it needs. A PNG or WebP
    photo, always decoded in full, is decoded once instead of twice (a 1.5 MP PNG: 30 CPU-ms
    a decode)."""
    if mode == DECODE_FULL:
        image = decode_image(data, max_pixels=max_pixels)
        return image, image
    side = SCALED_DECODE_FACTOR * input_size
    img = decode_image(data, max_pixels=max_pixels, draft_size=side)
    width, height = img.size
    larger: Image.Image | None = None
    if max(width, height) >= longer:
        # The shorter side that goes with ``longer`` on the longer one.
        larger = _reduced(img, -(-longer * min(width, height) // max(width, height)))
    else:
        with Image.open(io.BytesIO(data)) as header:
            if header.width * header.height == width * height:
                larger = img  # the whole picture
    return _reduced(img, side), larger


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open the image lazily (header only) and apply the header checks."""
    if not data:
        raise ImageProblem("empty_image", "the image file is empty")
    if data[4:8] == b"ftyp" and (brand := _UNSUPPORTED_BRANDS.get(data[8:12])):
        raise ImageProblem(
            "unsupported_format",
            f"{brand} images are not supported; convert to JPEG, PNG or WebP",
        )
    # Before Pillow's header read, which walks the chunks before the image data itself.
    if data.startswith(_PNG_SIGNATURE) and png_chunks(data, MAX_PNG_CHUNKS) > MAX_PNG_CHUNKS:
        raise ImageProblem(
            "corrupt_image",
            f"the PNG has more than {MAX_PNG_CHUNKS} chunks, which only a damaged or hostile "
            "file has; re-encode it",
        )
    img = Image.open(io.BytesIO(data))
    fmt = img.format
    if fmt not in SUPPORTED_FORMATS:
        raise ImageProblem(
            "unsupported_format",
            f"image format {fmt or 'unknown'} is not supported; "
            f"use one of {', '.join(sorted(SUPPORTED_FORMATS))}",
        )
    width, height = img.size
    if width * height > max_pixels:
        raise ImageProblem(
            "image_too_large",
            f"image is {width}x{height} pixels; the limit is {max_pixels} pixels",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageProblem(
            "image_too_small",
            f"image is {width}x{height}; both sides must be >= {MIN_SIDE}",
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageProblem(
            "bad_aspect_ratio",
            f"image is {width}x{height}; the longer side may be at most "
            f"{MAX_ASPECT_RATIO:g} times the shorter",
        )
    if fmt == "JPEG" and jpeg_scans(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise ImageProblem(
            "corrupt_image",
            f"the JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes), which only "
            "a damaged or hostile file has; re-encode it",
        )
    return img


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes, limit: int) -> int:
    """How many chunks a PNG holds, counting no further than ``limit`` + 1 (their lengths
    walked, ~0.3 µs a chunk; the checksums are Pillow's to check)."""
    chunks, pos, end = 0, 8, len(data)
    while pos + 8 <= end and chunks <= limit:
        chunks += 1
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return chunks


# A marker: 0xFF then a byte that is not a stuffed zero, a restart marker or a fill byte
# (the only ways 0xFF appears in entropy-coded data).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9


def jpeg_scans(data: bytes, limit: int) -> int:
    """How many scans (SOS segments) a JPEG holds, counting no further than ``limit`` + 1:
    its segments walked by their lengths, each scan's entropy-coded data skipped to the next
    marker by a regular expression (C speed: well under a millisecond for a 4 MP photo).
    Stops at the first EOI, so a trailer after the picture (a phone's preview, a video) is
    not read."""
    scans = 0
    pos = 2
    while scans <= limit:
        if data[pos : pos + 1] != b"\xff" or data[pos + 1 : pos + 2] in (b"\xff", b""):
            # Fill bytes, or a segment that does not end where its length said: on to the
            # next marker.
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
        marker = data[pos + 1]
        if marker == _EOI:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            scans += 1
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return scans


@contextmanager
def _problems() -> Iterator[None]:
    """Pillow's many exceptions, as ImageProblem with a stable code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem("image_too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageProblem("not_an_image", "the file is not a recognised image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageProblem("corrupt_image", f"the image could not be decoded: {exc}") from exc
    except NotImplementedError as exc:
        # A plugin meeting a variant it has no code for (a DDS pixel format, ...).
        raise ImageProblem(
            "unsupported_format", f"the image uses a variant that is not supported: {exc}"
        ) from exc
    except MemoryError as exc:
        raise ImageProblem("image_too_large", "the image needs too much memory to decode") from exc
    except Exception as exc:
        # Whatever else a decoder plugin raises on a malformed file (IndexError, struct.error,
        # TypeError, ZeroDivisionError, ...): the file is at fault, never the service, so a
        # 422 / a per-item failure, not a 500 or a dead worker (issue #22; the fuzz corpus in
        # benchmarks/fuzz_images.py looks for more).
        raise ImageProblem(
            "corrupt_image", f"the image could not be decoded: {type(exc).__name__}: {exc}"
        ) from exc


def has_transparency(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def flatten_on_white(img: Image.Image) -> Image.Image:
    """An image with transparency as RGB on white (catalog photos are shown on white)."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    # One pass, the same pixels as compositing onto an RGBA white and converting: a quarter
    # less time on a small photo than those three steps.
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba)
    return flat


def _to_rgb_or_grey(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white, convert to RGB; 8-bit greyscale (``L``) stays as it
    is."""
    if has_transparency(img):
        return flatten_on_white(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping.
        return img.point(lambda v: v / 256).convert("L")
    return img if img.mode == "L" else img.convert("RGB")
