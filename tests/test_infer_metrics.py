"""Metrics against hand-computed cases (AUC with ties, EER, AP, log loss) and the aggregation rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facetubes.errors import ConfigError
from infer.aggregate import (clip_probability, combine_members, fake_probability, logit, parse_clip,
                             tube_probability, video_probability)
from infer.metrics import (accuracy, average_precision, binary_metrics, correlation_matrix, equal_error_rate,
                           log_loss, rankdata, roc_auc, roc_curve)

# y = [0, 0, 1, 1], scores [0.1, 0.5, 0.5, 0.9]: one fake/real tie at 0.5.
Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.5, 0.5, 0.9])


def test_auc_with_ties_counts_half():
    # pairs (fake, real): (0.5, 0.1)=1, (0.5, 0.5)=1/2, (0.9, 0.1)=1, (0.9, 0.5)=1 -> 3.5 / 4
    assert roc_auc(Y, S) == pytest.approx(0.875)


def test_auc_perfect_inverted_and_all_tied():
    assert roc_auc([0, 1, 0, 1], [0.1, 0.8, 0.2, 0.9]) == 1.0
    assert roc_auc([0, 1, 0, 1], [0.9, 0.2, 0.8, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_equals_pairwise_count_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_roc_curve_points_group_ties():
    c = roc_curve(Y, S)
    np.testing.assert_allclose(c.fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(c.tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(c.thresholds[1:], [0.9, 0.5, 0.1])


def test_eer_interpolates_between_curve_points():
    # fnr = [1, .5, 0, 0], fpr = [0, 0, .5, 1]: fnr - fpr = .5 then -.5, crossing halfway -> fpr .25
    eer, thr = equal_error_rate(Y, S)
    assert eer == pytest.approx(0.25)
    assert thr == 0.5


def test_eer_exact_point_and_separable():
    # scores separate perfectly: EER 0
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    # y=[1,0,1,0] s=[.9,.8,.3,.2]: points (fpr,tpr): (0,.5) (.5,.5) (.5,1) (1,1); at (.5,.5) fnr=fpr=.5
    assert equal_error_rate([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2])[0] == pytest.approx(0.5)


def test_average_precision_hand_computed():
    # thresholds .9: P=1 R=.5; .5 (tie): P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert average_precision(Y, S) == pytest.approx(0.5 + 1 / 3)
    # ranking fake, real, fake: P@1=1 (R=.5), P@3=2/3 (R=1) -> .5 + .5*2/3
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0


def test_log_loss_hand_computed_and_clipping():
    expected = -(2 * math.log(0.9) + 2 * math.log(0.5)) / 4
    assert log_loss(Y, S) == pytest.approx(expected)
    # a confident mistake is bounded by eps: -log(eps)/n
    assert log_loss([1], [0.0], eps=1e-15) == pytest.approx(-math.log(1e-15))
    assert log_loss([1, 0], [0.0, 1.0], eps=0.01) == pytest.approx(-math.log(0.01))
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_accuracy_threshold_half_is_real():
    assert accuracy([1, 0, 1, 0], [0.6, 0.5, 0.5, 0.4]) == 0.75


def test_binary_metrics_single_class_gives_null_with_note():
    m = binary_metrics(np.array([0, 0, 0]), np.array([0.2, 0.4, 0.1]))
    assert m["auc"] is None and m["eer"] is None and m["ap"] is None
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.9)) / 3)
    assert any("undefined" in n for n in m["notes"])
    m = binary_metrics(np.array([1, 1]), np.array([0.7, 0.9]))
    assert m["auc"] is None and m["ap"] == 1.0


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        log_loss([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.1, 0.2])


def test_rankdata_and_correlations():
    np.testing.assert_allclose(rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    s = np.array([[0.1, 0.2, 0.9], [0.2, 0.4, 0.5], [0.3, 0.6, 0.1], [0.4, 0.9, 0.3]])
    r = correlation_matrix(s)
    np.testing.assert_allclose(r, np.corrcoef(s.T), atol=1e-12)
    rs = correlation_matrix(s, method="spearman")
    assert rs[0, 1] == pytest.approx(1.0)  # monotone, not linear
    assert r[0, 1] < 1.0


# ---------------------------------------------------------------------------------------------------------------
# aggregation rules


def test_fake_probability_sigmoid_and_softmax():
    one = torch.tensor([[0.0], [2.0]])
    np.testing.assert_allclose(fake_probability(one).numpy(), [0.5, 1 / (1 + math.exp(-2))], rtol=1e-6)
    two = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(fake_probability(two).numpy(), [1 / (1 + math.exp(-2)), 0.5], rtol=1e-6)
    with pytest.raises(ValueError):
        fake_probability(torch.zeros(2, 3))


def test_tube_probability_mean_and_median():
    p = np.array([[0.1, 0.3], [0.9, 0.7], [0.5, 0.5]])  # 3 views x {x, flip}
    assert tube_probability(p) == pytest.approx(0.5)
    p = np.array([[0.1, 0.3], [0.9, 0.9], [0.8, 0.6]])  # view means .2, .9, .7 -> median .7 (mean would be .6)
    assert tube_probability(p, views="median") == pytest.approx(0.7)
    with pytest.raises(ValueError):
        tube_probability(np.array([[np.nan, 0.5]]))


def test_video_probability_mean_max_and_empty():
    assert video_probability([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert video_probability([0.2, 0.4, 0.9], mode="max") == pytest.approx(0.9)
    with pytest.raises(ValueError):
        video_probability([])


def test_combine_members_weighted_prob_and_logit():
    assert combine_members([0.2, 0.8]) == pytest.approx(0.5)
    assert combine_members([0.2, 0.8], [1, 3]) == pytest.approx(0.25 * 0.2 + 0.75 * 0.8)
    # logit mean of .9 and .5: sigmoid((log 9 + 0) / 2) = 3 / 4
    assert combine_members([0.9, 0.5], mode="logit") == pytest.approx(0.75)
    # weights 3:1 -> sigmoid(0.75 * log 9) = 9**.75 / (1 + 9**.75)
    assert combine_members([0.9, 0.5], [3, 1], mode="logit") == pytest.approx(9 ** 0.75 / (1 + 9 ** 0.75))
    # certainty does not produce inf
    assert 0.5 < combine_members([1.0, 0.5], mode="logit") < 1.0
    assert np.isfinite(logit(0.0))
    with pytest.raises(ValueError):
        combine_members([0.5, 0.5], [0, 0])
    with pytest.raises(ValueError):
        combine_members([0.5], [1, 1])


def test_clipping_and_parse():
    assert clip_probability(0.999, (0.01, 0.99)) == 0.99
    assert clip_probability(0.0, (0.01, 0.99)) == 0.01
    assert clip_probability(0.3, (0.01, 0.99)) == 0.3
    assert clip_probability(0.999, None) == 0.999
    assert parse_clip("0.001,0.999") == (0.001, 0.999)
    assert parse_clip("0.05") == (0.05, 0.95)
    assert parse_clip("none") is None
    for bad in ("0.6,0.9", "a,b", "0.1,0.2,0.3", "-0.1,0.9"):
        with pytest.raises(ConfigError):
            parse_clip(bad)
