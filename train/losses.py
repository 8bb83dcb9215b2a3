"""Losses of the DFDC frame recipes: plain BCE, BCE averaged over the two classes, focal loss; target clipping.

All take ``logits (B, K)`` and soft ``targets (B, K)`` (K = 1: probability of fake, sigmoid + BCE; K = 2: class
probabilities, softmax cross-entropy) plus the hard ``labels (B,)`` of the batch (0 real, 1 fake), and compute in
float32.

- ``bce``: the mean over the batch (:func:`train.mixing.soft_target_loss`).
- ``bce_classes``: the 1st place's loss: the mean over the fakes and the mean over the reals of the batch,
  averaged (a batch holding one class only gives that class's mean).
- ``focal``: ``(1 - p_t) ** gamma`` times the per-sample loss, ``p_t = p t + (1 - p)(1 - t)`` for soft targets
  (Lin et al.; the bronze solution's late "focal stage": see ``focal_epochs``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("bce", "bce_classes", "focal")


def clip_targets(targets: Tensor, clip: Optional[tuple[float, float]]) -> Tensor:
    """Clamp soft targets into ``[lo, hi]`` (the 1st place: labels clipped to [0.01, 0.99]); None: unchanged.

    For K = 2 the pair is clipped as probabilities of the two classes and stays normalised."""
    if clip is None:
        return targets
    lo, hi = clip
    if targets.shape[1] == 1:
        return targets.clamp(lo, hi)
    fake = targets[:, 1:2].clamp(lo, hi)
    return torch.cat([1.0 - fake, fake], dim=1)


def per_sample_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` BCE-with-logits (K = 1) or soft cross-entropy (K = 2) per sample, float32."""
    logits = logits.float()
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")[:, 0]
    return -(targets.float() * F.log_softmax(logits, dim=1)).sum(dim=1)


def _p_fake(logits: Tensor) -> Tensor:
    logits = logits.float()
    return torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)[:, 1]


def focal_weight(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """``(B,)`` focal factor ``(1 - p_t) ** gamma`` with ``p_t = p t + (1 - p)(1 - t)`` (t: soft fake target)."""
    p = _p_fake(logits)
    t = targets[:, 0].float() if targets.shape[1] == 1 else targets[:, 1].float()
    p_t = p * t + (1.0 - p) * (1.0 - t)
    return (1.0 - p_t).clamp_min(0.0) ** gamma


def class_balanced_mean(values: Tensor, labels: Tensor) -> Tensor:
    """Mean over the fakes and mean over the reals of ``values (B,)``, averaged over the classes present."""
    means = [values[labels == c].mean() for c in (0, 1) if bool((labels == c).any())]
    return torch.stack(means).mean() if means else values.sum() * 0.0


def recipe_loss(logits: Tensor, targets: Tensor, labels: Tensor, *, kind: str = "bce",
                gamma: float = 2.0) -> Tensor:
    """The scalar training loss ``kind`` (``bce``, ``bce_classes``, ``focal``) of a batch."""
    per = per_sample_loss(logits, targets)
    labels = labels.to(per.device)
    if kind == "bce":
        return per.mean()
    if kind == "bce_classes":
        return class_balanced_mean(per, labels)
    if kind == "focal":
        return (focal_weight(logits, targets, gamma) * per).mean()
    raise ValueError(f"unknown loss {kind!r} (known: {', '.join(LOSSES)})")
