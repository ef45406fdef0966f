"""`indexer evaluate`: metrics checked by hand, the store path against exact search, and a
real run (real model, real tuxpaint photos, qdrant-edge) producing the report."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.cli import main as indexer_main
from indexer.quality.datasets import (
    OPENCLIPART,
    SHOP_CLASSES,
    DatasetError,
    LabelledImage,
    export_fashion_mnist,
    export_shop,
    load_labelled,
    stratified_sample,
    stratified_split,
    write_manifest,
)
from indexer.quality.evaluate import (
    add_model_options,
    chance_precision,
    colour_histogram,
    evaluation_store,
    model_settings,
    rank_in_store,
    retrieval_metrics,
)
from support import labelled_images

# --- metrics -----------------------------------------------------------------------------


def test_metrics_on_a_hand_checked_case() -> None:
    labels = ["a", "a", "a", "b", "b", "c"]
    # Row i: image i's nearest neighbours, best first (-1: fewer hits than asked).
    neighbours = np.array(
        [
            [1, 3, 2],  # a: hit, miss, hit
            [3, 4, 0],  # a: miss, miss, hit
            [0, 1, 5],  # a: hit, hit, miss
            [4, 0, 1],  # b: hit, miss, miss
            [0, 1, -1],  # b: miss, miss, none
            [0, 1, 2],  # c: no other "c" exists, so it is not a query
        ]
    )
    scores = retrieval_metrics(labels, neighbours, ks=(1, 3))

    assert scores.valid.tolist() == [True] * 5 + [False]
    # P@1: 1, 0, 1, 1, 0.  P@3: 2/3, 1/3, 2/3, 1/3, 0.
    assert scores.summary["P@1"] == pytest.approx(3 / 5)
    assert scores.summary["P@3"] == pytest.approx(2 / 5)
    # R@3 (an "a" has 2 relevant images, a "b" 1): 1, 1/2, 1, 1, 0.
    assert scores.summary["R@3"] == pytest.approx(3.5 / 5)
    # AP@3 = sum of P@i at the hits / min(3, relevant): (1 + 2/3)/2, (1/3)/2, (1 + 1)/2, 1/1, 0.
    assert scores.summary["mAP@3"] == pytest.approx((5 / 6 + 1 / 6 + 1 + 1 + 0) / 5)
    assert scores.summary["mAP@1"] == scores.summary["P@1"]
    # A random ranking finds an "a" with probability 2/5, a "b" with 1/5.
    assert chance_precision(labels) == pytest.approx((3 * 2 / 5 + 2 * 1 / 5) / 5)
    assert scores.per_class(labels, "P@1") == {"a": pytest.approx(2 / 3), "b": 0.5}
    # P@1 over the 5 queries: 1, 0, 1, 1, 0: sample standard deviation sqrt(0.3), / sqrt(5).
    assert scores.standard_error("P@1") == pytest.approx((0.3 / 5) ** 0.5)


def test_metrics_refuse_too_few_neighbours() -> None:
    with pytest.raises(ValueError, match="neighbours must be"):
        retrieval_metrics(["a", "a"], np.array([[1], [0]]), ks=(1, 5))


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_store_ranking_matches_exact_cosine_search(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((4, 32))
    labels = [str(i % 4) for i in range(60)]
    vectors = (centres[[int(c) for c in labels]] + 0.8 * rng.standard_normal((60, 32))).astype(
        np.float32
    )
    ids = [f"item-{i}" for i in range(60)]

    with evaluation_store(kind, "test", tmp_path) as store:
        neighbours, sims = rank_in_store(store, ids, labels, vectors, k=10)

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = unit @ unit.T
    np.fill_diagonal(exact, -np.inf)
    expected = np.argsort(-exact, axis=1)[:, :10]
    np.testing.assert_array_equal(neighbours, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(exact, expected, axis=1), atol=1e-5)


def test_colour_histogram_tells_red_from_blue() -> None:
    red, red2, blue = (Image.new("RGB", (30, 20), c) for c in ((250, 0, 0), (230, 10, 5), "blue"))
    hist = colour_histogram([red, red2, blue])
    assert hist.shape == (3, 512)
    np.testing.assert_allclose((hist**2).sum(axis=1), 1.0, atol=1e-6)
    assert hist[0] @ hist[1] > 0.99
    assert hist[0] @ hist[2] == 0.0


# --- labelled sets ---------------------------------------------------------------------------


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def test_folder_labels_by_depth_and_manifests(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    _png(root / "animals" / "birds" / "crow.png")
    _png(root / "animals" / "cat.png")
    _png(root / "loose.png")  # no folder, no label
    (root / "animals" / "notes.txt").write_text("not an image")

    depth1 = load_labelled(root)
    assert [(i.id, i.label) for i in depth1] == [
        ("animals.birds.crow", "animals"),
        ("animals.cat", "animals"),
    ]
    depth2 = {i.id: i.label for i in load_labelled(root, label_depth=2)}
    assert depth2 == {"animals.birds.crow": "animals/birds", "animals.cat": "animals"}

    manifest = write_manifest(depth1, tmp_path / "m.csv")
    assert load_labelled(manifest) == depth1
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(json.dumps({"path": "catalog/animals/cat.png", "label": "cat"}) + "\n")
    (item,) = load_labelled(jsonl)
    assert item.path == tmp_path / "catalog" / "animals" / "cat.png" and item.label == "cat"

    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), ("a.png", "x"), ("a.png", "y")])
    with pytest.raises(DatasetError, match="not unique"):
        load_labelled(bad)
    with pytest.raises(DatasetError, match="no such folder"):
        load_labelled(tmp_path / "missing")


def test_stratified_sample_and_split_keep_every_label() -> None:
    items = [LabelledImage(f"{c}{i}", Path(f"{c}{i}.png"), c) for c in "abc" for i in range(10)]
    items.append(LabelledImage("d0", Path("d0.png"), "d"))  # a singleton
    sample = stratified_sample(items, per_class=4, min_per_class=2)
    assert sorted({i.label for i in sample}) == ["a", "b", "c"]
    assert all(sum(i.label == c for i in sample) == 4 for c in "abc")

    train, test = stratified_split(items, test_fraction=0.3, seed=1)
    assert {i.id for i in train} | {i.id for i in test} == {i.id for i in items}
    assert not {i.id for i in train} & {i.id for i in test}
    assert all(sum(i.label == c for i in test) == 3 for c in "abc")
    assert "d0" in {i.id for i in train}  # too small to hold out


def test_fashion_mnist_export_reads_idx_files(tmp_path: Path) -> None:
    source = tmp_path / "fm"
    source.mkdir()
    labels = [0, 1, 0, 9, 1]
    pixels = bytes((i * 7) % 256 for i in range(len(labels) * 784))
    with gzip.open(source / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + bytes(labels))
    with gzip.open(source / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(labels), 28, 28) + pixels)

    out = export_fashion_mnist(tmp_path / "out", per_class=2, source=source)

    items = load_labelled(out)
    assert sorted((i.label, i.id) for i in items) == [
        ("ankle-boot", "ankle-boot.t10k-00003"),
        ("t-shirt", "t-shirt.t10k-00000"),
        ("t-shirt", "t-shirt.t10k-00002"),
        ("trouser", "trouser.t10k-00001"),
        ("trouser", "trouser.t10k-00004"),
    ]
    with Image.open(out / "ankle-boot" / "t10k-00003.png") as image:
        assert image.size == (28, 28) and image.mode == "L"
        assert np.asarray(image).ravel()[:3].tolist() == [(3 * 784 + i) * 7 % 256 for i in range(3)]


@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="needs Debian's openclipart-png")
def test_shop_export_writes_catalog_photos_of_every_class_on_one_studio_set(
    tmp_path: Path,
) -> None:
    out = export_shop(tmp_path / "shop", per_class=2)

    items = load_labelled(out)
    assert sorted({i.label for i in items}) == sorted(SHOP_CLASSES)
    assert len(items) == 2 * len(SHOP_CLASSES)
    sizes = set()
    for item in items:
        with Image.open(item.path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.add(image.size)
            corner = np.asarray(image.convert("L").resize((40, 30)))[:3, :3]
        # One backdrop: the same light grey in every photo's corner, whatever the product.
        assert 200 < corner.mean() < 240, item.path
    megapixels = sorted(w * h / 1e6 for w, h in sizes)
    assert len(sizes) == 3 and megapixels[0] > 0.45 and megapixels[-1] < 1.55, sizes
    # Kept as it is when asked again with the same parameters.
    before = {i.path: i.path.stat().st_mtime_ns for i in items}
    export_shop(out, per_class=2)
    assert {i.path: i.path.stat().st_mtime_ns for i in load_labelled(out)} == before


# --- the real thing ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuxpaint_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 real photos, 8 in each of 6 tuxpaint categories."""
    chosen = labelled_images(per_category=8)
    items = [LabelledImage(f"{c}-{p.stem}", p, c) for c, p in chosen]
    return write_manifest(items, tmp_path_factory.mktemp("eval") / "tuxpaint.csv")


def test_evaluate_command_on_real_photos(
    tuxpaint_manifest: Path, model_cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code = indexer_main(
        [
            "evaluate",
            str(tuxpaint_manifest),
            "--model-cache",
            str(model_cache_dir),
            "--model",
            "efficientnet-lite0",
            "--out",
            str(out),
            "--examples",
            "3",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["images"] == 48 and report["dataset"]["classes"] == 6
    assert report["model"]["version"].startswith("efficientnet-lite0:")
    methods = report["methods"]
    assert set(methods) == {"model", "colour-histogram", "random"}
    for metric in ("P@1", "P@5", "P@10", "R@10", "mAP@10"):
        assert 0.0 <= methods["random"][metric] <= 1.0
    # What a user should see: the network finds same-category photos far above chance
    # (7/47 = 0.149 here) and above colour alone. Measured: P@5 0.55, colour 0.32.
    assert report["chance_precision"] == pytest.approx(7 / 47, abs=1e-4)
    assert methods["model"]["P@5"] > 0.45
    assert methods["model"]["P@5"] > methods["colour-histogram"]["P@5"] + 0.1
    assert methods["model"]["mAP@10"] > methods["random"]["mAP@10"] + 0.25
    assert set(report["per_class"]) == {"animals", "food", "plants", "vehicles", "seasonal", "town"}
    markdown = (out / "report.md").read_text()
    assert "| method | P@1 | P@5 | P@10 |" in markdown and "![example queries]" in markdown
    for picture in ("per_class.png", "examples.png"):
        with Image.open(out / picture) as image:
            assert image.width > 300 and image.height > 200


def test_evaluation_neighbours_are_the_exact_nearest(
    tuxpaint_manifest: Path, model_cache_dir: Path
) -> None:
    from indexer.quality.evaluate import evaluate
    from indexer.quality.results import MODEL
    from lookalike.images import SCALED_DECODE_FACTOR, decode_scaled
    from lookalike.settings import Settings
    from worker.model import get_embedder

    settings = Settings(model_cache=model_cache_dir)
    items = load_labelled(tuxpaint_manifest)[:24]
    evaluation = evaluate(items, settings, baselines=False, store="memory", progress=None)

    # Decoded as the worker decodes a new catalog's images (shrink-on-load).
    embedder = get_embedder(settings)
    side = SCALED_DECODE_FACTOR * embedder.input_size
    images = [decode_scaled(i.path.read_bytes(), max_pixels=10**8, side=side) for i in items]
    vectors = embedder.embed(images)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_array_equal(evaluation.methods[MODEL].neighbours, expected)


def test_evaluate_reports_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert indexer_main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_model_flags_override_the_settings() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    chosen = model_settings(parser.parse_args(["--input-size", "320", "--pooling", "gem"]))
    assert (chosen.input_size, chosen.pooling) == (320, "gem")
