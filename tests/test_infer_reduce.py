"""infer.reduce: the aggregation rules, on hand-made numbers (the confident strategy at its edges)."""

from __future__ import annotations

import numpy as np
import pytest

from infer.reduce import clip_probs, confident_strategy, geometric_mean, reduce_probs


def test_confident_needs_more_than_11_confident_faces() -> None:
    # 11 faces above 0.8 out of 20: 11 > 20 // 2.5 = 8, but not > 11 -> plain mean
    p = [0.9] * 11 + [0.5] * 9
    assert confident_strategy(p) == pytest.approx(np.mean(p))
    # 12 faces above 0.8: mean of those only
    p = [0.9] * 6 + [0.95] * 6 + [0.5] * 8
    assert confident_strategy(p) == pytest.approx(0.925)


def test_confident_sz_floor_division_with_few_faces() -> None:
    # 12 confident of 30: 30 // 2.5 = 12.0, 12 > 12 is false -> mean of all
    p = [0.9] * 12 + [0.5] * 18
    assert confident_strategy(p) == pytest.approx(np.mean(p))
    # 12 confident of 29: 29 // 2.5 = 11.0 -> confident mean
    p = [0.9] * 12 + [0.5] * 17
    assert confident_strategy(p) == pytest.approx(0.9)
    # few faces: 3 of 3 above 0.8 is never enough (needs > 11)
    assert confident_strategy([0.9, 0.95, 0.99]) == pytest.approx(np.mean([0.9, 0.95, 0.99]))


def test_confident_low_branch_at_0_9_sz() -> None:
    # 9 of 10 below 0.2: 9 > 0.9 * 10 = 9.0 is false -> mean of all
    p = [0.1] * 9 + [0.6]
    assert confident_strategy(p) == pytest.approx(np.mean(p))
    # 10 of 10 below 0.2 -> mean of those (same here), and 19 of 20 -> the low ones only
    p = [0.1] * 19 + [0.7]
    assert confident_strategy(p) == pytest.approx(0.1)
    # strict thresholds: exactly 0.8 and 0.2 do not count
    assert confident_strategy([0.2] * 20) == pytest.approx(0.2)
    assert confident_strategy([0.8] * 20) == pytest.approx(0.8)


def test_reduce_probs_rules() -> None:
    p = [0.1, 0.2, 0.9]
    assert reduce_probs(p, "mean") == pytest.approx(0.4)
    assert reduce_probs(p, "median") == pytest.approx(0.2)
    assert reduce_probs(p, "max") == pytest.approx(0.9)
    assert reduce_probs([0.95] * 12, "confident") == pytest.approx(0.95)
    with pytest.raises(ValueError, match="reduction must be"):
        reduce_probs(p, "mode")
    with pytest.raises(ValueError, match="no probabilities"):
        reduce_probs([], "mean")
    with pytest.raises(ValueError, match="non-finite"):
        reduce_probs([0.5, float("nan")], "median")


def test_geometric_mean_and_clip() -> None:
    assert geometric_mean([0.25, 1.0]) == pytest.approx(0.5, rel=1e-5)
    assert geometric_mean([0.0, 0.5]) > 0  # eps keeps a hard 0 from zeroing the ensemble
    assert clip_probs(0.0005, 0.001, 0.999) == 0.001
    assert clip_probs(0.5, 0.001, 0.999) == 0.5
    assert np.allclose(clip_probs([0.0, 1.0], 0.01, 0.99), [0.01, 0.99])
    with pytest.raises(ValueError):
        clip_probs(0.5, 0.9, 0.1)
