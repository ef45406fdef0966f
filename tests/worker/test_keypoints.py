"""The keypoints found at ingest (worker/keypoints.py) and the verification that reads them
(lookalike/verify.py), on real photos: no model, no service."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from lookalike import verify
from lookalike.images import DECODE_SCALED, decode_image, decode_scaled, decode_with_larger
from lookalike.settings import Settings
from support import edited_copy, format_2, labelled_images
from worker.keypoints import MIN_SOURCE, find_keypoints, keypoint_payload, keypoint_source

PIXELS = 40_000_000
THRESHOLD = Settings().duplicate_threshold
MODEL_SIDE = 224  # efficientnet-lite0's input side: what the worker's decode keeps


def worker_decode(data: bytes) -> Image.Image:
    return decode_scaled(data, max_pixels=PIXELS, side=MODEL_SIDE)


def keypoints(data: bytes) -> verify.Keypoints:
    """An image's keypoints as the worker stores them for a new catalog (shrink-on-load)."""
    payload = keypoint_payload(data, worker_decode(data), max_pixels=PIXELS)
    found = verify.decode(payload["keypoints"])
    assert found is not None
    return found


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    """A transparent stamp's edited copy, kept transparent."""
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


STAMPS = Path("/usr/share/tuxpaint/stamps")  # Debian's tuxpaint-stamps-default


def stamp_verdicts(
    pairs: list[tuple[str, str]], under: Path = STAMPS
) -> Iterator[tuple[str, verify.Verdict]]:
    """Each pair of stamps (paths under ``under``) verified as the worker stores them: the
    first's name and the pair's verdict."""
    for one, other in pairs:
        yield (
            one,
            verify.verify(
                keypoints((under / one).read_bytes()), keypoints((under / other).read_bytes())
            ),
        )


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [path.read_bytes() for _, path in labelled_images(per_category=4)[:24]]


def test_the_payload_round_trips_and_a_damaged_one_reads_as_missing(photos: list[bytes]) -> None:
    found = find_keypoints(decode_image(photos[0], max_pixels=PIXELS))
    assert found.verifiable and len(found) <= verify.MAX_KEYPOINTS
    text = verify.encode(found)
    back = verify.decode(text)
    assert back is not None and len(back) == len(found)
    np.testing.assert_array_equal(back.descriptors, found.descriptors)
    np.testing.assert_allclose(back.xy, found.xy, atol=0.5)  # float16 positions
    assert back.frame == found.frame and back.grid is not None and found.grid is not None
    np.testing.assert_allclose(back.grid, np.round(found.grid))
    # The thumbnail travels as a JPEG: the same size, the same pixels within its loss.
    assert found.thumbnail is not None and back.thumbnail is not None
    assert max(found.thumbnail.shape) == verify.THUMBNAIL_SIDE
    assert back.thumbnail.shape == found.thumbnail.shape
    error = np.abs(back.thumbnail.astype(int) - found.thumbnail.astype(int))
    assert np.percentile(error, 99) <= 12
    # In colour: one JPEG holds both, its luma the grey.
    assert found.colour is not None and back.colour is not None
    assert back.colour.shape == (*found.thumbnail.shape, 3)
    error = np.abs(back.colour.astype(int) - found.colour.astype(int))
    assert np.percentile(error, 99) <= 24
    # The frame contact: each side's darkest and lightest grey per bin, as they were.
    assert found.contact is not None and back.contact is not None
    assert back.contact.shape == (4, verify.CONTACT_BINS, 2)
    np.testing.assert_array_equal(back.contact, found.contact)
    # The gap profile: per axis and bin the darkest and lightest grey of its rows (columns).
    assert found.gaps is not None and back.gaps is not None
    assert back.gaps.shape == (2, verify.GAP_BINS, 2)
    np.testing.assert_array_equal(back.gaps, found.gaps)
    for damaged in (text[:-8], "not base64!", None, 42, ""):
        assert verify.decode(damaged) is None


def test_a_point_from_before_the_thumbnails_needs_a_reindex(photos: list[bytes]) -> None:
    """Without its thumbnail a pair cannot be compared pixel by pixel, and the threshold was
    chosen with that comparison: the item reads as not yet computed (needs_reindex), never
    verified by keypoints alone."""
    old = format_2(keypoints(photos[2]))
    assert verify.decode(old) is None
    assert verify.decode(format_2(keypoints(photos[3]))) is None


def test_a_point_from_before_the_frame_contact_needs_a_reindex(photos: list[bytes]) -> None:
    """Format 3 (a thumbnail, no frame contact) is not read either: without the contact a
    cut-out O would be its Q's crop."""
    import base64

    raw = bytearray(base64.b64decode(verify.encode(keypoints(photos[2]))))
    raw[0] = 3
    stored = 4 * verify.CONTACT_BINS * 2 + 2 * verify.GAP_BINS * 2  # the contact and gaps
    assert verify.decode(base64.b64encode(bytes(raw[:-stored]))) is None


def test_a_point_from_before_the_colour_thumbnail_needs_a_reindex(photos: list[bytes]) -> None:
    """Format 4 (a grey thumbnail) is not read either: without the colour a cement mixer
    would be a tow truck's variant."""
    import base64

    found = keypoints(photos[2])
    grey = replace(found, colour=None)
    raw = bytearray(base64.b64decode(verify.encode(grey)))
    assert verify.decode(bytes(raw).decode("latin-1")) is None  # not base64 text
    raw[0] = 4
    assert verify.decode(base64.b64encode(bytes(raw)).decode("ascii")) is None
    assert verify.decode(verify.encode(found)) is not None


def test_an_edited_copy_is_near_a_hue_shift_a_variant_other_photos_neither(
    photos: list[bytes],
) -> None:
    import tempfile
    from pathlib import Path

    colourful = photos[2]  # an albino peahen's blue and green: a hue shift is plain to see
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.png"
        path.write_bytes(colourful)
        copy = edited_copy(path)
    original = keypoints(colourful)
    assert verify.verify(original, keypoints(copy)).relation(THRESHOLD) == "near"
    hsv = np.asarray(decode_image(colourful, max_pixels=PIXELS).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 85) % 256
    shifted = keypoints(jpeg(Image.fromarray(hsv, "HSV").convert("RGB")))
    assert verify.verify(original, shifted).relation(THRESHOLD) == "variant"
    found = [keypoints(p) for p in photos]
    for a, b in combinations(range(len(found)), 2):
        assert verify.verify(found[a], found[b]).relation(THRESHOLD) is None, (a, b)


def test_keypoints_come_from_more_pixels_than_the_models_decode_keeps() -> None:
    """A catalog photo the worker's decode shrank to the model's side is decoded again for
    its keypoints, at the least scale that keeps their side (512 px) on its longer side; an
    image the decode kept whole is used as it is."""
    rng = np.random.default_rng(3)
    big = jpeg(Image.fromarray(rng.integers(0, 256, (1224, 1632, 3), dtype=np.uint8)))
    decoded = worker_decode(big)
    assert max(decoded.size) < verify.SIDE
    source = keypoint_source(big, decoded, max_pixels=PIXELS)
    assert source.size == (816, 612)  # JPEG at half scale
    square = jpeg(Image.fromarray(rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)))
    # Half scale would be 400 px: decoded in full.
    assert keypoint_source(square, worker_decode(square), max_pixels=PIXELS).size == (800, 800)
    small = jpeg(Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)))
    whole = worker_decode(small)
    assert whole.size == (420, 300)
    assert keypoint_source(small, whole, max_pixels=PIXELS) is whole


def test_a_plain_or_tiny_image_is_never_verified() -> None:
    """A flat picture has no keypoints; nor has one under MIN_SOURCE px, however busy (it is
    not enlarged to find some): both are "too plain", nobody's near-duplicate."""
    rng = np.random.default_rng(5)
    flat = jpeg(Image.new("RGB", (800, 600), (200, 180, 160)))
    tiny = jpeg(Image.new("RGB", (8, 8), (0, 0, 0)))
    busy = rng.integers(0, 256, (MIN_SOURCE - 4, MIN_SOURCE - 4, 3), dtype=np.uint8)
    small = jpeg(Image.fromarray(busy))
    # Enlarged, as a stamp of MIN_SOURCE px or more is, the same pixels would verify.
    assert find_keypoints(Image.fromarray(busy).resize((MIN_SOURCE, MIN_SOURCE))).verifiable
    for data in (flat, tiny, small):
        points = keypoints(data)
        assert not points.verifiable
        # Not even with itself: too few keypoints say nothing.
        assert verify.verify(points, points) == verify.NO_MATCH
        assert verify.verify(points, points).relation(THRESHOLD) is None


def test_a_recoloured_flat_fill_is_a_variant_either_way_round() -> None:
    """The demo catalog's white and green flags (tuxpaint): one drawing, one filled white,
    one green. The keypoints sit on the black outline, where colour barely changes; the
    colour grid sees the fill. Asked either way round, the same answer."""
    flags = STAMPS / "town/flags"
    white = keypoints((flags / "whiteflag.png").read_bytes())
    green = keypoints((flags / "greenflag.png").read_bytes())
    assert verify.verify(white, green) == verify.verify(green, white)
    assert verify.verify(white, green).relation(THRESHOLD) == "variant"


def test_products_on_one_chassis_are_not_variants_a_recoloured_copy_is() -> None:
    """The demo's cement mixer and tow truck (tuxpaint): one cartoon chassis, the cab in
    another colour, a drum on the one and a boom on the other; and the police car beside its
    mirrored stamp (the lettering kept readable, the stripe and lights turned round). Their
    keypoints match on what they share and their colours differ: variants to every test
    but the colour edges, where each has boundaries of its own. The mixer hue-shifted
    whole, or with its drum alone recoloured, is its variant."""
    pairs = [
        (
            "vehicles/construction/cartoon/cementMixer.png",
            "vehicles/construction/cartoon/towTruck.png",
        ),
        ("vehicles/emergency/sedan_police.png", "vehicles/emergency/sedan_police_mirror.png"),
    ]
    for one, verdict in stamp_verdicts(pairs):
        assert verdict.color_delta >= verify.VARIANT_COLOR_DELTA, (one, verdict)
        assert replace(verdict, reshaped=0.0).relation(THRESHOLD) == "variant", (one, verdict)
        assert verdict.reshaped > verify.MAX_RESHAPED, (one, verdict)
        assert verdict.relation(THRESHOLD) is None, (one, verdict)
    path = STAMPS / pairs[0][0]
    mixer = Image.open(path).convert("RGBA")
    pixels = np.asarray(mixer).copy()
    hsv = np.asarray(mixer.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 256
    shifted = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    whole = pixels.copy()
    whole[..., :3] = shifted
    # The drum alone: the mixer's green.
    green = (pixels[..., 1] > pixels[..., 0] + 40) & (pixels[..., 1] > pixels[..., 2] + 40)
    assert green.mean() > 0.05
    drum = pixels.copy()
    drum[green, :3] = shifted[green]
    original = keypoints(path.read_bytes())
    for name, copy in [("hue-shifted", whole), ("drum recoloured", drum)]:
        points = keypoints(png(Image.fromarray(copy, "RGBA")))
        for verdict in (verify.verify(original, points), verify.verify(points, original)):
            assert verdict.reshaped <= verify.MAX_RESHAPED, (name, verdict)
            assert verdict.relation(THRESHOLD) == "variant", (name, verdict)


def test_the_models_decode_gives_the_keypoints_picture_when_it_holds_it() -> None:
    """A PNG or WebP photo is decoded in full anyway: the keypoints' picture is reduced from
    that decode, the same pixels a second decode gave. A JPEG decoded at a reduced scale
    kept too few: it is decoded again (None). The model's image is decode_scaled's."""
    rng = np.random.default_rng(4)
    pixels = Image.fromarray(rng.integers(0, 256, (1224, 1632, 3), dtype=np.uint8))
    png, webp = io.BytesIO(), io.BytesIO()
    pixels.save(png, "PNG")
    pixels.save(webp, "WEBP", quality=90)
    big_jpeg = jpeg(Image.fromarray(rng.integers(0, 256, (2309, 1732, 3), dtype=np.uint8)))
    for data in (png.getvalue(), webp.getvalue(), jpeg(pixels), big_jpeg):
        image, larger = decode_with_larger(
            data, DECODE_SCALED, max_pixels=PIXELS, input_size=MODEL_SIDE, longer=verify.SIDE
        )
        np.testing.assert_array_equal(np.asarray(image), np.asarray(worker_decode(data)))
        if data[:3] == b"\xff\xd8\xff" and data is not big_jpeg:
            assert larger is None  # a quarter-scale JPEG decode: 408 x 306
            continue
        assert larger is not None
        again = keypoint_source(data, worker_decode(data), max_pixels=PIXELS)
        np.testing.assert_array_equal(np.asarray(larger), np.asarray(again))


FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def glyph(char: str) -> Image.Image:
    """A letter of one font, black on white, as a catalog of printed letters holds it."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", (800, 800), "white")
    ImageDraw.Draw(image).text(
        (400, 400), char, fill="black", font=ImageFont.truetype(str(FONT), 560), anchor="mm"
    )
    return image


def watermarked(image: Image.Image) -> Image.Image:
    """A translucent text line across the picture, as a shop stamps its photos."""
    from PIL import ImageDraw, ImageFont

    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (image.width // 2, image.height // 2),
        "(c) ACME STORE",
        fill=(255, 255, 255, 120),
        font=ImageFont.truetype(str(FONT), image.width // 14),
        anchor="mm",
        stroke_width=2,
        stroke_fill=(0, 0, 0, 120),
    )
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def test_letters_that_share_strokes_are_not_near_duplicates_their_edited_copies_are() -> None:
    """An E holds an F, a Q an O, a G a C: their keypoints match under one transform as an
    edited copy's do (before the thumbnails, E ~ F and O ~ Q were verified on the evaluation
    set and the demo). Laid on each other, the missing bar or tail is a blob of pixels that
    differ; a watermark's thin translucent text, a crop or a rotation leaves none: an E with
    a text line across it is the E's near-duplicate, the E with an F's bar less is not."""
    pairs = [("E", "F"), ("O", "Q"), ("C", "G"), ("P", "R")]
    found = {c: keypoints(jpeg(glyph(c))) for pair in pairs for c in pair}
    for one, other in pairs:
        verdict = verify.verify(found[one], found[other])
        # The keypoints alone would say "the same shot".
        assert verdict.verified(THRESHOLD), (one, other, verdict)
        assert verdict.difference > verify.MAX_DIFFERENCE, (one, other, verdict)
        assert verdict.relation(THRESHOLD) is None
    copies = {"E": {"watermarked": watermarked(glyph("E"))}}
    for char in "CP":
        image = glyph(char)
        copies[char] = {
            "watermarked": watermarked(image),
            "cropped": image.crop((60, 40, 780, 760)),
            "rotated": image.rotate(6, resample=Image.Resampling.BICUBIC, fillcolor="white"),
        }
    for char, edited in copies.items():
        for edit, copy in edited.items():
            verdict = verify.verify(found[char], keypoints(jpeg(copy)))
            assert verdict.relation(THRESHOLD) == "near", (char, edit, verdict)


def test_cut_out_letters_whose_strokes_leave_the_others_frame_are_not_near_duplicates() -> None:
    """Letters cut out to their own outline, as the demo's alphabet stamps are: a b laid on a
    p by their bowls agrees pixel for pixel where the two overlap, but the b's stem stands
    above the p's frame and the p's below the b's. An edited copy lies within its original's
    frame (a crop) or holds it (padding): only one side has anything beyond the other."""

    def cut_out(char: str) -> Image.Image:
        image = glyph(char)
        return image.crop(ImageOps.invert(image.convert("L")).getbbox())

    pairs = [("b", "p"), ("d", "q")]
    found = {c: keypoints(jpeg(cut_out(c))) for pair in pairs for c in pair}
    for one, other in pairs:
        verdict = verify.verify(found[one], found[other])
        assert verdict.verified(THRESHOLD), (one, other, verdict)
        assert verdict.beyond > verify.MAX_DIFFERENCE, (one, other, verdict)
        assert verdict.relation(THRESHOLD) is None
    letter = cut_out("b")
    width, height = letter.size
    padded = ImageOps.expand(letter, border=40, fill="white")
    cropped = letter.crop((0, height // 8, width, height))
    for edit, copy in {"padded": padded, "cropped": cropped}.items():
        verdict = verify.verify(found["b"], keypoints(jpeg(copy)))
        assert verdict.relation(THRESHOLD) == "near", (edit, verdict)


def test_a_copy_its_keypoints_miss_is_found_by_its_aligned_thumbnail() -> None:
    """An O has few corners, and a watermark's text takes the keypoints it has: no
    transform explains enough of them. Its thumbnail, aligned with the original's by their
    own pixels, agrees; the Q's, aligned the same way, does not (its tail)."""
    original = keypoints(jpeg(glyph("O")))
    copy = keypoints(jpeg(watermarked(glyph("O"))))
    verdict = verify.verify(original, copy)
    assert verdict.inliers < verify.MIN_INLIERS, verdict
    assert verdict.aligned <= verify.MAX_ALIGNED_DIFFERENCE
    assert verdict.relation(THRESHOLD) == "near"
    other = verify.verify(original, keypoints(jpeg(glyph("Q"))))
    assert other.aligned > verify.MAX_ALIGNED_DIFFERENCE, other
    assert other.relation(THRESHOLD) is None


def test_a_letter_is_not_near_its_accented_form_a_crop_through_it_is() -> None:
    """The demo's alphabet stamps (tuxpaint), cut out to their own outline: an a lies on an
    a-umlaut pixel for pixel, as a crop of it would, but the umlaut's dots stand beyond the
    a's frame across a gap of background; a crop's line cuts through what it takes away, so
    the original's strokes go on right past the copy's edge."""
    stamps = STAMPS / "symbols/alphabets"
    pairs = [
        (
            "english/filled/lowercase/a_filled.png",
            "german/filled/lowercase/a_with_umlaut_filled.png",
        ),
        (
            "english/outlined/lowercase/o_outline.png",
            "german/outlined/lowercase/o_with_umlaut_outline.png",
        ),
        (
            "english/filled/lowercase/n_filled.png",
            "spanish/filled/lowercase/n_with_tilda_filled.png",
        ),
    ]
    for plain, verdict in stamp_verdicts(pairs, stamps):
        assert verdict.verified(THRESHOLD), (plain, verdict)
        assert verdict.relation(THRESHOLD) is None, (plain, verdict)
    umlaut = Image.open(stamps / pairs[0][1]).convert("RGBA")
    letter = Image.new("RGB", umlaut.size, "white")
    letter.paste(umlaut, mask=umlaut)
    width, height = letter.size
    original = keypoints(jpeg(letter))
    crops = {
        "left and bottom": (width // 5, 0, width, height - height // 8),
        "right and top, through the dots": (0, height // 10, width - width // 6, height),
    }
    for edit, box in crops.items():
        verdict = verify.verify(original, keypoints(jpeg(letter.crop(box))))
        assert verdict.relation(THRESHOLD) == "near", (edit, verdict)


def test_a_cut_out_letter_is_not_its_longer_letters_crop_a_crop_through_one_is() -> None:
    """The demo's alphabet stamps (tuxpaint, transparent, cut to their own outline): an O
    lies on a Q pixel for pixel, as the Q cropped to the O's frame would, and an n on an h;
    every pixel test agrees. But a crop's line cuts through what it takes away, so the
    copy's content touches its frame wherever the original's crosses it; the O's frame
    meets its bowl at a tangent while the Q's tail goes on past it, and the n's top meets
    its arch while the h's stem goes on past it. A crop of the Q stamp that cuts its tail
    and side, kept transparent, stays near; so does a crop through an A-umlaut's dots turned
    by 7 degrees, whose line the turn moves off the copy's frame (a wedge of fill between)."""
    stamps = STAMPS / "symbols/alphabets/english"
    pairs = [
        ("filled/uppercase/O_filled.png", "filled/uppercase/Q_filled.png"),
        ("outlined/uppercase/O_outline.png", "outlined/uppercase/Q_outline.png"),
        ("filled/lowercase/n_filled.png", "filled/lowercase/h_filled.png"),
    ]
    for short, verdict in stamp_verdicts(pairs, stamps):
        # Every other test takes them for a crop: only the frame crossing tells.
        assert verdict.verified(THRESHOLD) and verdict.local <= verify.MAX_LOCAL, verdict
        assert verdict.crossing > verify.MAX_CROSSING, (short, verdict)
        assert verdict.relation(THRESHOLD) is None, (short, verdict)
    path = stamps / "filled/uppercase/Q_filled.png"
    letter = Image.open(path).convert("RGBA")
    width, height = letter.size
    original = keypoints(path.read_bytes())
    for box in [(0, 0, width - width // 6, height - height // 8), (width // 8, 0, width, height)]:
        verdict = verify.verify(original, keypoints(png(letter.crop(box))))
        assert verdict.relation(THRESHOLD) == "near", (box, verdict)
    path = stamps.parent / "german/filled/uppercase/A_with_umlaut_filled.png"
    umlaut = Image.open(path).convert("RGBA")
    width, height = umlaut.size
    turned = umlaut.crop((width // 10, height // 12, width, height - height // 10)).rotate(
        7, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0, 0)
    )
    verdict = verify.verify(keypoints(path.read_bytes()), keypoints(png(turned)))
    assert verdict.relation(THRESHOLD) == "near", verdict


def test_a_letter_is_not_near_its_accent_that_stands_close_a_transparent_crop_is() -> None:
    """The demo's alphabet stamps (tuxpaint, transparent, cut to their own outline) whose
    umlaut or tilde stands 3-5 px from a 139 px letter: 2-3 px of the 128 px thumbnail, too
    close for the thumbnail's gap band (lookalike.verify._detached), so every pixel test
    took the plain letter for a crop of the accented one. At the stamp's own resolution a
    row of plain white runs right across it between the two (its stored gap profile), just
    past the plain letter's frame: the accent is a blob of its own. A crop of the
    A-umlaut kept transparent, whether it keeps the dots or its line cuts through them,
    stays near: no gap line lies at a crop's line."""
    stamps = STAMPS / "symbols/alphabets"
    pairs = [
        (
            "english/filled/uppercase/A_filled.png",
            "german/filled/uppercase/A_with_umlaut_filled.png",
        ),
        (
            "english/outlined/uppercase/A_outline.png",
            "german/outlined/uppercase/A_with_umlaut_outline.png",
        ),
        (
            "english/filled/uppercase/O_filled.png",
            "german/filled/uppercase/O_with_umlaut_filled.png",
        ),
        (
            "english/filled/lowercase/u_filled.png",
            "german/filled/lowercase/u_with_umlaut_filled.png",
        ),
        (
            "english/outlined/uppercase/N_outline.png",
            "spanish/outlined/uppercase/N_with_tilda_outline.png",
        ),
    ]
    for plain, verdict in stamp_verdicts(pairs, stamps):
        assert verdict.verified(THRESHOLD) and verdict.crossing <= verify.MAX_CROSSING, verdict
        assert verdict.gapped > verify.MAX_GAPPED, (plain, verdict)
        assert verdict.relation(THRESHOLD) is None, (plain, verdict)
    path = stamps / pairs[0][1]
    umlaut = Image.open(path).convert("RGBA")
    width, height = umlaut.size
    original = keypoints(path.read_bytes())
    crops = {
        "left and bottom, keeping the dots": (width // 5, 0, width, height - height // 8),
        "top through the dots, and right": (0, height // 10, width - width // 6, height),
        "top through the dots, left and bottom": (width // 8, height // 14, width, height - 13),
    }
    for edit, box in crops.items():
        verdict = verify.verify(original, keypoints(png(umlaut.crop(box))))
        assert verdict.gapped <= verify.MAX_GAPPED, (edit, verdict)
        assert verdict.relation(THRESHOLD) == "near", (edit, verdict)


def test_drawings_whose_edges_lie_a_pixel_off_are_not_near_duplicates_their_copies_are() -> None:
    """The demo's look-alikes that every coarser test takes for one shot: a lowercase x lies
    on an uppercase X as its crop would (its strokes steeper by a pixel), a dreidel's nun on
    its gimel (the letter drawn two pixels off, its foot taken away, in both orientations),
    the sign for O on the sign for 0 (one hand redrawn). Under the one similarity fitted to
    their sharp edges, some of those edges lie more than a pixel off. An edited copy's edges
    all lie where one similarity puts them: the x stamp enlarged, turned and cropped (kept
    transparent), the gimel dreidel watermarked, turned, cropped and retoned."""
    pairs = [
        (
            "symbols/alphabets/english/filled/lowercase/x_filled.png",
            "symbols/alphabets/english/filled/uppercase/X_filled.png",
        ),
        ("seasonal/hanukkah/dreydl-gimmel.png", "seasonal/hanukkah/dreydl-nun.png"),
        ("seasonal/hanukkah/dreydl-gimmel_mirror.png", "seasonal/hanukkah/dreydl-nun_mirror.png"),
        ("symbols/alphabets/asl/asl_o.png", "symbols/alphabets/asl/asl_zzz_0.png"),
    ]
    for one, verdict in stamp_verdicts(pairs):
        # Every earlier step lets them through.
        assert verdict.verified(THRESHOLD) and verdict.local <= verify.MAX_LOCAL, (one, verdict)
        assert verdict.crossing <= verify.MAX_CROSSING, (one, verdict)
        assert verdict.gapped <= verify.MAX_GAPPED, (one, verdict)
        assert verdict.displaced > verify.MAX_DISPLACED, (one, verdict)
        assert verdict.relation(THRESHOLD) is None, (one, verdict)
    path = STAMPS / pairs[0][0]
    letter = Image.open(path).convert("RGBA")
    width, height = letter.size
    copies = {
        "rescaled": letter.resize((width * 3 // 2, height * 3 // 2), Image.Resampling.LANCZOS),
        "turned": letter.rotate(
            5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0, 0)
        ),
        "cropped": letter.crop((width // 8, 0, width, height - height // 9)),
    }
    original = keypoints(path.read_bytes())
    for edit, copy in copies.items():
        verdict = verify.verify(original, keypoints(png(copy)))
        assert verdict.displaced <= verify.MAX_DISPLACED, (edit, verdict)
        assert verdict.relation(THRESHOLD) == "near", (edit, verdict)
    picture = on_white(STAMPS / pairs[1][0])
    width, height = picture.size
    copies = {
        "watermarked": watermarked(picture),
        "turned": picture.rotate(4, resample=Image.Resampling.BICUBIC, fillcolor="white"),
        "cropped": picture.crop((width // 12, height // 10, width, height)),
        "retoned": ImageEnhance.Contrast(ImageEnhance.Brightness(picture).enhance(1.15)).enhance(
            0.85
        ),
    }
    original = keypoints(jpeg(picture))
    for edit, copy in copies.items():
        verdict = verify.verify(original, keypoints(jpeg(copy)))
        assert verdict.displaced <= verify.MAX_DISPLACED, (edit, verdict)
        assert verdict.relation(THRESHOLD) == "near", (edit, verdict)


def test_the_y_cut_at_its_baseline_is_its_near_duplicate_and_the_vs() -> None:
    """Why the demo's v ~ y stays a near pair (docs/indexer.md): the tuxpaint v (95 x 84 px)
    is the y (95 x 115 px) cut at its baseline, to within a pixel of stroke on the 95 px
    stamp. That cut takes 27 % off the y, a crop the issue asks the service to find: it is
    the y's near-duplicate, and it is the v's near-duplicate too, so no test that finds the
    crop can tell the v from it."""
    letters = STAMPS / "symbols/alphabets/english/filled/lowercase"
    v = Image.open(letters / "v_filled.png").convert("RGBA")
    y = Image.open(letters / "y_filled.png").convert("RGBA")
    assert v.width == y.width and v.height < y.height
    cut = y.crop((0, 0, v.width, v.height))
    alpha = np.asarray(cut.getchannel("A"), np.float64)
    # The same coverage to a few per cent of the stamp: the v's arms are at most ~2 px wider
    # near its foot.
    assert np.mean(np.abs(alpha - np.asarray(v.getchannel("A"), np.float64))) < 0.04 * 255
    crop = keypoints(png(cut))
    for name, other in [("y", letters / "y_filled.png"), ("v", letters / "v_filled.png")]:
        verdict = verify.verify(keypoints(other.read_bytes()), crop)
        assert verdict.relation(THRESHOLD) == "near", (name, verdict)


def test_a_call_verifies_each_candidate_as_a_fresh_pair_would(photos: list[bytes]) -> None:
    """A /duplicates call decodes the asked item once and verifies every candidate against
    it, so what the pixel tests derive from its thumbnail alone (the spectra the alignment
    needs, the edges) is made once and kept. Each verdict is still, bit for bit, the one
    that both payloads decoded afresh for that pair alone give, whichever way round and
    whether or not the aligned comparison runs: real pairs that are near-duplicates (by the
    keypoints, and by the aligned thumbnails), a colour variant, and look-alikes that are
    neither."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.png"
        path.write_bytes(photos[2])
        copy = edited_copy(path)
    hsv = np.asarray(decode_image(photos[2], max_pixels=PIXELS).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 85) % 256
    images = {
        "photo": photos[2],
        "copy": copy,
        "hue-shift": jpeg(Image.fromarray(hsv, "HSV").convert("RGB")),
        "O": jpeg(glyph("O")),
        "O watermarked": jpeg(watermarked(glyph("O"))),
        "Q": jpeg(glyph("Q")),
        "E": jpeg(glyph("E")),
        "F": jpeg(glyph("F")),
        **{f"other {i}": photos[i] for i in (0, 5, 9, 13)},
    }
    stored = {
        name: keypoint_payload(data, worker_decode(data), max_pixels=PIXELS)["keypoints"]
        for name, data in images.items()
    }
    relations = set()
    for asked in ("photo", "O", "E"):
        mine = verify.decode(stored[asked])
        assert mine is not None
        for name, payload in stored.items():
            if name == asked:
                continue
            for align in (None, True):
                other = verify.decode(payload)
                assert other is not None
                in_the_call = verify.verify(mine, other, align=align)
                alone = verify.decode(stored[asked]), verify.decode(payload)
                assert alone[0] is not None and alone[1] is not None
                assert in_the_call == verify.verify(*alone, align=align), (asked, name, align)
                assert verify.verify(*reversed(alone), align=align) == in_the_call
                relations.add(in_the_call.relation(THRESHOLD))
        assert "spectra" in vars(mine) and "edges" in vars(mine)  # made, and kept
    assert relations == {"near", "variant", None}


def on_white(path: Path) -> Image.Image:
    """A tuxpaint stamp (transparent around its drawing) on a white page."""
    with Image.open(path) as raw:
        rgba = raw.convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(page, rgba).convert("RGB")


def test_items_that_differ_in_a_small_region_are_not_near_duplicates_their_copies_are() -> None:
    """The demo's euro cents (tuxpaint): one design, minted alike, only the numeral differs;
    two dreidels that differ by the letter on their side; a polo shirt and a T-shirt drawn
    on one outline. Their keypoints match under one transform and their thumbnails agree
    over all but a small region (under MAX_DIFFERENCE of the content: what the pixel test
    let through). Laid on each other precisely (ECC), each has edges the other lacks, where
    the numeral, the letter or the collar is. An edited copy's edges are all in the
    original, and a watermark adds edges to the copy only."""
    pairs = [
        ("symbols/money/euro/coins/002.png", "symbols/money/euro/coins/005.png"),
        ("symbols/money/euro/coins/010.png", "symbols/money/euro/coins/050.png"),
        ("seasonal/hanukkah/dreydl-nun.png", "seasonal/hanukkah/dreydl-shin.png"),
        ("clothes/t_poloshirt.png", "clothes/t_tshirt.png"),
    ]
    for one, verdict in stamp_verdicts(pairs):
        # The keypoints and the pixel test of before would say "the same shot".
        assert verdict.verified(THRESHOLD), (one, verdict)
        assert verdict.difference <= verify.MAX_DIFFERENCE, (one, verdict)
        assert verdict.local > verify.MAX_LOCAL, (one, verdict)
        assert verdict.relation(THRESHOLD) is None, (one, verdict)
    for name in ("symbols/money/euro/coins/005.png", "clothes/t_poloshirt.png"):
        picture = on_white(STAMPS / name)
        original = keypoints(jpeg(picture))
        width, height = picture.size
        copies = {
            "watermarked": watermarked(picture),
            "rotated": picture.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor="white"),
            "cropped": picture.crop((width // 10, 0, width, height - height // 10)),
        }
        for edit, copy in copies.items():
            verdict = verify.verify(original, keypoints(jpeg(copy)))
            assert verdict.relation(THRESHOLD) == "near", (name, edit, verdict)
