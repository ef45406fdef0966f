"""`indexer train-head`: a head trained on real labelled photos becomes a model version the
worker loads (LOOKALIKE_HEAD), with the expected vectors, and it beats the raw backbone on
held-out photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from indexer.cli import main as indexer_main
from indexer.quality.datasets import LabelledImage, write_manifest
from indexer.quality.train_head import HeadReport
from lookalike.schema import ModelNotBuilt
from lookalike.settings import Settings
from support import labelled_images


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, Path]]:
    """Up to 20 real photos in each of 6 tuxpaint categories (115 in all)."""
    return labelled_images(per_category=20)


@pytest.fixture(scope="module")
def trained(
    photos: list[tuple[str, Path]], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    tmp = tmp_path_factory.mktemp("heads")
    items = [LabelledImage(f"{c}-{p.stem}", p, c) for c, p in photos]
    manifest = write_manifest(items, tmp / "photos.csv")
    out = tmp / "report"
    code = indexer_main(
        [
            "train-head",
            str(manifest),
            "--name",
            "photos",
            "--kind",
            "classifier",
            "--model-cache",
            str(model_dir),
            "--model",
            "efficientnet-lite0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads((out / "report.json").read_text())


def test_head_beats_the_backbone_on_held_out_photos(trained: dict) -> None:
    held_out = trained["held_out"]
    assert trained["split"]["test_images"] >= 30
    assert held_out["head"]["P@5"] > held_out["backbone"]["P@5"]
    assert trained["gain_p_at_5"] == pytest.approx(
        held_out["head"]["P@5"] - held_out["backbone"]["P@5"], abs=1e-3
    )
    # The report says plainly whether the 0.10 target was met.
    assert ("does NOT beat" in trained["verdict"]) != trained["meets_target"]


def test_the_head_is_a_model_version_the_worker_loads(
    trained: dict, model_dir: Path, photos: list[tuple[str, Path]]
) -> None:
    from worker.model import get_embedder

    manifest = json.loads((model_dir / "heads" / "photos.json").read_text())
    assert manifest["kind"] == "classifier" and manifest["dim"] == 256
    assert manifest["evaluation"]["held_out"] == trained["held_out"]

    settings = Settings(model_cache=model_dir, head="photos")
    assert settings.vector_size() == 256
    embedder = get_embedder(settings)
    base = get_embedder(settings.replace(head=""))
    assert embedder.name == "efficientnet-lite0-head-photos"
    assert embedder.version == f"{base.version}:{manifest['version']}"
    assert embedder.version == trained["head"]["embedder_version"]

    images = [Image.open(path).copy() for _, path in photos[:3]]
    vectors = embedder.embed(images)
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The head is a function of the backbone's vectors, as the manifest says.
    assert embedder.head is not None
    mapped = embedder.head.apply(base.embed(images))
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, mapped, atol=1e-5)
    # Keras and TFLite run the same head.
    keras_embedder = get_embedder(settings.replace(runtime="keras"))
    np.testing.assert_allclose(keras_embedder.embed(images), vectors, atol=1e-4)


def test_a_head_refuses_vectors_of_another_backbone_version(trained: dict, model_dir: Path) -> None:
    from worker.model import get_embedder

    with pytest.raises(ValueError, match=r"was trained on .*:resize:multiscale vectors"):
        get_embedder(Settings(model_cache=model_dir, head="photos", preprocess="crop"))
    with pytest.raises(ModelNotBuilt, match="head 'nothing'"):
        Settings(model_cache=model_dir, head="nothing").vector_size()


def test_triplet_and_standardise_heads(
    model_dir: Path, photos: list[tuple[str, Path]], tmp_path: Path
) -> None:
    from indexer.quality.train_head import train_and_evaluate
    from worker.model import get_embedder
    from worker.model.heads import TrainOptions

    items = [LabelledImage(f"{c}-{p.stem}", p, c) for c, p in photos[::2]]
    settings = Settings(model_cache=model_dir)
    # A standardise head keeps the backbone's size (1472, multiscale by default).
    for kind, dim in (("triplet", 64), ("standardise", settings.vector_size())):
        report = train_and_evaluate(
            items,
            settings,
            name=f"small-{kind}",
            options=TrainOptions(kind=kind, dim=dim, epochs=5),
            cache_dir=tmp_path / "vectors",
            progress=None,
        )
        assert report.dim == dim
        assert 0.0 <= report.test["head"].summary["P@5"] <= 1.0
        embedder = get_embedder(settings.replace(head=f"small-{kind}"))
        vectors = embedder.embed([Image.open(photos[0][1]).copy()])
        assert vectors.shape == (1, dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _runs_in_the_worker(
    settings: Settings, head: str, dim: int, photos: list[tuple[str, Path]]
) -> np.ndarray:
    """The saved head as the worker loads it: unit vectors of ``dim``, the head's own mapping
    of the backbone's vectors, the same from TFLite and Keras. Returns the TFLite vectors."""
    from worker.model import get_embedder

    embedder = get_embedder(settings.replace(head=head))
    base = get_embedder(settings)
    images = [Image.open(path).copy() for _, path in photos[:3]]
    vectors = embedder.embed(images)
    assert vectors.shape == (3, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.head is not None
    mapped = embedder.head.apply(base.embed(images))
    np.testing.assert_allclose(vectors, mapped / np.linalg.norm(mapped, axis=1)[:, None], atol=1e-5)
    keras_embedder = get_embedder(settings.replace(head=head, runtime="keras"))
    np.testing.assert_allclose(keras_embedder.embed(images), vectors, atol=1e-4)
    return vectors


def _train(
    model_dir: Path,
    photos: list[tuple[str, Path]],
    tmp_path: Path,
    name: str,
    options: Any,
) -> HeadReport:
    """``indexer train-head``'s training on the photos (70 % of them), saved as ``name``."""
    from indexer.quality.train_head import train_and_evaluate

    items = [LabelledImage(f"{c}-{p.stem}", p, c) for c, p in photos]
    return train_and_evaluate(
        items,
        Settings(model_cache=model_dir),
        name=name,
        options=options,
        cache_dir=tmp_path / "vectors",
        progress=None,
    )


def test_an_lda_head_from_a_dozen_photos_a_class_beats_the_backbone_in_the_worker(
    model_dir: Path, photos: list[tuple[str, Path]], tmp_path: Path
) -> None:
    # About 14 labelled photos a class for training: the closed-form head, saved and loaded
    # as the worker does, must still beat the raw backbone on the held-out photos.
    from worker.model.heads import TrainOptions

    settings = Settings(model_cache=model_dir)
    report = _train(model_dir, photos, tmp_path, "few-lda", TrainOptions(kind="lda"))
    assert report.kind == "lda"
    assert json.loads((model_dir / "heads" / "few-lda.json").read_text())["kind"] == "lda"
    held_out = report.test
    assert held_out["head"].summary["P@5"] > held_out["backbone"].summary["P@5"], held_out
    # The backbone's vector next to the discriminant coordinates (one fewer than classes).
    assert report.dim == settings.vector_size() + report.classes - 1

    _runs_in_the_worker(settings, "few-lda", report.dim, photos)


def test_a_combined_head_beats_the_backbone_and_runs_in_the_worker(
    model_dir: Path, photos: list[tuple[str, Path]], tmp_path: Path
) -> None:
    # The lda head's two parts next to two classifier heads trained with different seeds,
    # from about 14 labelled photos a class (the default kind, "auto", picks it): saved and
    # loaded as the worker does, it must still beat the raw backbone on the held-out photos,
    # and hold each part it is made of.
    from worker.model.heads import TrainOptions

    settings = Settings(model_cache=model_dir)
    options = TrainOptions(kind="auto", members=2, dim=64)
    report = _train(model_dir, photos, tmp_path, "few-combined", options)
    assert 10 <= report.train_images / report.classes < 20
    assert report.kind == "combined"
    assert json.loads((model_dir / "heads" / "few-combined.json").read_text())["kind"] == "combined"
    held_out = report.test
    assert held_out["head"].summary["P@5"] > held_out["backbone"].summary["P@5"], held_out
    # The backbone's vector, the discriminant coordinates, then each classifier's 64.
    assert report.dim == settings.vector_size() + report.classes - 1 + 2 * 64

    vectors = _runs_in_the_worker(settings, "few-combined", report.dim, photos)
    # Each part at unit length and weight 1: the backbone's look-alikes keep a third of the
    # cosine however the labels pull.
    parts = np.split(vectors * np.sqrt(3), [settings.vector_size(), report.dim - 2 * 64], axis=1)
    for part in parts:
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-4)


def test_auto_picks_lda_for_a_few_labels_a_class_and_the_combined_head_for_more() -> None:
    from worker.model.heads import AUTO_LDA_BELOW, TrainOptions, resolve_kind

    few = np.repeat(["a", "b", "c"], AUTO_LDA_BELOW - 1)
    many = np.repeat(["a", "b", "c"], AUTO_LDA_BELOW)
    assert resolve_kind(TrainOptions(kind="auto"), few).kind == "lda"
    assert resolve_kind(TrainOptions(kind="auto"), many).kind == "combined"
    assert resolve_kind(TrainOptions(kind="triplet"), few).kind == "triplet"


def test_lda_shrinkage_stays_in_range_and_separates_the_classes() -> None:
    # Fewer vectors than dimensions, two classes apart along one direction that varies
    # little, and a nuisance direction that varies a lot: the discriminant coordinate keeps
    # the classes apart and ignores the nuisance.
    from worker.model.heads import fit_lda

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    x = rng.normal(0, 0.1, (20, 64))
    x[:, 0] += np.where(y == 1, 0.5, -0.5)
    x[:, 1] += rng.normal(0, 5.0, 20)
    lda = fit_lda(x, y)
    assert 0.0 < lda.shrinkage <= 1.0
    assert lda.projection.shape == (64, 1)
    z = lda.apply(x)[:, 0]
    assert z[y == 0].max() < z[y == 1].min() or z[y == 1].max() < z[y == 0].min()


def test_train_head_refuses_a_bad_name(model_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    manifest = write_manifest([], tmp_path / "empty.csv")
    code = indexer_main(
        ["train-head", str(manifest), "--name", "Bad Name", "--model-cache", str(model_dir)]
    )
    assert code == 2
    assert "indexer train-head: head name 'Bad Name'" in capsys.readouterr().err


def test_train_head_augment_trains_on_flipped_and_cropped_copies_end_to_end(
    model_dir: Path, photos: list[tuple[str, Path]], tmp_path: Path
) -> None:
    # `indexer train-head DATASET --augment flip,crop` on real photos: each training photo's
    # two copies embedded by the real model and trained on, none of the held-out ones; the
    # head still beats the backbone on the held-out photos and runs in the worker.
    items = [LabelledImage(f"{c}-{p.stem}", p, c) for c, p in photos[::2]]
    manifest = write_manifest(items, tmp_path / "photos.csv")
    out = tmp_path / "report"
    args = ["train-head", str(manifest), "--name", "augmented", "--kind", "lda"]
    args += ["--augment", "flip,crop", "--model-cache", str(model_dir), "--out", str(out)]
    assert indexer_main(args) == 0
    report = json.loads((out / "report.json").read_text())
    training = json.loads((model_dir / "heads" / "augmented.json").read_text())["training"]
    assert training["augment"] == ["flip", "crop"]
    assert training["augmented_copies"] == 2 * report["split"]["train_images"]
    assert report["seconds"]["augment"] > 0
    held_out = report["held_out"]
    assert held_out["head"]["P@5"] > held_out["backbone"]["P@5"], held_out
    settings = Settings(model_cache=model_dir)
    _runs_in_the_worker(settings, "augmented", report["head"]["dim"], photos)


def test_train_head_refuses_an_unknown_augmentation_and_unlabelled_without_a_catalog(
    model_dir: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    manifest = write_manifest([], tmp_path / "empty.csv")
    args = ["train-head", str(manifest), "--name", "x", "--augment", "flip,rotate"]
    assert indexer_main([*args, "--model-cache", str(model_dir)]) == 2
    assert "unknown augmentation 'rotate'; choose from flip, crop, zoom" in capsys.readouterr().err
    # Unlabelled items are the catalog's (those without a value of the field).
    assert indexer_main(["train-head", str(manifest), "--name", "x", "--unlabelled"]) == 2
    assert "--unlabelled reads the catalog's items" in capsys.readouterr().err


def test_augmented_copies_are_flipped_cropped_and_zoomed_out() -> None:
    from indexer.quality.augment import augmented

    pixels = np.zeros((40, 50, 3), dtype=np.uint8)
    pixels[:, :] = (200, 210, 220)  # the backdrop
    pixels[10:30, 5:15] = (255, 0, 0)  # a red product on the left
    image = Image.fromarray(pixels)
    flipped = np.asarray(augmented(image, "flip"))
    assert (flipped[20, 40] == (255, 0, 0)).all() and (flipped[20, 10] == (200, 210, 220)).all()
    assert augmented(image, "crop").size == (40, 32)
    zoomed = augmented(image, "zoom")
    assert zoomed.size == image.size
    # The whole picture at 80 %, on its own backdrop colour: the corners stay backdrop.
    assert (np.asarray(zoomed)[0, 0] == (200, 210, 220)).all()
    transparent = augmented(image.convert("RGBA"), "zoom")
    assert np.asarray(transparent)[0, 0, 3] == 0


def test_pseudo_labels_go_to_the_confident_unlabelled_vectors_of_each_class() -> None:
    # Three classes, 5 labelled vectors each and 300 unlabelled ones: half of the unlabelled
    # vectors each class is given get its label, the most confident (nearest) first.
    from worker.model.heads import TrainOptions, pseudo_labelled

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.0, (3, 32))
    y = np.repeat([0, 1, 2], 5)
    x = centres[y] + rng.normal(0, 0.5, (15, 32))
    truth = np.repeat([0, 1, 2], 100)
    unlabelled = centres[truth] + rng.normal(0, 0.5, (300, 32))
    chosen, guessed = pseudo_labelled(x, y, unlabelled, 0.5, TrainOptions())
    assert 140 <= len(chosen) <= 160
    assert sorted(np.bincount(guessed).tolist()) == pytest.approx([50, 50, 50], abs=5)
    assert (guessed == truth[chosen]).mean() > 0.95


def test_with_pseudo_labels_appends_the_guesses_as_labels_where_a_kind_uses_them() -> None:
    # The labelled vectors first, then the confident unlabelled ones with their guessed
    # label's name; a head without labels (standardise) or one label gets nothing added.
    from worker.model.heads import TrainOptions, with_pseudo_labels

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1.0, (2, 16))
    names = np.array(["shirt", "shoe"])
    y = np.repeat([0, 1], 6)
    x = (centres[y] + rng.normal(0, 0.4, (12, 16))).astype(np.float32)
    truth = np.repeat([0, 1], 20)
    unlabelled = centres[truth] + rng.normal(0, 0.4, (40, 16))
    more_x, more_labels = with_pseudo_labels(x, names[y], unlabelled, TrainOptions(kind="lda"))
    assert len(more_x) == len(more_labels) == 12 + 20
    np.testing.assert_array_equal(more_x[:12], x)
    assert more_labels[:12].tolist() == names[y].tolist()
    added = more_labels[12:]
    # Each added vector is one of the unlabelled ones, labelled with its true class's name.
    rows = [int(np.argmin(np.abs(unlabelled - v).sum(axis=1))) for v in more_x[12:]]
    assert (added == names[truth[rows]]).mean() > 0.95
    for options, labels in (
        (TrainOptions(kind="standardise"), names[y]),
        (TrainOptions(kind="lda"), np.full(12, "shirt")),
        (TrainOptions(kind="lda", pseudo_labels=0.0), names[y]),
    ):
        assert len(with_pseudo_labels(x, labels, unlabelled, options)[0]) == 12
