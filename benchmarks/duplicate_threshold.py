"""Choose the near-duplicate threshold by measurement.

A near-duplicate is the same photo re-uploaded after editing: cropped, rescaled, recompressed,
slightly rotated. "Similar" is a different item that looks alike (two red dresses). The
duplicate test (lookalike/duplicates.py) is ``score >= threshold`` with
``score = w * cosine(embeddings) + (1 - w) * colour similarity``; this script measures it,
and the embedding cosine alone for comparison, and picks the threshold.

Data: the real photos of Debian's ``tuxpaint-stamps-default`` (PNG stamps larger than 20 kB,
flattened onto white as the service does), each with three edited copies made with a seeded
random generator:

- ``crop+scale+jpeg``: crop 5-20 % off the sides, rescale to 40-90 %, JPEG quality 30-60;
- ``rotate+jpeg``: rotate by 1-5 degrees either way (white corners), JPEG quality 30-60;
- ``all``: crop, rescale, rotate and JPEG quality 30-60 together.

Positive pairs: (original, its edited copy). Negative pairs: two *different* items of the
same category, the hard case for a duplicate test: (original, original) and (edited copy,
another original), every same-category combination. Precision is reported twice: over a
balanced set (as many negatives as positives, sampled at random, averaged over draws) and
over every same-category negative pair, which is much stricter because negatives then
outnumber positives about 33 to 1.

The photos are split in two halves (alternate photos): weight and threshold are chosen on the
first ("tune") and then measured on the second ("test"), with edits drawn from another seed,
so the reported numbers are not those the choice was fitted to.

The embedding similarity is the one the service weighs (lookalike.duplicates.candidate_query):
the whole vectors' cosine, except for multiscale vectors (``--features multiscale``, the
default), which are compared on their pooled head; the whole multiscale vectors' cosine is
measured beside it.

With ``--catalog-side PX`` the stamps become catalog photos first (upscaled to that longer
side with sensor noise, JPEG quality 90), and ``--decode`` says how the service decodes every
photo and edited copy: ``scaled-1`` (shrink-on-load, a new catalog) or ``full`` (a catalog
indexed before it): the before/after of shrink-on-load on near-duplicates.

    python benchmarks/duplicate_threshold.py [--model efficientnet-lite0] [--features F]
                                             [--cache-dir DIR] [--catalog-side PX]
                                             [--decode scaled-1|full]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.duplicates import (
    COLORLESS_MARGIN,
    EMBEDDING_WEIGHT,
    MIN_COLOR_ENTROPY,
    candidate_query,
    color_entropy,
    color_signature,
    decode_signature,
)
from lookalike.images import DECODE_FULL, DECODE_SCALED, decode_image, decode_scaled
from lookalike.settings import FEATURES, Settings
from worker.model import load_embedder

STAMPS = Path("/usr/share/tuxpaint/stamps")
MIN_BYTES = 20_000  # smaller stamps are mostly drawings, not photos
EDITS = ("crop+scale+jpeg", "rotate+jpeg", "all")
MAX_PIXELS = 40_000_000
TARGET = 0.95
DEFAULT_THRESHOLD = Settings().duplicate_threshold  # LOOKALIKE_DUPLICATE_THRESHOLD


@dataclass(frozen=True)
class Measurement:
    threshold: float
    recall: float
    precision_balanced: float
    precision_all_pairs: float


@dataclass
class Pairs:
    """Scores of the positive and negative pairs, for the embedding and the colours.

    ``*_embedding`` is the embedding similarity the service weighs (the hit score of the
    candidate search, scaled: lookalike.duplicates.candidate_query); ``*_whole`` the cosine
    of the whole vectors, which is the same thing except for multiscale vectors.
    """

    pos_embedding: np.ndarray
    pos_color: np.ndarray
    pos_informative: np.ndarray  # both images have colour enough (lookalike/duplicates.py)
    neg_embedding: np.ndarray
    neg_color: np.ndarray
    neg_informative: np.ndarray
    kinds: list[str]
    pos_whole: np.ndarray
    neg_whole: np.ndarray

    def whole(self) -> Pairs:
        """The same pairs with the whole vectors' cosine as the embedding similarity."""
        return replace(self, pos_embedding=self.pos_whole, neg_embedding=self.neg_whole)

    def mixed(self, head: float) -> Pairs:
        """Multiscale pairs with ``head`` x the head's cosine + the rest x stage 6's.

        Both parts have the same length, so the whole cosine is the mean of the two parts'
        and stage 6's is twice the whole's less the head's; ``head=0.5`` is the whole.
        """

        def mix(head_cos: np.ndarray, whole_cos: np.ndarray) -> np.ndarray:
            return head * head_cos + (1 - head) * (2 * whole_cos - head_cos)

        return replace(
            self,
            pos_embedding=mix(self.pos_embedding, self.pos_whole),
            neg_embedding=mix(self.neg_embedding, self.neg_whole),
        )

    def scores(self, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """The duplicate score of lookalike.duplicates.duplicate_score, vectorised."""

        def score(e: np.ndarray, c: np.ndarray, informative: np.ndarray) -> np.ndarray:
            return np.where(informative, weight * e + (1 - weight) * c, e - COLORLESS_MARGIN)

        return (
            score(self.pos_embedding, self.pos_color, self.pos_informative),
            score(self.neg_embedding, self.neg_color, self.neg_informative),
        )


# How the service decodes a file (set by --decode), and each catalog-mode original's file.
_side = 0
_files: dict[int, bytes] = {}


def service_decode(data: bytes) -> Image.Image:
    if _side:
        return decode_scaled(data, max_pixels=MAX_PIXELS, side=_side)
    return decode_image(data, max_pixels=MAX_PIXELS)


def flatten(path: Path, catalog_side: int = 0, seed: int = 0) -> Image.Image:
    image = decode_image(path.read_bytes(), max_pixels=MAX_PIXELS)
    if not catalog_side:
        return image
    scale = catalog_side / max(image.size)
    big = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    noise = np.random.default_rng(seed).normal(0, 3, (big.height, big.width, 3))
    noisy = Image.fromarray(np.clip(np.asarray(big) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, "JPEG", quality=90)
    original = decode_image(buffer.getvalue(), max_pixels=MAX_PIXELS)
    _files[id(original)] = buffer.getvalue()
    return original


def as_stored(image: Image.Image) -> Image.Image:
    """An original as the service decodes its file (itself when it has no file)."""
    data = _files.get(id(image))
    return image if data is None else service_decode(data)


def edit(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """An edited copy, decoded again from its JPEG bytes as the service would see it."""
    out = image
    if kind in ("crop+scale+jpeg", "all"):
        w, h = out.size
        left, right = rng.uniform(0.0, 0.1, 2) * w
        top, bottom = rng.uniform(0.0, 0.1, 2) * h
        # 0-20 % off each dimension in total (5-20 % on average over both).
        out = out.crop((int(left), int(top), int(w - right), int(h - bottom)))
        scale = rng.uniform(0.4, 0.9)
        out = out.resize(
            (max(8, int(out.width * scale)), max(8, int(out.height * scale))),
            Image.Resampling.BILINEAR,
        )
    if kind in ("rotate+jpeg", "all"):
        angle = float(rng.uniform(1, 5) * rng.choice([-1, 1]))
        out = out.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=int(rng.integers(30, 61)))
    return service_decode(buffer.getvalue())


def signatures(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded colour signatures, and whether each has colour enough to be informative."""
    decoded = [decode_signature(color_signature(image)) for image in images]
    vectors = np.stack([d for d in decoded if d is not None])
    return vectors, np.array([color_entropy(v) >= MIN_COLOR_ENTROPY for v in vectors])


def make_pairs(
    originals: list[Image.Image],
    labels: np.ndarray,
    subset: np.ndarray,
    embed: object,
    seed: int,
) -> Pairs:
    """Embed the photos in ``subset`` and edited copies of them; score every pair."""
    rng = np.random.default_rng(seed)
    chosen = [originals[i] for i in subset]
    names = labels[subset]
    edited, sources, kinds = [], [], []
    for i, image in enumerate(chosen):
        for kind in EDITS:
            edited.append(edit(image, kind, rng))
            sources.append(i)
            kinds.append(kind)
    stored = [as_stored(image) for image in chosen]
    emb_o, emb_e = embed.embed(stored), embed.embed(edited)  # type: ignore[attr-defined]
    model = embed.name  # type: ignore[attr-defined]
    # Each pair as the service scores it: the first item's candidate search, its hit score.
    query_o = [candidate_query(v, model) for v in emb_o]
    query_e = [candidate_query(v, model) for v in emb_e]

    def similarity(query: Any, others: np.ndarray) -> np.ndarray:
        return np.asarray(others @ query.vector, dtype=np.float64) * query.scale

    (sig_o, info_o), (sig_e, info_e) = signatures(stored), signatures(edited)
    pos_e = np.array([similarity(query_o[i], emb_e[j]) for j, i in enumerate(sources)])
    pos_w = np.array([emb_e[j] @ emb_o[i] for j, i in enumerate(sources)])
    pos_c = np.array([sig_e[j] @ sig_o[i] for j, i in enumerate(sources)])
    pos_i = np.array([info_e[j] and info_o[i] for j, i in enumerate(sources)])
    neg_e: list[float] = []
    neg_w: list[float] = []
    neg_c: list[float] = []
    neg_i: list[bool] = []
    for a, b in combinations(range(len(chosen)), 2):
        if names[a] == names[b]:
            neg_e.append(float(similarity(query_o[a], emb_o[b])))
            neg_w.append(float(emb_o[a] @ emb_o[b]))
            neg_c.append(float(sig_o[a] @ sig_o[b]))
            neg_i.append(bool(info_o[a] and info_o[b]))
    for j, i in enumerate(sources):
        same = np.flatnonzero((names == names[i]) & (np.arange(len(names)) != i))
        neg_e.extend(similarity(query_e[j], emb_o[same]).tolist())
        neg_w.extend((emb_o[same] @ emb_e[j]).tolist())
        neg_c.extend((sig_o[same] @ sig_e[j]).tolist())
        neg_i.extend((info_o[same] & info_e[j]).tolist())
    return Pairs(
        pos_e,
        pos_c,
        pos_i,
        np.array(neg_e),
        np.array(neg_c),
        np.array(neg_i),
        kinds,
        pos_w,
        np.array(neg_w),
    )


def measure(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray) -> list[Measurement]:
    rng = np.random.default_rng(0)
    draws = [rng.choice(neg, size=min(len(pos), len(neg)), replace=False) for _ in range(20)]
    results = []
    for t in thresholds:
        tp = int((pos >= t).sum())
        balanced = [tp / max(tp + int((d >= t).sum()), 1) for d in draws]
        results.append(
            Measurement(
                threshold=round(float(t), 3),
                recall=tp / len(pos),
                precision_balanced=float(np.mean(balanced)),
                precision_all_pairs=tp / max(tp + int((neg >= t).sum()), 1),
            )
        )
    return results


def best(results: list[Measurement]) -> Measurement:
    """The threshold that keeps the worse of recall and (strict) precision highest."""
    return max(results, key=lambda r: (min(r.recall, r.precision_all_pairs), r.threshold))


def table(results: list[Measurement], every: int = 1) -> None:
    print("| threshold | recall | precision (balanced) | precision (all same-category pairs) |")
    print("| --- | --- | --- | --- |")
    for r in results[::every]:
        print(
            f"| {r.threshold:.2f} | {r.recall:.3f} | {r.precision_balanced:.3f} | "
            f"{r.precision_all_pairs:.3f} |"
        )


def compare_whole(tune: Pairs, test: Pairs, thresholds: np.ndarray) -> dict[str, object]:
    """Multiscale vectors: the service weighs their pooled heads' cosine. What the whole
    vectors' cosine would give instead, at the shipped weight and threshold, and at the
    weight and threshold the tune half would choose for it."""
    print("\nwith the whole vectors' cosine instead (held-out half):")
    shipped = measure(*test.whole().scores(EMBEDDING_WEIGHT), np.array([DEFAULT_THRESHOLD]))[0]
    print(
        f"  w={EMBEDDING_WEIGHT}, threshold {DEFAULT_THRESHOLD}: recall {shipped.recall:.3f}, "
        f"precision {shipped.precision_all_pairs:.3f}"
    )
    tuned = []
    for weight in np.round(np.arange(0.0, 1.01, 0.1), 2):
        r = best(measure(*tune.whole().scores(float(weight)), thresholds))
        tuned.append((min(r.recall, r.precision_all_pairs), float(weight), r))
    worst, weight, chosen = max(tuned, key=lambda t: t[0])
    held_out = measure(*test.whole().scores(weight), np.array([chosen.threshold]))[0]
    print(
        f"  w={weight:.1f}, threshold {chosen.threshold:.2f} (best on the tune half: "
        f"min(recall, precision) {worst:.3f}): recall {held_out.recall:.3f}, "
        f"precision {held_out.precision_all_pairs:.3f}"
    )
    print("  the head's and stage 6's cosines mixed, best weight and threshold (tune half):")
    mixes = {}
    for head in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        options = [
            best(measure(*tune.mixed(head).scores(float(weight)), thresholds))
            for weight in np.round(np.arange(0.0, 1.01, 0.1), 2)
        ]
        top = max(options, key=lambda r: min(r.recall, r.precision_all_pairs))
        mixes[head] = min(top.recall, top.precision_all_pairs)
        print(
            f"    head {head:.1f}, stage 6 {1 - head:.1f}: min(recall, precision) {mixes[head]:.3f}"
        )
    return {
        "test_at_shipped": asdict(shipped),
        "tuned_weight": weight,
        "chosen_on_tune": asdict(chosen),
        "test_at_chosen": asdict(held_out),
        "head_share_vs_tune_min_recall_precision": mixes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stamps", type=Path, default=STAMPS)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument(
        "--features", choices=FEATURES, default=Settings().features, help="LOOKALIKE_FEATURES"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--tune-seed", type=int, default=3)
    parser.add_argument("--test-seed", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    parser.add_argument(
        "--catalog-side", type=int, default=0, help="make catalog photos of this longer side"
    )
    parser.add_argument("--decode", choices=(DECODE_SCALED, DECODE_FULL), default=DECODE_FULL)
    args = parser.parse_args()

    started = time.monotonic()
    paths = sorted(p for p in args.stamps.glob("*/**/*.png") if p.stat().st_size > MIN_BYTES)
    if not paths:
        raise SystemExit(f"no photos under {args.stamps}: apt-get install tuxpaint-stamps-default")
    originals = [flatten(p, args.catalog_side, i) for i, p in enumerate(paths)]
    labels = np.array([p.relative_to(args.stamps).parts[0] for p in paths])
    embedder = load_embedder(args.model, args.cache_dir, features=args.features)
    global _side
    if args.decode == DECODE_SCALED:
        from lookalike.images import SCALED_DECODE_FACTOR

        _side = SCALED_DECODE_FACTOR * embedder.input_size
    print(f"decode: {args.decode}; catalog photos: {args.catalog_side or 'no'}")
    index = np.arange(len(paths))
    tune = make_pairs(originals, labels, index[index % 2 == 0], embedder, args.tune_seed)
    test = make_pairs(originals, labels, index[index % 2 == 1], embedder, args.test_seed)
    print(
        f"{len(paths)} photos in {len(set(labels))} categories; model {embedder.version}; "
        f"tune: {len(tune.pos_embedding)} positive / {len(tune.neg_embedding)} negative pairs, "
        f"test: {len(test.pos_embedding)} / {len(test.neg_embedding)}; "
        f"{time.monotonic() - started:.0f} s to make and embed them"
    )
    print(
        f"  pairs judged on the embedding alone (an image with < {MIN_COLOR_ENTROPY} bits of "
        f"colour): {1 - tune.pos_informative.mean():.1%} of positives, "
        f"{1 - tune.neg_informative.mean():.1%} of negatives"
    )
    for name, values in (("embedding", tune.pos_embedding), ("colour", tune.pos_color)):
        print(f"  positives, {name} similarity by edit:")
        for kind in EDITS:
            v = values[[k == kind for k in tune.kinds]]
            print(
                f"    {kind:16s} min {v.min():.3f}  5th pct {np.percentile(v, 5):.3f}  "
                f"median {np.median(v):.3f}"
            )

    thresholds = np.round(np.arange(0.50, 0.991, 0.01), 3)
    print("\nembedding cosine alone (tune half):")
    alone = measure(tune.pos_embedding, tune.neg_embedding, thresholds)
    top = best(alone)
    print(
        f"  best threshold {top.threshold:.2f}: recall {top.recall:.3f}, precision "
        f"{top.precision_balanced:.3f} balanced / {top.precision_all_pairs:.3f} all pairs"
    )
    print("\nweight of the embedding in the duplicate score (tune half), best threshold each:")
    for weight in np.round(np.arange(0.0, 1.01, 0.1), 2):
        r = best(measure(*tune.scores(float(weight)), thresholds))
        print(
            f"  w={weight:.1f}: threshold {r.threshold:.2f}  recall {r.recall:.3f}  "
            f"precision {r.precision_all_pairs:.3f} (all pairs)"
        )
    tuned = measure(*tune.scores(EMBEDDING_WEIGHT), thresholds)
    print(f"\nduplicate score, w={EMBEDDING_WEIGHT} (tune half):")
    table(tuned, every=2)
    chosen = best(tuned)
    print(f"\nchosen on the tune half: {chosen.threshold:.2f} (shipped: {DEFAULT_THRESHOLD})")
    held_out = measure(*test.scores(EMBEDDING_WEIGHT), np.array([DEFAULT_THRESHOLD]))[0]
    print(
        f"test half at the shipped threshold {DEFAULT_THRESHOLD}: recall {held_out.recall:.3f}, "
        f"precision {held_out.precision_balanced:.3f} balanced / "
        f"{held_out.precision_all_pairs:.3f} all same-category pairs "
        f"(target: both >= {TARGET})"
    )
    whole: dict[str, object] | None = None
    if not np.allclose(test.pos_whole, test.pos_embedding, atol=1e-5):
        whole = compare_whole(tune, test, thresholds)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": embedder.version,
                    "photos": len(paths),
                    "embedding_weight": EMBEDDING_WEIGHT,
                    "chosen_on_tune": asdict(chosen),
                    "shipped_threshold": DEFAULT_THRESHOLD,
                    "test_at_shipped": asdict(held_out),
                    "tune": [asdict(r) for r in tuned],
                    "embedding_alone_tune": [asdict(r) for r in alone],
                    "whole_vector": whole,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
