"""Binary-classification metrics in plain numpy: log loss (the DFDC metric), ROC/AUC, EER, AP, accuracy, and
correlations between ensemble members.

Conventions: ``y`` is ``(N,)`` with 1 = fake (the positive class), 0 = real; ``p`` is ``(N,)`` fake probabilities
(or any score where higher means "more fake"). Tied scores are handled the way scikit-learn does: all samples
sharing a score enter the ROC / precision-recall curve at once, so a tie between a fake and a real counts as half a
correctly ordered pair in the AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = [
    "RocCurve", "roc_curve", "roc_auc", "equal_error_rate", "average_precision", "log_loss", "accuracy",
    "binary_metrics", "correlation_matrix", "rankdata",
]

#: scikit-learn's and Kaggle's default clipping for log loss.
DEFAULT_EPS = 1e-15


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    if y.size == 0:
        raise ValueError("no samples")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(p).all():
        raise ValueError("scores contain NaN or inf")
    return y.astype(np.int64), p


@dataclass(frozen=True)
class RocCurve:
    """Points of the ROC curve from (0, 0) to (1, 1), one per distinct score (descending)."""

    fpr: np.ndarray  # (K + 1,)
    tpr: np.ndarray  # (K + 1,)
    thresholds: np.ndarray  # (K + 1,) the score at each point (inf for the first point)
    tps: np.ndarray  # (K + 1,) true positives at each point
    fps: np.ndarray  # (K + 1,) false positives at each point


def roc_curve(y: np.ndarray, p: np.ndarray) -> RocCurve:
    """ROC curve with tied scores grouped. Needs both classes present (raises ValueError otherwise)."""
    y, p = _check(y, p)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve needs both fake and real samples")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]
    tps = np.r_[0, np.cumsum(ys)[last_of_group]]
    fps = np.r_[0, (last_of_group + 1) - tps[1:]]
    thresholds = np.r_[np.inf, ps[last_of_group]]
    return RocCurve(fpr=fps / n_neg, tpr=tps / n_pos, thresholds=thresholds, tps=tps, fps=fps)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; equals the Mann-Whitney U statistic with ties counted as 1/2)."""
    c = roc_curve(y, p)
    return float(np.sum(np.diff(c.fpr) * (c.tpr[1:] + c.tpr[:-1]) / 2.0))


def equal_error_rate(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Equal error rate: the point of the ROC curve where the false-positive rate equals the false-negative rate
    (1 - TPR), linearly interpolated between the two curve points that straddle it.

    Returns:
        ``(eer, threshold)``: the rate, and the score threshold of the first curve point at or past the crossing.
    """
    c = roc_curve(y, p)
    d = (1.0 - c.tpr) - c.fpr  # starts at 1, ends at -1, never increases
    j = int(np.argmax(d <= 0))
    if d[j] == 0 or j == 0:
        return float(c.fpr[j]), float(c.thresholds[j])
    t = d[j - 1] / (d[j - 1] - d[j])
    eer = c.fpr[j - 1] + t * (c.fpr[j] - c.fpr[j - 1])
    return float(eer), float(c.thresholds[j])


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (scikit-learn's definition, no
    interpolation). Needs at least one positive."""
    y, p = _check(y, p)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("average precision needs at least one fake sample")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]
    tps = np.cumsum(ys)[last_of_group].astype(np.float64)
    precision = tps / (last_of_group + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """Binary cross-entropy averaged over samples (the DFDC metric), with ``p`` clipped to ``[eps, 1 - eps]``."""
    y, p = _check(y, p)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be in [0, 0.5), got {eps}")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("log loss needs probabilities in [0, 1]")
    q = np.clip(p, eps, 1.0 - eps)
    with np.errstate(divide="ignore"):
        ll = -(y * np.log(q) + (1 - y) * np.log1p(-q))
    return float(ll.mean())


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples classified correctly when "fake" means ``p > threshold`` (0.5 itself counts as real)."""
    y, p = _check(y, p)
    return float(np.mean((p > threshold).astype(np.int64) == y))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N with ties given their average rank (``(N,)`` -> ``(N,)`` float64)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def correlation_matrix(scores: np.ndarray, *, method: str = "pearson") -> np.ndarray:
    """Correlation between members' scores: ``(N, M)`` -> ``(M, M)``. ``method``: ``pearson`` or ``spearman``
    (Pearson on average ranks). A member with constant scores has an undefined correlation (NaN), except 1 with
    itself."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected scores of shape (N, M), got {s.shape}")
    if method == "spearman":
        s = np.column_stack([rankdata(s[:, j]) for j in range(s.shape[1])]) if s.shape[1] else s
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    c = s - s.mean(axis=0, keepdims=True)
    norm = np.sqrt((c * c).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (c.T @ c) / np.outer(norm, norm)
    r = np.clip(r, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    return r


def binary_metrics(y: np.ndarray, p: np.ndarray, *, eps: float = DEFAULT_EPS) -> dict[str, Any]:
    """Every metric for one set of predictions, as a JSON-ready dict.

    Metrics that a label set cannot define (AUC, EER and AP with a single class) are ``None`` and explained in
    ``notes``.
    """
    y, p = _check(y, p)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    out: dict[str, Any] = {
        "n": int(y.size), "n_fake": n_pos, "n_real": n_neg,
        "log_loss": log_loss(y, p, eps), "accuracy": accuracy(y, p),
        "auc": None, "eer": None, "eer_threshold": None, "ap": None, "notes": [],
    }
    if n_pos and n_neg:
        out["auc"] = roc_auc(y, p)
        out["eer"], out["eer_threshold"] = equal_error_rate(y, p)
    else:
        only = "fake" if n_pos else "real"
        out["notes"].append(f"all {y.size} labelled videos are {only}: AUC and EER are undefined (null)")
    if n_pos:
        out["ap"] = average_precision(y, p)
    else:
        out["notes"].append("no fake videos: average precision is undefined (null)")
    return out


def optional_round(x: Optional[float], digits: int = 4) -> str:
    """Format a metric for a table: ``None`` -> ``"n/a"``."""
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"
