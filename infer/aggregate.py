"""Pure aggregation rules: logits -> probabilities -> per tube -> per video -> across ensemble members.

Every function here is a plain function of arrays, with no model, file or device in sight, so that each rule is
tested on hand-made numbers. The defaults follow the published DFDC 5th-place method (REFERENCE.md section 1):
softmax averaged over flip TTA, mean over faces, plain mean over models, final clipping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: `facetubes evaluate` and the CLI start without it
    import torch

from facetubes.errors import ConfigError

VideoAgg = Literal["mean", "max"]
MemberAgg = Literal["prob", "logit"]
ViewReduce = Literal["mean", "median"]

VIDEO_AGGS: tuple[str, ...] = ("mean", "max")
MEMBER_AGGS: tuple[str, ...] = ("prob", "logit")

#: Probabilities are kept inside [LOGIT_EPS, 1 - LOGIT_EPS] before taking a logit, so that a member that is
#: certain (p = 0 or 1) cannot drag the logit mean to infinity.
LOGIT_EPS = 1e-6

__all__ = [
    "VIDEO_AGGS", "MEMBER_AGGS", "fake_probability", "tube_probability", "video_probability",
    "combine_members", "clip_probability", "logit",
]


def fake_probability(logits: torch.Tensor, fake_class: int = 1) -> torch.Tensor:
    """Probability of "fake" from a classifier's raw output.

    Args:
        logits: ``(B, K)`` with ``K = 1`` (a single fake logit: sigmoid) or ``K = 2`` (softmax, column
            ``fake_class``: 1 for facetubes checkpoints, 0 for the DFDC 5th place's files).
    Returns:
        ``(B,)`` float32 probabilities in [0, 1].
    """
    import torch

    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (B, K), got {tuple(logits.shape)}")
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        if fake_class not in (0, 1):
            raise ValueError(f"fake_class must be 0 or 1, got {fake_class!r}")
        return torch.softmax(logits, dim=1)[:, fake_class]
    raise ValueError(f"a deepfake classifier has 1 or 2 outputs, this one has {logits.shape[1]}")


def tube_probability(probs: np.ndarray, *, views: ViewReduce = "mean") -> float:
    """One tube's probability from the probabilities of all its views.

    Args:
        probs: ``(V, A)``: ``V`` views of the tube (3D: temporal windows; 2D: single frames), each seen under ``A``
            test-time augmentations (``A = 2`` with flip TTA: ``[x, hflip(x)]``; ``A = 1`` without).
        views: ``"mean"``: the mean over all ``V x A`` probabilities (3D models). ``"median"``: each view's mean
            over augmentations, then the median over views (the published 2D rule: median of per-frame sigmoids).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"expected a non-empty (views, augmentations) array, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("non-finite probability from a model (NaN or inf in its output)")
    if views == "mean":
        return float(p.mean())
    if views == "median":
        return float(np.median(p.mean(axis=1)))
    raise ValueError(f"views must be 'mean' or 'median', got {views!r}")


def video_probability(tube_probs: Sequence[float], *, mode: VideoAgg = "mean") -> float:
    """One video's probability for one member from its tubes' probabilities (``(N,)``, N >= 1).

    ``"mean"`` is the published rule (mean over faces); ``"max"`` flags a video as soon as one face looks fake,
    which suits videos where only one of several people was swapped.
    """
    p = np.asarray(tube_probs, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("a video with no tubes has no model probability (it gets the prior instead)")
    if mode == "mean":
        return float(p.mean())
    if mode == "max":
        return float(p.max())
    raise ValueError(f"video aggregation must be one of {VIDEO_AGGS}, got {mode!r}")


def logit(p: np.ndarray | float, eps: float = LOGIT_EPS) -> np.ndarray:
    """``log(p / (1 - p))`` after clipping ``p`` to ``[eps, 1 - eps]``."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def combine_members(member_probs: Sequence[float], weights: Optional[Sequence[float]] = None, *,
                    mode: MemberAgg = "prob") -> float:
    """The ensemble's probability for one video from its members' probabilities.

    Args:
        member_probs: ``(M,)`` one probability per member.
        weights: ``(M,)`` non-negative member weights, not all zero; ``None``: equal weights (published: equal
            weights beat leaderboard-tuned ones). They are normalised to sum to 1.
        mode: ``"prob"``: weighted mean of probabilities (published). ``"logit"``: weighted mean of logits, mapped
            back with a sigmoid (a geometric-mean-of-odds rule: confident members count for more).
    """
    p = np.asarray(member_probs, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("no member probabilities to combine")
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != p.shape:
        raise ValueError(f"{p.size} member probabilities but {w.size} weights")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"member weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    w = w / w.sum()
    if mode == "prob":
        return float(np.dot(w, p))
    if mode == "logit":
        z = float(np.dot(w, logit(p)))
        return float(1.0 / (1.0 + np.exp(-z)))
    raise ValueError(f"member aggregation must be one of {MEMBER_AGGS}, got {mode!r}")


def clip_probability(p: float, clip: Optional[tuple[float, float]]) -> float:
    """Clip a final probability to ``[lo, hi]`` (DFDC log loss punishes confident mistakes without bound).
    ``None`` leaves it unchanged."""
    if clip is None:
        return float(p)
    lo, hi = clip
    return float(min(max(p, lo), hi))


def parse_clip(text: str) -> Optional[tuple[float, float]]:
    """``"0.01,0.99"`` -> ``(0.01, 0.99)``; ``"none"`` / ``"off"`` -> ``None``. Raises ConfigError."""
    t = text.strip().lower()
    if t in ("none", "off", "no", ""):
        return None
    try:
        parts = [float(x) for x in t.split(",")]
    except ValueError:
        raise ConfigError(f"--clip takes LO,HI (e.g. 0.01,0.99) or 'none', got {text!r}") from None
    if len(parts) == 1:  # a single eps: [eps, 1 - eps]
        parts = [parts[0], 1.0 - parts[0]]
    if len(parts) != 2:
        raise ConfigError(f"--clip takes LO,HI (e.g. 0.01,0.99) or 'none', got {text!r}")
    return validate_clip(parts)


def validate_clip(value: Sequence[float]) -> tuple[float, float]:
    """Check a clip range: two numbers with ``0 <= lo < 0.5 < hi <= 1``. Raises ConfigError."""
    if len(value) != 2:
        raise ConfigError(f"clip range must be two numbers [lo, hi], got {list(value)}")
    lo, hi = float(value[0]), float(value[1])
    if not (0.0 <= lo < 0.5 < hi <= 1.0):
        raise ConfigError(f"clip range must satisfy 0 <= lo < 0.5 < hi <= 1, got [{lo}, {hi}]")
    return lo, hi
