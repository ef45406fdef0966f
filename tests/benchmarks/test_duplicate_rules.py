"""benchmarks/duplicate_threshold.py chooses the near-duplicate constants with a vectorised
copy of lookalike.verify.Verdict.relation: the two must agree on every kind of verdict, or
the constants it reports are not the service's."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np

from benchmarks import duplicate_threshold as bench
from lookalike import verify
from lookalike.duplicate_candidates import candidate_floor


def test_the_benchmarks_rule_is_the_services() -> None:
    verdicts = [
        verify.Verdict(*figures)
        for figures in product(
            (0, 4, 12),
            (0.01, 0.05, 0.2),
            (0.0, 30.0),
            (0.0, 0.1),
            (0.0, 0.1),
            (0.0, 1.0),
            (0.0, 0.03, 1.0),
            (0.0, 0.5, 1.0),
            (0.0, 0.5, 1.0),
            (0.0, 0.5, 1.0),
            (0.0, 1.0),
        )
    ]
    pairs = [("group", 1.0, v) for v in verdicts]
    rule = bench.shipped_rule()
    near, variant = bench.relations(pairs, rule, candidate_floor("efficientnet-lite0"))
    expected = [v.relation(rule.threshold) for v in verdicts]
    np.testing.assert_array_equal(near, [r == "near" for r in expected])
    np.testing.assert_array_equal(variant, [r == "variant" for r in expected])
    # Step 8 decides some of them: a near pair with strokes of its own on both sides.
    assert any(
        v.relation(rule.threshold) is None
        and replace(v, local=verify.MAX_LOCAL).relation(rule.threshold) == "near"
        for v in verdicts
    )
    # And the frame crossing: a cut-out letter lying on a longer one as its crop would.
    assert any(
        v.relation(rule.threshold) is None
        and replace(v, crossing=0.0).relation(rule.threshold) == "near"
        for v in verdicts
    )
    # And the gap past a frame: an A lying on an A-umlaut, its dots past a gap.
    assert any(
        v.relation(rule.threshold) is None
        and replace(v, gapped=0.0).relation(rule.threshold) == "near"
        for v in verdicts
    )
    # And the edges off one similarity: a lowercase x lying on an uppercase X.
    assert any(
        v.relation(rule.threshold) is None
        and replace(v, displaced=0.0).relation(rule.threshold) == "near"
        for v in verdicts
    )
    # And a variant's colour edges: a cement mixer on a tow truck's chassis.
    assert any(
        v.relation(rule.threshold) is None
        and replace(v, reshaped=0.0).relation(rule.threshold) == "variant"
        for v in verdicts
    )
    assert "near" in expected and "variant" in expected
