"""Decoding and validating uploads: every odd file a catalog contains gets a clear verdict."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lookalike.images import (
    ImageProblem,
    check_image,
    decode_image,
    decode_scaled,
    validate_image,
)
from worker.model.preprocess import preprocess

MAX_PIXELS = 40_000_000


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def problem(data: bytes) -> str:
    with pytest.raises(ImageProblem) as info:
        decode_image(data, max_pixels=MAX_PIXELS)
    assert info.value.message
    return info.value.code


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions but holds almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())  # a real photo, 451x300


def test_unusable_files_are_refused_with_stable_codes(photo: Image.Image) -> None:
    jpeg = encode(photo, "JPEG")
    png = encode(photo, "PNG")
    assert problem(b"") == "empty_image"
    assert problem(jpeg[: len(jpeg) // 2]) == "corrupt_image"
    assert problem(png[: len(png) // 2]) == "corrupt_image"
    assert problem(b"plain text, not a picture\n" * 10) == "not_an_image"
    assert problem(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n") == "not_an_image"
    assert problem(png_header_only(50_000, 50_000)) == "image_too_large"
    assert problem(encode(Image.new("RGB", (1, 1)), "PNG")) == "image_too_small"
    assert problem(encode(Image.new("RGB", (2000, 10)), "PNG")) == "bad_aspect_ratio"
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    assert problem(heic) == "unsupported_format"
    assert problem(encode(photo, "ICO")) == "unsupported_format"


@pytest.mark.parametrize(
    "mode",
    ["RGB", "RGBA", "L", "LA", "CMYK", "P", "I;16"],
)
def test_every_pixel_format_decodes_to_rgb_or_grey(photo: Image.Image, mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    source = photo.convert("I;16") if mode == "I;16" else photo.convert(mode)
    decoded = decode_image(encode(source, fmt), max_pixels=MAX_PIXELS)
    assert decoded.mode == ("L" if mode in ("L", "I;16") else "RGB")
    assert decoded.size == photo.size


@pytest.mark.parametrize("preprocess_mode", ["pad", "stretch", "crop"])
@pytest.mark.parametrize("size", [(28, 28), (60, 40), (300, 500)])
def test_a_grey_image_frames_as_its_rgb_conversion(
    photo: Image.Image, preprocess_mode: str, size: tuple[int, int]
) -> None:
    """Greyscale images skip the RGB conversion: the model input must be the very bytes the
    converted image gives."""
    grey = photo.convert("L").resize(size)
    rgb = grey.convert("RGB")
    assert np.array_equal(
        preprocess([grey], 224, preprocess_mode), preprocess([rgb], 224, preprocess_mode)
    )


def test_transparency_is_flattened_onto_white() -> None:
    clear = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    assert decode_image(encode(clear, "PNG"), max_pixels=MAX_PIXELS).getpixel((5, 5)) == (
        255,
        255,
        255,
    )
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    data = encode(palette, "PNG", transparency=0)
    assert decode_image(data, max_pixels=MAX_PIXELS).getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_honoured(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = encode(photo, "JPEG", exif=exif.tobytes())
    decoded = decode_image(data, max_pixels=MAX_PIXELS)
    assert decoded.size == (photo.height, photo.width)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_their_first_frame(fmt: str) -> None:
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    blue = Image.new("RGB", (40, 40), (0, 0, 255))
    data = encode(red, fmt, save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    r, _, b = decode_image(data, max_pixels=MAX_PIXELS).getpixel((20, 20))
    assert r > 200 and b < 50


def _verdict(check: object, data: bytes) -> str | None:
    try:
        check(data, max_pixels=MAX_PIXELS)  # type: ignore[operator]
    except ImageProblem as exc:
        return exc.code
    return None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_validation_refuses_every_damaged_file_a_decode_refuses(
    photo: Image.Image, fmt: str
) -> None:
    """The API validates uploads without decoding them in full (a PNG's checksums, a JPEG at
    1/8 scale); whatever a decode refuses, validation refuses with the same code."""
    data = encode(photo, fmt)
    damaged = [data[: int(len(data) * cut)] for cut in (0.05, 0.3, 0.5, 0.7, 0.9, 0.99)]
    for at in (0.3, 0.5, 0.8):  # 16 bytes garbled in the middle of the image data
        i = int(len(data) * at)
        damaged.append(data[:i] + bytes(b ^ 0xFF for b in data[i : i + 16]) + data[i + 16 :])
    refused = 0
    for bad in damaged:
        decoded, validated = _verdict(decode_image, bad), _verdict(validate_image, bad)
        if decoded is not None:
            assert validated == decoded, (fmt, len(bad), decoded, validated)
            refused += 1
        elif fmt == "JPEG":
            # The same entropy-coded data is read at any scale: the same verdict.
            assert validated is None
        else:
            # A PNG's chunk checksums catch garbling a decode lets through as noise.
            assert validated in (None, "corrupt_image")
    assert refused >= 6  # at least every cut-short file
    assert validate_image(data, max_pixels=MAX_PIXELS) == (fmt, photo.size)


@pytest.fixture(scope="module")
def catalog_photo(photo: Image.Image) -> Image.Image:
    """A catalog-sized photo (1800x1200, 2.2 MP) with real detail: the cat, upscaled, with
    sensor noise so that its entropy-coded data is as dense as a camera's."""
    big = np.asarray(photo.resize((1800, 1200), Image.Resampling.BICUBIC)).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 3, big.shape)
    return Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_scaled_decode_keeps_what_the_model_needs_and_no_more(
    catalog_photo: Image.Image, fmt: str
) -> None:
    """Shrink-on-load: both sides stay at least the model's side, and below twice it (a JPEG
    by its IDCT scale, other formats by an integer reduce): the framed model input is the
    full decode's within a few grey levels."""
    data = encode(catalog_photo, fmt, quality=90) if fmt != "PNG" else encode(catalog_photo, fmt)
    scaled = decode_scaled(data, max_pixels=MAX_PIXELS, side=224)
    assert scaled.mode == "RGB"
    assert 224 <= min(scaled.size) < 2 * 224
    assert scaled.width / scaled.height == pytest.approx(1.5, rel=0.02)
    full = decode_image(data, max_pixels=MAX_PIXELS)
    a = preprocess([full], 224, "resize").astype(np.int16)
    b = preprocess([scaled], 224, "resize").astype(np.int16)
    assert np.mean(np.abs(a - b)) < 3.0


def test_a_scaled_decode_of_a_small_image_is_the_full_decode(photo: Image.Image) -> None:
    data = encode(photo, "JPEG", quality=90)
    scaled = decode_scaled(data, max_pixels=MAX_PIXELS, side=224)
    assert scaled.size == photo.size
    assert np.array_equal(np.asarray(scaled), np.asarray(decode_image(data, max_pixels=1 << 30)))


def test_a_scaled_decode_honours_exif_orientation(catalog_photo: Image.Image) -> None:
    from PIL import ExifTags

    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored on its side: turn 90° clockwise to view
    sideways = catalog_photo.transpose(Image.Transpose.ROTATE_90)
    data = encode(sideways, "JPEG", quality=90, exif=exif)
    scaled = decode_scaled(data, max_pixels=MAX_PIXELS, side=224)
    assert scaled.width > scaled.height  # upright, as the original


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_scaled_decode_refuses_every_damaged_file_a_full_decode_refuses(
    catalog_photo: Image.Image, fmt: str
) -> None:
    """The scaled IDCT still reads all of a JPEG's entropy-coded data, so a file cut short or
    garbled fails as it does in a full decode, with the same code."""
    data = encode(catalog_photo, fmt, quality=90) if fmt != "PNG" else encode(catalog_photo, fmt)
    damaged = [data[: int(len(data) * cut)] for cut in (0.05, 0.3, 0.5, 0.7, 0.9, 0.99)]
    for at in (0.3, 0.5, 0.8):
        i = int(len(data) * at)
        damaged.append(data[:i] + bytes(b ^ 0xFF for b in data[i : i + 16]) + data[i + 16 :])
    refused = 0
    for bad in damaged:
        full = _verdict(decode_image, bad)
        scaled = _verdict(
            lambda d, max_pixels: decode_scaled(d, max_pixels=max_pixels, side=224), bad
        )
        assert scaled == full, (fmt, len(bad), full, scaled)
        refused += full is not None
    assert refused >= 6  # at least every cut-short file
    for header_problem, code in (
        (b"", "empty_image"),
        (png_header_only(50_000, 50_000), "image_too_large"),
        (b"just text" * 20, "not_an_image"),
    ):
        with pytest.raises(ImageProblem) as info:
            decode_scaled(header_problem, max_pixels=MAX_PIXELS, side=224)
        assert info.value.code == code


def test_webp_validation_refuses_a_cut_short_file_without_decoding_it(
    catalog_photo: Image.Image,
) -> None:
    """libwebp has no cheaper pass than a full decode, so the API checks a WebP's RIFF chunks
    against the file's length instead: a file cut short is refused with the decode's code; one
    garbled inside a chunk passes and fails in the worker (a decode), recorded per item."""
    data = encode(catalog_photo, "WEBP", quality=85)
    assert validate_image(data, max_pixels=MAX_PIXELS) == ("WEBP", catalog_photo.size)
    for cut in (0.05, 0.3, 0.5, 0.7, 0.9, 0.99):
        bad = data[: int(len(data) * cut)]
        assert _verdict(validate_image, bad) == _verdict(decode_image, bad) == "corrupt_image"
    overrun = data[:16] + (len(data)).to_bytes(4, "little") + data[20:]  # first chunk's size
    assert _verdict(validate_image, overrun) == "corrupt_image"
    frames = [catalog_photo, catalog_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    animated = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    assert validate_image(animated, max_pixels=MAX_PIXELS)[0] == "WEBP"


def test_a_jpeg_of_more_than_max_scans_is_refused_and_real_encodings_are_not(
    photo: Image.Image,
) -> None:
    from benchmarks.fuzz_images import jpeg_many_scans
    from lookalike.images import MAX_JPEG_SCANS, jpeg_scans

    progressive = {
        "rgb": encode(photo, "JPEG", progressive=True),
        "grey": encode(photo.convert("L"), "JPEG", progressive=True),
        "cmyk": encode(photo.convert("CMYK"), "JPEG", progressive=True),
    }
    assert {k: jpeg_scans(v, MAX_JPEG_SCANS) for k, v in progressive.items()} == {
        "rgb": 10,
        "grey": 6,
        "cmyk": 18,
    }
    baseline = encode(photo, "JPEG")
    # Bytes that look like scan markers inside EXIF, or after the picture (a phone's trailer),
    # are not scans.
    exif = encode(photo, "JPEG", exif=Image.Exif().tobytes() + b"\xff\xda\x00\x08" * 200)
    trailer = baseline + b"\xff\xda\x00\x08" * 200
    for data in (baseline, exif, trailer):
        assert jpeg_scans(data, MAX_JPEG_SCANS) == 1
        assert decode_image(data, max_pixels=10**7).size == photo.size
    for data in progressive.values():
        assert validate_image(data, max_pixels=10**7)[0] == "JPEG"
    hostile = jpeg_many_scans(256, MAX_JPEG_SCANS)  # its 10 scans and 100 more
    assert jpeg_scans(hostile, MAX_JPEG_SCANS) == MAX_JPEG_SCANS + 1
    assert problem(hostile) == "corrupt_image"
    with pytest.raises(ImageProblem, match="scans"):
        validate_image(hostile, max_pixels=10**7)


def test_a_png_of_more_than_max_chunks_is_refused_and_split_image_data_is_not(
    photo: Image.Image,
) -> None:
    from benchmarks.fuzz_images import png_many_chunks
    from lookalike.images import MAX_PNG_CHUNKS, png_chunks

    png = encode(photo, "PNG")
    # Its first IDAT cut into 256-byte chunks (encoders write 8-64 KB): still a usable picture.
    at = png.index(b"IDAT") - 4
    size = int.from_bytes(png[at : at + 4], "big")
    idat = png[at + 8 : at + 8 + size]
    pieces = [idat[i : i + 256] for i in range(0, size, 256)]
    split = png[:at] + b"".join(_chunk(b"IDAT", p) for p in pieces) + png[at + 12 + size :]
    assert png_chunks(split, MAX_PNG_CHUNKS) > len(pieces) > 200
    assert decode_image(split, max_pixels=MAX_PIXELS).tobytes() == photo.tobytes()
    for hostile in (
        png_many_chunks(MAX_PNG_CHUNKS),
        png_many_chunks(MAX_PNG_CHUNKS, after_image=True),
    ):
        assert png_chunks(hostile, MAX_PNG_CHUNKS) == MAX_PNG_CHUNKS + 1
        assert problem(hostile) == "corrupt_image"
        with pytest.raises(ImageProblem, match="chunks"):
            check_image(hostile, max_pixels=MAX_PIXELS)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc
