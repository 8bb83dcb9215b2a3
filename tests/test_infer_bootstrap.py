"""Bootstrap intervals: the weighted metrics equal the metrics of the expanded resample, the interval is
deterministic for a seed, clusters are resampled whole, and the 95% interval covers the true AUC (and the true
expected log loss) of a binormal score distribution at about the stated rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infer.bootstrap import bootstrap_ci, resample_weights, weighted_auc, weighted_log_loss
from infer.metrics import log_loss, roc_auc


def test_weighted_metrics_equal_metrics_of_the_expanded_resample():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 1)  # many ties, fake and real at the same score
    w = resample_weights(rng, 300, 5)
    assert w.shape == (5, 300) and (w.sum(axis=1) == 300).all()
    auc, ll = weighted_auc(y, p, w), weighted_log_loss(y, p, w)
    for b in range(5):
        idx = np.repeat(np.arange(300), w[b])
        assert auc[b] == pytest.approx(roc_auc(y[idx], p[idx]), abs=1e-12)
        assert ll[b] == pytest.approx(log_loss(y[idx], p[idx]), abs=1e-12)
    # a resample without any real: undefined
    only_fakes = (y == 1).astype(float)[None, :]
    assert np.isnan(weighted_auc(y, p, only_fakes)[0])


def test_interval_is_seeded_and_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 400), 0, 1)
    a = bootstrap_ci(y, p, n_resamples=300, seed=7)
    assert a == bootstrap_ci(y, p, n_resamples=300, seed=7)
    assert a != bootstrap_ci(y, p, n_resamples=300, seed=8)
    lo, hi = a["auc"]
    assert lo < roc_auc(y, p) < hi and hi - lo < 0.2
    lo, hi = a["log_loss"]
    assert lo < log_loss(y, p) < hi
    assert a["n_resamples"] == 300 and a["unit"] == "sample" and a["n_units"] == 400


def test_clusters_are_resampled_whole_and_widen_the_interval():
    # 40 videos x 25 frames; frames of a video share most of their score, so frames are far from independent
    rng = np.random.default_rng(1)
    n_vid, n_fr = 40, 25
    yv = np.arange(n_vid) % 2
    base = 0.5 + 0.15 * (yv - 0.5) + rng.normal(0, 0.15, n_vid)
    y = np.repeat(yv, n_fr)
    p = np.clip(np.repeat(base, n_fr) + rng.normal(0, 0.02, n_vid * n_fr), 0, 1)
    vid = np.repeat(np.arange(n_vid), n_fr)
    naive = bootstrap_ci(y, p, n_resamples=400, seed=0)
    clustered = bootstrap_ci(y, p, n_resamples=400, seed=0, clusters=vid)
    assert clustered["unit"] == "cluster" and clustered["n_units"] == n_vid
    width = lambda r: r["auc"][1] - r["auc"][0]  # noqa: E731
    assert width(clustered) > 2.5 * width(naive)


def test_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_ci([0, 1], [0.2, 0.8], n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_ci([0, 1], [0.2, 0.8], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([0, 1], [0.2, 0.8], clusters=[1, 2, 3])
    r = bootstrap_ci([1, 1, 1], [0.2, 0.8, 0.5], n_resamples=10)
    assert r["auc"] is None and r["n_auc_undefined"] == 10 and r["log_loss"][0] <= r["log_loss"][1]


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_coverage_of_the_true_auc_and_log_loss_is_about_95_percent():
    """200 data sets of 120 fakes + 120 reals, scores sigmoid(z) with z ~ N(d, 1) for fakes and N(0, 1) for reals:
    true AUC = Phi(d / sqrt 2) = 0.80. The share of 95% intervals that contain it must lie in the binomial band
    0.95 +- 3 sd (sd = sqrt(.95 * .05 / 200) = 0.015), i.e. [0.904, 0.996]. Measured with these seeds: 0.955 (AUC)
    and 0.975 (log loss); an interval that is too narrow fails (the 85% interval covers 0.86 of the time)."""
    d = 2.0 ** 0.5 * 0.8416212335729143  # Phi^-1(0.8) * sqrt 2
    true_auc = _phi(d / math.sqrt(2.0))
    assert true_auc == pytest.approx(0.8, abs=1e-9)
    rng = np.random.default_rng(2024)
    # the expected log loss of this score distribution, by a large Monte Carlo sample (standard error ~ 5e-4)
    zf, zr = rng.normal(d, 1, 400_000), rng.normal(0, 1, 400_000)
    true_ll = 0.5 * (np.log1p(np.exp(-zf)).mean() + np.log1p(np.exp(zr)).mean())
    n, trials = 120, 200
    y = np.r_[np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)]
    hit_auc = hit_ll = 0
    for t in range(trials):
        z = np.r_[rng.normal(d, 1, n), rng.normal(0, 1, n)]
        ci = bootstrap_ci(y, 1 / (1 + np.exp(-z)), n_resamples=400, seed=t)
        hit_auc += ci["auc"][0] <= true_auc <= ci["auc"][1]
        hit_ll += ci["log_loss"][0] <= true_ll <= ci["log_loss"][1]
    band = 3 * math.sqrt(0.95 * 0.05 / trials)
    assert abs(hit_auc / trials - 0.95) <= band, hit_auc / trials
    assert abs(hit_ll / trials - 0.95) <= band, hit_ll / trials
