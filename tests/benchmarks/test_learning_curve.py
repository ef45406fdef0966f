"""The learning-curve command's parts (benchmarks/quality_learning_curve.py): the labelled
subsets it trains on, and a curve on vectors whose classes a head can separate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality_learning_curve import curve, labelled_subset, parse_variant, table
from indexer.quality.datasets import LabelledImage, by_label


def test_labelled_subsets_take_n_of_every_class_or_all_it_has() -> None:
    train = [LabelledImage(f"a{i}", Path(f"a{i}"), "a") for i in range(30)]
    train += [LabelledImage(f"b{i}", Path(f"b{i}"), "b") for i in range(7)]
    for n, expected in ((5, {"a": 5, "b": 5}), (20, {"a": 20, "b": 7}), (0, {"a": 30, "b": 7})):
        chosen = labelled_subset(train, n, seed=1)
        assert {k: len(v) for k, v in by_label(chosen).items()} == expected
        assert len({i.id for i in chosen}) == len(chosen)
    assert labelled_subset(train, 5, seed=1) == labelled_subset(train, 5, seed=1)
    assert labelled_subset(train, 5, seed=1) != labelled_subset(train, 5, seed=2)


def test_a_classifier_head_gains_where_a_nuisance_drowns_the_classes() -> None:
    # Four classes told apart by 4 dimensions, while 2 others vary five times as much with
    # nothing to do with the class (lighting, background): the backbone's cosine follows
    # the nuisance, a head trained on 20 labels a class learns to ignore it.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60)
    x = rng.normal(0, 0.1, (len(labels), 16)).astype(np.float32)
    x[np.arange(len(labels)), labels] += 1.0
    x[:, 4:6] += rng.normal(0, 5.0, (len(labels), 2))
    items = [LabelledImage(f"i{n}", Path(f"i{n}"), f"c{c}") for n, c in enumerate(labels)]

    kinds = ["classifier", "lda", "lda+unlabelled", "lda+unlabelled+heldout"]
    rows = curve("toy", items, x, kinds, seeds=1, sizes=(20,))

    classifier, lda, semi, transductive = rows
    for row in rows:
        assert (row["per_class"], row["labelled_images"], row["held_out"]) == (20, 80, 72)
        assert row["gain"] > row["two_se"] > 0, row
        assert row["head_p5"] > row["backbone_p5"] + 0.1, row
    # The closed-form head is paired with the classifier on the same draws and queries.
    assert lda["vs_reference"] == pytest.approx(lda["head_p5"] - classifier["head_p5"])
    assert lda["reference"] == "classifier" and "vs_reference" not in classifier
    # Each draw's own figures (one draw here: the same as the mean).
    assert lda["draw_gains"] == [pytest.approx(lda["gain"])]
    assert lda["draw_vs_reference"] == [pytest.approx(lda["vs_reference"])]
    # +unlabelled: the training split's 88 other vectors pseudo-labelled, a variant of its own.
    assert semi["kind"] == "lda+unlabelled" and semi["labelled_images"] == 80
    # +heldout: the 72 held-out vectors in the unlabelled pool too (transductive), a row of
    # its own beside the standard one.
    assert transductive["kind"] == "lda+unlabelled+heldout" and transductive["held_out"] == 72
    text = table(rows)
    assert "| toy | 20 | 80 | 72 |" in text
    assert "lda vs classifier" in text.splitlines()[0]
    assert "lda+unlabelled vs classifier" in text.splitlines()[0]


def test_variants_parse_and_heldout_needs_unlabelled() -> None:
    assert parse_variant("combined+unlabelled+heldout") == ("combined", False, True, True)
    assert parse_variant("lda+aug") == ("lda", True, False, False)
    for bad in ("lda+heldout", "lda+nothing", "knn"):
        with pytest.raises(SystemExit):
            parse_variant(bad)
