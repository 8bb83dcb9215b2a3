"""Vectorised bootstrap confidence intervals for AUC and log loss.

A bootstrap resample is represented by integer weights (how often each sample was drawn), so that ``B`` resamples
of ``N`` samples are one ``(B, N)`` array and every metric is a few numpy reductions over it; the scores are sorted
once for all resamples. With ``clusters`` (e.g. the video of each frame or tube) whole clusters are resampled, the
usual correction when samples of one video are not independent.

Conventions as in :mod:`infer.metrics`: ``y`` ``(N,)`` with 1 = fake, ``p`` ``(N,)`` fake probabilities.
The interval is the percentile interval of the resampled metric. Resamples with a single class (AUC undefined)
are dropped from the AUC interval and counted.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from .metrics import DEFAULT_EPS, _check

__all__ = ["resample_weights", "weighted_auc", "weighted_log_loss", "bootstrap_ci"]

#: resamples processed together at most, and the number of (resample, sample) cells per chunk: bounds each
#: temporary array to about 32 MB whatever the number of samples.
CHUNK = 256
CHUNK_CELLS = 4_000_000


def resample_weights(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``b`` resamples with replacement: ``(b, n)`` int64
    counts, every row summing to ``n``."""
    idx = rng.integers(0, n, size=(b, n))
    flat = (idx + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


class _Sorted:
    """Scores sorted once for every resample: the ascending order, the labels in that order, and for each fake
    the (exclusive) ends of the runs of scores below and at its own score."""

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        self.order = np.argsort(p, kind="mergesort")
        ps = p[self.order]
        self.fake = y[self.order].astype(bool)
        run_start = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
        run_end = np.r_[run_start[1:], ps.size]
        run_of = np.repeat(np.arange(run_start.size), run_end - run_start)
        self.below = run_start[run_of][self.fake]  # samples strictly below each fake's score
        self.upto = run_end[run_of][self.fake]  # samples at or below it


def _auc_sorted(s: _Sorted, ws: np.ndarray) -> np.ndarray:
    """AUC of each row of ``ws`` ``(B, N)``, weights already in the sorted order of ``s``."""
    real_cum = np.zeros((ws.shape[0], ws.shape[1] + 1))
    np.cumsum(ws * ~s.fake, axis=1, out=real_cum[:, 1:])  # real weight among the first k samples
    w_fake = ws[:, s.fake]
    n_fake, n_real = w_fake.sum(axis=1), real_cum[:, -1]
    # a fake beats the reals below its score and ties with half of those at its score
    num = (w_fake * (real_cum[:, s.below] + real_cum[:, s.upto])).sum(axis=1) * 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = num / (n_fake * n_real)
    auc[(n_fake == 0) | (n_real == 0)] = np.nan
    return auc


def weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC of each weighted resample, ties counted as 1/2 (the Mann-Whitney statistic with weights).

    Args:
        y: ``(N,)`` labels; p: ``(N,)`` scores; w: ``(B, N)`` non-negative sample weights.
    Returns:
        ``(B,)`` float64; NaN where a resample has no fake or no real weight.
    """
    y, p = _check(y, p)
    s = _Sorted(y, p)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return _auc_sorted(s, w[:, s.order])


def _sample_log_loss(y: np.ndarray, p: np.ndarray, eps: float) -> np.ndarray:
    """``(N,)`` binary cross-entropy of each sample, ``p`` clipped to ``[eps, 1 - eps]``."""
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps}")
    q = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    with np.errstate(divide="ignore"):
        return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def weighted_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Log loss of each weighted resample: ``(B, N)`` weights -> ``(B,)``."""
    y, p = _check(y, p)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return (w @ _sample_log_loss(y, p, eps)) / w.sum(axis=1)


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def bootstrap_ci(y: np.ndarray, p: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                 clusters: Optional[np.ndarray] = None, level: float = 0.95, eps: float = DEFAULT_EPS
                 ) -> dict[str, Any]:
    """Percentile bootstrap intervals of AUC and log loss.

    Args:
        y, p: ``(N,)`` labels and probabilities.
        n_resamples: number of resamples ``B`` (>= 1).
        seed: the resamples depend only on the seed (and ``N``), so reports are reproducible.
        clusters: optional ``(N,)`` cluster id of each sample (any hashable values); clusters are drawn with
            replacement and carry all their samples.
        level: coverage of the interval (0.95: the 2.5 and 97.5 percentiles).
    Returns:
        JSON-ready ``{"auc": [lo, hi] | None, "log_loss": [lo, hi], "level", "n_resamples", "seed", "unit",
        "n_units", "n_auc_undefined"}``.
    """
    y, p = _check(y, p)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if clusters is not None:
        _, cid = np.unique(np.asarray(clusters).reshape(-1), return_inverse=True)
        if cid.size != y.size:
            raise ValueError(f"{cid.size} cluster ids for {y.size} samples")
        n_units = int(cid.max()) + 1
    else:
        cid, n_units = None, int(y.size)
    rng = np.random.default_rng(seed)
    s = _Sorted(y, p)
    q_ll = _sample_log_loss(y, p, eps)[s.order]  # (N,) per-sample loss, sorted like the weights
    cid_sorted = cid[s.order] if cid is not None else None
    aucs, lls = [], []
    for b in _chunks(n_resamples, max(1, min(CHUNK, CHUNK_CELLS // y.size))):
        # plain resampling: the draws are exchangeable, so the counts are drawn directly in the sorted order
        w = resample_weights(rng, n_units, b).astype(np.float64)
        if cid_sorted is not None:
            w = w[:, cid_sorted]
        aucs.append(_auc_sorted(s, w))
        lls.append((w @ q_ll) / w.sum(axis=1))
    auc, ll = np.concatenate(aucs), np.concatenate(lls)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    ok = np.isfinite(auc)
    return {
        "level": level, "n_resamples": n_resamples, "seed": seed,
        "unit": "cluster" if cid is not None else "sample", "n_units": n_units,
        "auc": [float(v) for v in np.percentile(auc[ok], q)] if ok.any() else None,
        "n_auc_undefined": int((~ok).sum()),
        "log_loss": [float(v) for v in np.percentile(ll, q)],
    }
