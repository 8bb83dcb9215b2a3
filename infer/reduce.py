"""Aggregation rules over probabilities: pure functions of 1-D arrays, shared by inference and train2d validation.

* :func:`reduce_probs` turns many probabilities of one thing (the faces of a video, the frames of a track) into one:
  ``mean``, ``median``, ``max``, or ``confident``, the DFDC 1st place's "confident strategy" (REFERENCE.md
  section 4)::

      sz = len(p)
      if count(p > 0.8) > sz // 2.5 and count(p > 0.8) > 11:  mean(p[p > 0.8])
      elif count(p < 0.2) > 0.9 * sz:                          mean(p[p < 0.2])
      else:                                                    mean(p)

  (``sz // 2.5`` is Python's float floor division: 12 // 2.5 == 4.0.)
* :func:`geometric_mean` combines members' probabilities; :func:`clip_probs` clips.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["REDUCTIONS", "reduce_probs", "confident_strategy", "geometric_mean", "clip_probs",
           "CONFIDENT_HIGH", "CONFIDENT_LOW", "CONFIDENT_MIN_COUNT", "CONFIDENT_DIVISOR", "CONFIDENT_LOW_SHARE"]

REDUCTIONS: tuple[str, ...] = ("mean", "median", "max", "confident")

#: The published thresholds and counts of the confident strategy.
CONFIDENT_HIGH = 0.8
CONFIDENT_LOW = 0.2
CONFIDENT_MIN_COUNT = 11
CONFIDENT_DIVISOR = 2.5
CONFIDENT_LOW_SHARE = 0.9


def _as_1d(probs: Sequence[float] | np.ndarray, what: str = "probabilities") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError(f"no {what} to reduce")
    if not np.isfinite(p).all():
        raise ValueError(f"non-finite value among the {what} (NaN or inf from a model)")
    return p


def confident_strategy(probs: Sequence[float] | np.ndarray) -> float:
    """The DFDC 1st place's rule over ``(N,)`` probabilities (N >= 1), exactly as published (see module doc)."""
    p = _as_1d(probs)
    sz = p.size
    fakes = int(np.count_nonzero(p > CONFIDENT_HIGH))
    if fakes > sz // CONFIDENT_DIVISOR and fakes > CONFIDENT_MIN_COUNT:
        return float(p[p > CONFIDENT_HIGH].mean())
    if np.count_nonzero(p < CONFIDENT_LOW) > CONFIDENT_LOW_SHARE * sz:
        return float(p[p < CONFIDENT_LOW].mean())
    return float(p.mean())


def reduce_probs(probs: Sequence[float] | np.ndarray, how: str = "mean") -> float:
    """One probability from ``(N,)`` probabilities (N >= 1) by the rule ``how`` (one of :data:`REDUCTIONS`).

    Raises:
        ValueError: empty or non-finite input, or an unknown rule.
    """
    if how == "confident":
        return confident_strategy(probs)
    p = _as_1d(probs)
    if how == "mean":
        return float(p.mean())
    if how == "median":
        return float(np.median(p))
    if how == "max":
        return float(p.max())
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {how!r}")


def geometric_mean(probs: Sequence[float] | np.ndarray, eps: float = 1e-6) -> float:
    """Geometric mean of ``(M,)`` member probabilities, each first clipped to ``[eps, 1 - eps]`` (so a member
    that says exactly 0 does not zero the ensemble)."""
    p = np.clip(_as_1d(probs), eps, 1.0 - eps)
    return float(np.exp(np.log(p).mean()))


def clip_probs(p: float | Sequence[float] | np.ndarray, lo: float, hi: float) -> float | np.ndarray:
    """Clip a probability (a float in, a float out) or an array of them to ``[lo, hi]``."""
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"clip range must satisfy 0 <= lo <= hi <= 1, got [{lo}, {hi}]")
    if np.ndim(p) == 0:
        return float(min(max(float(p), lo), hi))  # type: ignore[arg-type]
    return np.clip(np.asarray(p, dtype=np.float64), lo, hi)
