"""Soft targets, label smoothing, CutMix (two variants) and MixUp: plain functions of ``(x, targets)``.

``x`` is a batch of clips ``(B, C, T, H, W)`` or images ``(B, C, H, W)`` of any dtype; ``targets`` are soft targets
``(B, K)`` float (K = 2 class probabilities for cross-entropy, K = 1 probability of "fake" for BCE). Every function
returns new ``(x, targets)`` and draws its randomness from a ``numpy.random.Generator`` so that a run can save and
restore it. The loss :func:`soft_target_loss` reads the soft targets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from infer.aggregate import fake_probability  # noqa: F401  (re-exported: the one definition, used by the loop)


def one_hot_targets(labels: Tensor, num_classes: int) -> Tensor:
    """Integer labels ``(B,)`` (0 real, 1 fake) -> soft targets ``(B, K)`` float32.

    ``num_classes == 1`` gives the probability of fake ``(B, 1)``; otherwise a one-hot ``(B, num_classes)``.
    """
    labels = labels.long()
    if num_classes == 1:
        return labels.float().unsqueeze(1)
    return F.one_hot(labels, num_classes).float()


def smooth_targets(targets: Tensor, eps: float) -> Tensor:
    """Label smoothing over the two outcomes: ``t * (1 - eps) + eps / 2`` (for K = 1 and K = 2 alike)."""
    if eps <= 0:
        return targets
    return targets * (1.0 - eps) + eps / 2.0


def soft_target_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean loss of ``logits (B, K)`` against soft ``targets (B, K)``: BCE-with-logits for K = 1, else
    soft cross-entropy ``-sum(t * log_softmax(logits))``. Computed in float32."""
    logits = logits.float()
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _partner(batch: int, rng: np.random.Generator, device: torch.device) -> Tensor:
    return torch.as_tensor(rng.permutation(batch), device=device, dtype=torch.long)


def _mix_targets(targets: Tensor, perm: Tensor, lam: Tensor) -> Tensor:
    lam = lam.to(targets.device, targets.dtype).reshape(-1, 1)
    return lam * targets + (1.0 - lam) * targets[perm]


def _span(size: int, cut: int, centre: int) -> tuple[int, int]:
    return int(np.clip(centre - cut // 2, 0, size)), int(np.clip(centre + cut // 2, 0, size))


def cutmix_box(x: Tensor, targets: Tensor, *, alpha: float = 1.0, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """pytorchvideo-style CutMix: one spatial box, the same through all frames, for the whole batch.

    ``lam ~ Beta(alpha, alpha)``; the box has sides ``sqrt(1 - lam)`` of H and W at a random centre, is clipped to
    the frame, and is pasted from a partner given by a random permutation; ``lam`` is recomputed from the clipped
    area. Works on ``(B, C, T, H, W)`` and ``(B, C, H, W)``.
    """
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    lam = float(rng.beta(alpha, alpha))
    ratio = np.sqrt(1.0 - lam)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = _span(h, int(h * ratio), cy)
    x0, x1 = _span(w, int(w * ratio), cx)
    perm = _partner(b, rng, x.device)
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam_eff = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    return out, _mix_targets(targets, perm, torch.full((b,), lam_eff))


def cutmix_cuboid(x: Tensor, targets: Tensor, *, alpha: float = 1.0,
                  rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """The published space-time CutMix on clips ``(B, C, T, H, W)``.

    Per sample: ``lam ~ Beta(alpha, alpha)`` (published: alpha = 1) folded to ``max(lam, 1 - lam)``; a cuboid whose
    T, H and W are each ``(1 - lam) ** (1/3)`` of the clip's, centred at a random point and clipped to the clip, is
    copied from the partner given by a random permutation; ``lam`` is recomputed from the clipped volume.
    """
    if x.dim() != 5:
        raise ValueError(f"cutmix_cuboid needs clips (B, C, T, H, W), got shape {tuple(x.shape)}")
    b, _, t, h, w = x.shape
    perm = _partner(b, rng, x.device)
    perm_cpu = perm.tolist()
    lams = rng.beta(alpha, alpha, size=b)
    lams = np.maximum(lams, 1.0 - lams)
    boxes = []
    eff = np.empty(b)
    for i in range(b):
        ratio = (1.0 - lams[i]) ** (1.0 / 3.0)
        ct, cy, cx = int(rng.integers(t)), int(rng.integers(h)), int(rng.integers(w))
        t0, t1 = _span(t, int(t * ratio), ct)
        y0, y1 = _span(h, int(h * ratio), cy)
        x0, x1 = _span(w, int(w * ratio), cx)
        boxes.append((t0, t1, y0, y1, x0, x1))
        eff[i] = 1.0 - (t1 - t0) * (y1 - y0) * (x1 - x0) / float(t * h * w)
    # read every patch before writing any, so a partner's patch is always its original content
    patches = [x[perm_cpu[i], :, t0:t1, y0:y1, x0:x1].clone() for i, (t0, t1, y0, y1, x0, x1) in enumerate(boxes)]
    out = x.clone()
    for i, (t0, t1, y0, y1, x0, x1) in enumerate(boxes):
        out[i, :, t0:t1, y0:y1, x0:x1] = patches[i]
    return out, _mix_targets(targets, perm, torch.as_tensor(eff, dtype=torch.float32))


def mixup(x: Tensor, targets: Tensor, *, alpha: float = 0.4, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """MixUp: ``lam ~ Beta(alpha, alpha)`` for the batch; ``x = lam * x + (1 - lam) * x[perm]`` (float ``x``)."""
    if not x.is_floating_point():
        raise ValueError("mixup needs a floating-point batch (normalise first)")
    lam = float(rng.beta(alpha, alpha))
    perm = _partner(x.shape[0], rng, x.device)
    out = x * lam + x[perm] * (1.0 - lam)
    return out, _mix_targets(targets, perm, torch.full((x.shape[0],), lam))


def apply_mix(x: Tensor, targets: Tensor, *, mode: str, prob: float, cutmix_alpha: float, mixup_alpha: float,
              rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Mix a batch according to a config's ``mix`` mode, with probability ``prob`` (one draw per batch).

    ``none`` | ``cutmix`` (:func:`cutmix_box`) | ``cutmix3d`` (:func:`cutmix_cuboid`) | ``mixup`` |
    ``mixup_or_cutmix`` (per batch one of MixUp or box CutMix with equal probability: the 2D recipe).
    A batch of one sample is returned unchanged.
    """
    if mode == "none" or x.shape[0] < 2:
        return x, targets
    if rng.random() >= prob:
        return x, targets
    if mode == "mixup_or_cutmix":
        mode = "mixup" if rng.random() < 0.5 else "cutmix"
    if mode == "cutmix":
        return cutmix_box(x, targets, alpha=cutmix_alpha, rng=rng)
    if mode == "cutmix3d":
        return cutmix_cuboid(x, targets, alpha=cutmix_alpha, rng=rng)
    if mode == "mixup":
        return mixup(x, targets, alpha=mixup_alpha, rng=rng)
    raise ValueError(f"unknown mix mode {mode!r}")
